"""nplib.lab.chain: signal shares, the equal-mass schedule (DiffusionBlocks' partition), block 1 trained alone.

Every expected value is computed here independently (math.erf, hand formulas), not with nplib.lab.chain.
"""
import math

import pytest
import torch

from nplib.lab import chain
from nplib.blocks import BlockConfig
from nplib.data import TensorData
from nplib.schedules import DTSchedule, make_schedule


def _phi(x, mean=-1.2, std=1.2):
    # the CDF of N(mean, std^2), from math.erf
    return 0.5 * (1 + math.erf((x - mean) / (std * math.sqrt(2))))


def _log_sigma(ab):
    # sigma^2 = (1 - alpha_bar) / alpha_bar
    return 0.5 * math.log((1 - ab) / ab)


# ------------------------------------------------------------------------------------ signal shares
def test_signal_shares_hand_computation_T3():
    ab = [0.1, 0.5, 0.8, 0.9]
    s = DTSchedule.from_alpha_bar(ab)
    snr = [a / (1 - a) for a in ab]                 # 1/9, 1, 4, 9
    deltas = [snr[1] - snr[0], snr[2] - snr[1], snr[3] - snr[2]]
    total = sum(deltas)                             # 9 - 1/9
    got = chain.signal_shares(s).tolist()
    assert got == pytest.approx([d / total for d in deltas], rel=1e-12)
    assert got[2] == pytest.approx(5 / (9 - 1 / 9), rel=1e-12)


@pytest.mark.parametrize("kind", ["cosine", "linear", "equal_mass"])
def test_signal_shares_sum_to_one_and_are_positive(kind):
    share = chain.signal_shares(make_schedule(kind, 10))
    assert share.shape == (10,)
    assert float(share.sum()) == pytest.approx(1.0, abs=1e-12)
    assert (share > 0).all()


def test_cosine_gives_the_last_two_blocks_most_of_the_signal():
    share = chain.signal_shares(make_schedule("cosine", 10))
    # the cosine schedule: SNR(T) = 99, SNR(8) = 0.8987 / 0.1013; blocks 9 and 10 get (99 - SNR(8)) / (99 - SNR(0))
    ab8 = float(make_schedule("cosine", 10).alpha_bar[8])
    expected = (99 - ab8 / (1 - ab8)) / (99 - 1e-4 / (1 - 1e-4))
    assert float(share[8:].sum()) == pytest.approx(expected, rel=1e-9)
    assert expected > 0.9


def test_signal_shares_refuses_other_objects():
    with pytest.raises(ValueError, match="DTSchedule"):
        chain.signal_shares([0.1, 0.5])


# ----------------------------------------------------------------------------- equal-mass schedule
@pytest.mark.parametrize("T", [1, 3, 10])
def test_equal_mass_levels_hold_equal_truncated_mass(T):
    ab = chain.equal_mass_alpha_bar(T).tolist()
    assert len(ab) == T + 1
    assert ab[0] == pytest.approx(1e-4) and ab[-1] == pytest.approx(0.99)
    assert all(0 < a < 1 for a in ab)
    assert all(b > a for a, b in zip(ab, ab[1:]))                # monotone in t
    total = _phi(_log_sigma(1e-4)) - _phi(_log_sigma(0.99))      # mass on [alpha_bar_min, alpha_bar_max]
    for t in range(1, T + 1):
        mass = _phi(_log_sigma(ab[t - 1])) - _phi(_log_sigma(ab[t]))
        assert mass / total == pytest.approx(1 / T, abs=1e-9)


def test_equal_mass_T2_is_the_truncated_median():
    ab = chain.equal_mass_alpha_bar(2, p_mean=0.0, p_std=1.0, alpha_bar_min=0.5 - 0.4, alpha_bar_max=0.5 + 0.4)
    # a symmetric range in log sigma around 0 (alpha_bar 0.1 and 0.9 have log sigma = +-log 3 / 2): median 0
    assert float(ab[1]) == pytest.approx(0.5, abs=1e-12)


def test_equal_mass_follows_the_distribution():
    # a wider / shifted distribution moves the interior levels: more mass at high noise -> lower alpha_bar
    base = chain.equal_mass_alpha_bar(4)
    noisier = chain.equal_mass_alpha_bar(4, p_mean=1.0)
    assert (noisier[1:-1] < base[1:-1]).all()


def test_equal_mass_schedule_and_make_schedule_agree():
    a = chain.equal_mass_schedule(5)
    b = make_schedule("equal_mass", 5)
    assert a.kind == b.kind == "equal_mass"
    assert torch.equal(a.alpha_bar, b.alpha_bar)
    assert (a.snr_delta > 0).all()
    assert chain.block_masses(a).tolist() == pytest.approx([0.2] * 5, abs=1e-9)


def test_block_masses_of_the_cosine_schedule_are_uneven():
    m = chain.block_masses(make_schedule("cosine", 10))
    assert float(m.sum()) == pytest.approx(1.0, abs=1e-12)
    assert float(m[0]) < 0.02 and float(m.max()) > 0.2
    # independent value for block 1: mass between alpha_bar_0 = 1e-4 and alpha_bar_1, over the total
    ab = make_schedule("cosine", 10).alpha_bar.tolist()
    total = _phi(_log_sigma(ab[0])) - _phi(_log_sigma(ab[-1]))
    assert float(m[0]) == pytest.approx((_phi(_log_sigma(ab[0])) - _phi(_log_sigma(ab[1]))) / total, rel=1e-9)


def test_sigma_alpha_bar_round_trip():
    assert chain.sigma_from_alpha_bar(0.5) == pytest.approx(1.0)
    assert chain.alpha_bar_from_sigma(3.0) == pytest.approx(0.1)
    ab = torch.tensor([1e-4, 0.3, 0.99], dtype=torch.float64)
    assert torch.allclose(chain.alpha_bar_from_sigma(chain.sigma_from_alpha_bar(ab)), ab, rtol=1e-12)
    assert chain.noise_mass(1e-4, 0.99) == pytest.approx(_phi(_log_sigma(1e-4)) - _phi(_log_sigma(0.99)), rel=1e-12)


@pytest.mark.parametrize("kwargs", [{"T": 0}, {"T": 2.5}, {"T": True}, {"T": 3, "p_std": 0},
                                    {"T": 3, "p_std": -1.0}, {"T": 3, "alpha_bar_min": 0.5, "alpha_bar_max": 0.4},
                                    {"T": 3, "alpha_bar_max": 1.0}, {"T": 3, "p_mean": float("nan")},
                                    {"T": 3, "p_mean": 60.0}])
def test_equal_mass_bad_input_raises(kwargs):
    with pytest.raises(ValueError):
        chain.equal_mass_alpha_bar(**kwargs)


def test_conversions_and_mass_bad_input_raise():
    with pytest.raises(ValueError):
        chain.sigma_from_alpha_bar(1.0)
    with pytest.raises(ValueError):
        chain.alpha_bar_from_sigma(0.0)
    with pytest.raises(ValueError):
        chain.noise_mass(0.9, 0.1)
    with pytest.raises(ValueError):
        make_schedule("equal_mass", 0)


# ------------------------------------------------------------------------------ block 1 trained alone
def _toy(n=256, seed=0):
    # 2 classes told apart by the brightness of the left or the right half of an 8x8 image
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = 0.3 * torch.randn(n, 1, 8, 8, generator=g)
    x[y == 0, :, :, :4] += 1.0
    x[y == 1, :, :, 4:] += 1.0
    return TensorData(x, y)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny tensors: one thread avoids thread hand-offs on a busy 2-core machine
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


#: a block small enough for 8x8 images and a fast test (the structure of BlockConfig.small)
TINY = BlockConfig(channels=(4,), pools=(True,), hidden=16, head_hidden=16, dropout=0.0)


@pytest.mark.parametrize("objective", ["denoise", "ce"])
def test_train_block_alone_learns(objective):
    train, test = _toy(256, 0), _toy(200, 1)
    model, hist = chain.train_block_alone(train, 3, objective=objective, test=test, T=4, block=TINY,
                                          batch_size=32, lr=1e-2, seed=0)
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[-1]["test_acc"] > 0.9
    assert chain.block_alone_accuracy(model, test) == hist[-1]["test_acc"]


def test_train_block_alone_trains_only_block_1():
    train = _toy(64, 0)
    torch.manual_seed(0)
    model, _ = chain.train_block_alone(train, 1, T=3, block=TINY, batch_size=16, seed=3)
    from nplib.models import NoPropDT
    from nplib.train import set_seed

    set_seed(3)
    fresh = NoPropDT((1, 8, 8), 2, T=3, block=TINY, embedding="onehot")
    for t in (1, 2):   # blocks 2 and 3 keep their initial weights
        for a, b in zip(model.blocks[t].parameters(), fresh.blocks[t].parameters()):
            assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(model.blocks[0].parameters(), fresh.blocks[0].parameters()))


def test_train_block_alone_refuses_bad_input():
    good = _toy(32)
    with pytest.raises(ValueError, match="objective"):
        chain.train_block_alone(good, 1, objective="mse", block=TINY)
    with pytest.raises(ValueError, match="epochs"):
        chain.train_block_alone(good, 0, block=TINY)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        chain.train_block_alone(_Bad(torch.zeros(4, 8, 8), torch.zeros(4, dtype=torch.long)), 1)
    with pytest.raises(ValueError, match="one label per image"):
        chain.train_block_alone(_Bad(torch.zeros(4, 1, 8, 8), torch.zeros(5, dtype=torch.long)), 1)
    with pytest.raises(ValueError, match="tensors"):
        chain.train_block_alone(object(), 1)
    with pytest.raises(ValueError, match="batch_size"):
        chain.train_block_alone(good, 1, batch_size=1, block=TINY)


class _Bad:
    def __init__(self, x, y):
        self.x, self.y = x, y


# ------------------------------------------------------------------------------ reading an ablation
def _fake_ablation():
    blocks = [{"block": t, "alpha_bar": 0.1 * t, "snr": 1.0, "accuracy": 0.5 + 0.1 * t, "decided_fraction": f}
              for t, f in zip((1, 2, 3), (0.6, 0.2, 0.1))]
    return {"metric": "accuracy", "rows": {"chain": 0.9}, "blocks": blocks}


def test_decided_levels_accumulates():
    rows = chain.decided_levels(_fake_ablation())
    assert [r["cumulative"] for r in rows] == pytest.approx([0.6, 0.8, 0.9])
    with pytest.raises(ValueError):
        chain.decided_levels({"metric": "mse", "blocks": []})


def test_plots_run():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for fig in (chain.plot_signal_shares({"cosine": make_schedule("cosine", 4)}),
                chain.plot_chain_accuracy({"a": _fake_ablation()}), chain.plot_decided({"a": _fake_ablation()})):
        assert fig.axes
        plt.close(fig)
    with pytest.raises(ValueError):
        chain.plot_signal_shares({})


# ------------------------------------------------------------------------------ the remedy report
def test_remedy_report_reads_the_ablation_and_the_manifest():
    abl = {"command": "python -m nplib ablation ...", "hardware": {"cpu_count": 2},
           "results": {"nb04_dt": {"info": {"test_images": 3}, "ablation": [
               {"noise": True, "rows": {}, "blocks": []},
               {"noise": False, "rows": {"chain": 0.9, "first_block_alone": 0.8, "chain_z_prior": 0.1},
                "blocks": [{"alpha_bar": 1e-4, "accuracy": 0.8, "decided_fraction": 0.7},
                           {"alpha_bar": 0.5, "accuracy": 0.9, "decided_fraction": 0.2}],
                "summary": {"never_decided_fraction": 0.1}}]}}}
    out = chain.remedy_report(abl, {"base": "nb04_dt"}, note="busy")
    r = out["models"]["base"]
    assert r["ablation_noise_free"]["chain_minus_first_block"] == pytest.approx(0.1)
    assert r["ablation_noise_free"]["decided_after_block_1"] == pytest.approx(0.2)
    assert r["epochs"] == 16 and r["schedule"] == "cosine"
    assert out["hardware"]["note"] == "busy"
    with pytest.raises(ValueError, match="not in the ablation file"):
        chain.remedy_report(abl, {"x": "nb05_ct"})
    with pytest.raises(ValueError):
        chain.remedy_report({}, {"base": "nb04_dt"})

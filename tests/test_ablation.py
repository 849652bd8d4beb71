"""nplib.lab.ablation: every number of the table checked against SPY blocks whose answers the test chooses.

The spies answer from a table indexed by (step, kind of latent they receive, example), where the
example's index is written into pixel (0, 0) of its image and the kind of latent is "zero" (all
zeros), "sparse" (one entry above 1e-6: what a chain of one-hot predictions carries when the
spy schedule sets z_t = a_t u_hat_t) or "dense" (N(0, I) noise). So every accuracy below is worked
out by hand from the tables, never by running the library twice.
"""
import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from nplib.lab import ablation as A
from nplib.data import TensorData
from nplib.models import BackpropBaseline, NoPropDT
from nplib.schedules import DTSchedule

M = 4                                        # classes
Y = torch.tensor([0, 1, 2, 3])               # labels of the 4 test examples


def _kind(z: torch.Tensor) -> torch.Tensor:
    """0 = zero, 1 = sparse (one entry above 1e-6: softmax(50 onehot) leaves e^-50 elsewhere), 2 = dense."""
    nnz = (z.abs() > 1e-6).sum(dim=1)
    return torch.where(nnz == 0, 0, torch.where(nnz == 1, 1, 2))


def _images(n: int = 4) -> TensorData:
    x = torch.zeros(n, 1, 28, 28)
    x[:, 0, 0, 0] = torch.arange(n, dtype=torch.float32)
    return TensorData(x, Y[:n].clone() if n <= 4 else torch.arange(n) % M)


class SpyBlock(nn.Module):
    """Block t of a DT / backprop model: logits 50 * onehot(table[kind][example])."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.tensor(table)     # (3 kinds, n examples)

    def forward(self, x, z_prev):
        i = x[:, 0, 0, 0].long()
        return 50.0 * torch.nn.functional.one_hot(self.table[_kind(z_prev), i], M).float()


# answers of blocks 1..3 for (zero, sparse, dense) latents and examples 0..3 (labels 0, 1, 2, 3)
TABLES = [
    [[0, 1, 0, 0], [3, 3, 3, 3], [3, 3, 3, 3]],   # block 1: sees z_0 = 0 in the chain -> right on 0, 1
    [[0, 0, 0, 0], [0, 1, 2, 0], [3, 3, 3, 3]],   # block 2: sees a sparse z_1 -> right on 0, 1, 2
    [[0, 0, 0, 0], [1, 1, 2, 3], [3, 3, 3, 3]],   # block 3: sparse -> right on 1, 2, 3; dense -> on 3
]
ALPHA_BAR = [0.2, 0.5, 0.8, 0.9]                  # alpha_bar_0..3: inputs of blocks 1..3 at 0.2, 0.5, 0.8


def _spy_dt():
    model = NoPropDT((1, 28, 28), M, T=3, block="small", embedding="onehot",
                     schedule=DTSchedule.from_alpha_bar(ALPHA_BAR))
    model.blocks = nn.ModuleList(SpyBlock(t) for t in TABLES)
    # spy schedule: z_t = a_t u_hat_t
    model.schedule = dataclasses.replace(model.schedule, b=torch.zeros(3, dtype=torch.float64))
    with torch.no_grad():
        model.classifier.weight.copy_(torch.eye(M))
        model.classifier.bias.zero_()
    return model


def _spy_backprop():
    model = BackpropBaseline((1, 28, 28), M, T=3, block="small", embedding="onehot")
    model.blocks = nn.ModuleList(SpyBlock(t) for t in TABLES)
    with torch.no_grad():
        model.w.fill_(20.0)                       # tanh(20) = 1: z_t = u_hat_t
    return model


@pytest.mark.parametrize("build", [_spy_dt, _spy_backprop], ids=["dt", "backprop"])
def test_classifier_rows_match_the_spy_tables(build):
    r = A.ablate(build(), _images(), noise=False)
    rows = r["rows"]
    # chain: block 1 gets z_0 = 0 (zero table), blocks 2 and 3 a one-hot latent (sparse table);
    # the read-out of z_3 = a_3 u_hat_3 is block 3's sparse answer [1, 1, 2, 3]: 3 of 4 right
    assert rows["chain"] == 0.75
    assert rows["first_block_alone"] == 0.5          # [0, 1, 0, 0]
    assert rows["chain_last_block"] == 0.75
    assert rows["last_block_alone_zeros"] == 0.25    # block 3 zero table [0, 0, 0, 0]
    assert rows["last_block_alone_prior"] == 0.25    # block 3 dense table [3, 3, 3, 0]
    assert rows["chain_z_zeros"] == 0.25             # z_3 from block 3 on zeros
    assert rows["chain_z_prior"] == 0.25             # z_3 from block 3 on noise
    # shuffling permutes one-hot latents: still sparse, so these spies answer as in the chain
    assert rows["chain_z_shuffle"] == 0.75
    assert [b["accuracy"] for b in r["blocks"]] == [0.5, 0.75, 0.75]
    # right at steps (1,2,3): ex0 (y,y,n) never; ex1 (y,y,y) at 1; ex2 (n,y,y) at 2; ex3 (n,n,y) at 3
    assert [b["decided_fraction"] for b in r["blocks"]] == [0.25, 0.25, 0.25]
    assert r["summary"]["never_decided_fraction"] == 0.25
    assert r["metric"] == "accuracy"


def test_dt_blocks_report_the_noise_level_of_their_input():
    r = A.ablate(_spy_dt(), _images(), noise=False)
    assert [b["alpha_bar"] for b in r["blocks"]] == pytest.approx([0.2, 0.5, 0.8])
    # SNR = alpha_bar / (1 - alpha_bar): 0.2/0.8, 0.5/0.5, 0.8/0.2
    assert [b["snr"] for b in r["blocks"]] == pytest.approx([0.25, 1.0, 4.0])
    assert [b["input"] for b in r["blocks"]] == ["z_0", "z_1", "z_2"]


def test_backprop_has_no_noise_level():
    r = A.ablate(_spy_backprop(), _images(), noise=False)
    assert all(b["alpha_bar"] is None and b["snr"] is None for b in r["blocks"])


class FollowerBlock(nn.Module):
    """Block 1 answers the label (index in pixel (0,0) mod M); block 2 copies argmax z_1."""

    def __init__(self, first: bool):
        super().__init__()
        self.first = first

    def forward(self, x, z_prev):
        if self.first:
            return 50.0 * torch.nn.functional.one_hot(x[:, 0, 0, 0].long() % M, M).float()
        return 50.0 * torch.nn.functional.one_hot(z_prev.argmax(dim=1), M).float()


def test_shuffle_gives_each_example_another_examples_latent():
    model = _spy_dt()
    model.T = 2
    model.schedule = dataclasses.replace(DTSchedule.from_alpha_bar([0.2, 0.5, 0.8]), b=torch.zeros(2, dtype=torch.float64))
    model.blocks = nn.ModuleList([FollowerBlock(True), FollowerBlock(False)])
    data = _images(200)                      # labels 0,1,2,3,0,1,... (i mod 4)
    r = A.ablate(model, data, noise=False)
    assert r["rows"]["chain"] == 1.0         # block 2 copies block 1's right answer
    # with z permuted, block 2 copies the class of a random other example: right about 1 time in 4
    assert 0.1 < r["rows"]["chain_z_shuffle"] < 0.45


# ---------------------------------------------------------------------------------- CT and FM
class SpyNet(nn.Module):
    """Stands in for ContinuousNet: logits scale * onehot(table[step k][kind][example]), k = t N."""

    def __init__(self, tables, N, scales=(1.0, 3.0, 3.0)):
        super().__init__()
        self.tables, self.N, self.scales = torch.tensor(tables), N, scales
        self.time_dim = 64

    def image_features(self, x):
        return x[:, 0, 0, 0].long()

    def time_features(self, t):
        return int(round(float(t) * self.N))

    def logits_from_features(self, i, z, k):
        kind = _kind(z)
        scale = torch.tensor(self.scales)[kind].unsqueeze(1)
        return scale * torch.nn.functional.one_hot(self.tables[k][kind, i], M).float()


def test_ct_reads_the_network_at_the_grid_points(monkeypatch):
    from nplib import continuous

    N = 4
    model = continuous.NoPropCT((1, 28, 28), M, model="small", inference_steps=N)
    tables = [TABLES[0], TABLES[1], TABLES[1], TABLES[2]]   # steps k = 0..3
    model.net = SpyNet(tables, N, scales=(50.0, 50.0, 50.0))
    with torch.no_grad():
        model.classifier.weight.copy_(torch.eye(M))
        model.classifier.bias.zero_()

    def coefficients(schedule, steps):   # spy sampler: z_t = u_hat(z_s, x, s)
        return {"t": torch.arange(steps + 1, dtype=torch.float64) / steps, "a": torch.ones(steps),
                "b": torch.zeros(steps), "c": torch.zeros(steps)}

    monkeypatch.setattr(continuous, "ct_step_coefficients", coefficients)
    r = A.ablate(model, _images(), noise=False, points=4)
    assert [b["time"] for b in r["blocks"]] == [0.0, 0.25, 0.5, 0.75]
    assert [b["accuracy"] for b in r["blocks"]] == [0.5, 0.75, 0.75, 0.75]
    rows = r["rows"]
    assert rows["chain"] == 0.75 and rows["first_block_alone"] == 0.5
    assert rows["last_block_alone_zeros"] == 0.25 and rows["last_block_alone_prior"] == 0.25
    assert rows["chain_z_zeros"] == 0.25 and rows["chain_z_prior"] == 0.25
    # the untrained learned schedule starts at gamma(0) = g1 = 3: alpha_bar(0) = sigmoid(-3), SNR = e^-3
    assert r["blocks"][0]["alpha_bar"] == pytest.approx(1 / (1 + math.e ** 3))
    assert r["blocks"][0]["snr"] == pytest.approx(math.exp(-3))


def test_fm_reads_the_end_point_its_velocity_implies():
    from nplib import continuous

    N = 2
    model = continuous.NoPropFM((1, 28, 28), M, model="small", inference_steps=N)
    A_ = [0, 1, 0, 0]                        # step 0 (t = 0, z = 0): v = e_A
    B_ = [1, 1, 2, 3]                        # step 1 (t = 1/2, z = e_A / 2): v = 3 e_B
    model.net = SpyNet([[A_, A_, A_], [[0, 0, 0, 0], B_, B_]], N)
    r = A.ablate(model, _images(), noise=False, points=2)
    # step 0: z_1~ = 0 + 1 * e_A -> A;  step 1: z_1~ = e_A/2 + (1/2) 3 e_B -> B (or A when A = B)
    assert [b["accuracy"] for b in r["blocks"]] == [0.5, 0.75]
    # z_1 = e_A / 2 + 3 e_B / 2: nearest e_B (distance^2 0.5 against 2.5 to e_A)
    assert r["rows"]["chain"] == 0.75
    # last block alone at t = 1/2 with z = 0: zero table [0, 0, 0, 0]; z_1~ = 0 + e_0 / 2
    assert r["rows"]["last_block_alone_zeros"] == 0.25
    # zeros at every step: z_1 = 0 + (1/2) e_0 -> class 0
    assert r["rows"]["chain_z_zeros"] == 0.25
    # the path's SNR t^2 / (1 - t)^2 at t = 0 and 1/2
    assert [b["snr"] for b in r["blocks"]] == [0.0, 1.0]
    assert [b["alpha_bar"] for b in r["blocks"]] == [0.0, 0.5]


# ---------------------------------------------------------------------------------- forecaster
class SpyForecastBlock(nn.Module):
    """Forecasts the true future of a ramp (linear extrapolation of x) plus a shift chosen by the test:
    ``shift[0]`` when z_prev is all zeros, ``shift[1]`` otherwise. Its MSE is shift^2."""

    def __init__(self, horizon, shifts):
        super().__init__()
        self.horizon, self.shifts = horizon, shifts

    def past_features(self, x):
        return x

    def from_features(self, x, z_prev, samples=1):
        step = x[:, -1:] - x[:, -2:-1]
        future = x[:, -1:] + step * torch.arange(1, self.horizon + 1, dtype=x.dtype)
        zero = (z_prev == 0).all(dim=1, keepdim=True)
        return future + torch.where(zero, self.shifts[0], self.shifts[1])


def _spy_forecaster():
    from nplib.timeseries import NoPropForecaster, data_from_array

    L, H = 8, 4
    rows = np.arange(80, dtype=np.float32)
    values = np.stack([rows, 2 * rows], axis=1)          # two ramps: the future is x extrapolated
    data = data_from_array(values, L, H, hours=(40, 20, 20), smoke=False)
    model = NoPropForecaster(L, H, T=2, d=H, hidden=8, schedule=DTSchedule.from_alpha_bar([0.2, 0.5, 0.8]))
    model.blocks = nn.ModuleList([SpyForecastBlock(H, (0.1, 0.5)), SpyForecastBlock(H, (1.0, 0.2))])
    # spy schedule: z_t = u_hat_t
    model.schedule = dataclasses.replace(model.schedule, a=torch.ones(2, dtype=torch.float64),
                                         b=torch.zeros(2, dtype=torch.float64))
    with torch.no_grad():                                    # decoder D(z) = z
        model.autoencoder.dec_lin.weight.copy_(torch.eye(H))
        model.autoencoder.dec_lin.bias.zero_()
    return model, data


def test_forecaster_rows_are_the_spy_shifts_squared():
    model, data = _spy_forecaster()
    r = A.ablate(model, data.test, noise=False)
    rows = r["rows"]
    assert r["metric"] == "mse"
    # block 1 gets z_0 = 0 (shift 0.1), block 2 gets u_hat_1 != 0 (shift 0.2); chain = D(u_hat_2)
    assert rows["chain"] == pytest.approx(0.04, rel=1e-3)
    assert rows["first_block_alone"] == pytest.approx(0.01, rel=1e-3)
    assert rows["chain_last_block"] == pytest.approx(0.04, rel=1e-3)
    assert rows["last_block_alone_zeros"] == pytest.approx(1.0, rel=1e-3)
    assert rows["last_block_alone_prior"] == pytest.approx(0.04, rel=1e-3)
    assert rows["chain_z_zeros"] == pytest.approx(1.0, rel=1e-3)
    assert rows["chain_z_prior"] == pytest.approx(0.04, rel=1e-3)
    assert [b["mse"] for b in r["blocks"]] == pytest.approx([0.01, 0.04], rel=1e-3)
    assert r["summary"]["decision_block"] == 1          # 0.01 <= 1.05 * 0.04
    assert [b["alpha_bar"] for b in r["blocks"]] == pytest.approx([0.2, 0.5])


def test_forecaster_decision_block_is_the_first_within_tolerance():
    model, data = _spy_forecaster()
    model.blocks[0].shifts = (0.3, 0.5)                  # block 1 alone: MSE 0.09 > 1.05 * 0.04
    r = A.ablate(model, data.test, noise=False)
    assert r["summary"]["decision_block"] == 2


# ---------------------------------------------------------------------------------- the chain row is the model
@pytest.mark.parametrize("variant", ["dt", "backprop", "ct", "fm"])
def test_chain_row_is_the_models_own_stochastic_prediction(variant):
    """Labels set to what the model's own sampler predicts with the same seed: the chain row must be 100 %."""
    from nplib.cli import build_model
    from nplib.devices import make_generator

    torch.manual_seed(0)
    model = build_model(variant, "small", (1, 28, 28), M, 3, "onehot", inference_steps=5).eval()
    if variant in ("dt", "ct"):   # an untrained classifier on z_T answers one class for every image
        with torch.no_grad():
            model.classifier.weight.copy_(10 * torch.eye(M))
            model.classifier.bias.zero_()
    x = torch.randn(16, 1, 28, 28)
    y = model.predict(x, noise=True, generator=make_generator("cpu", 7))
    assert len(set(y.tolist())) > 1      # else any chain would score 100 %
    r = A.ablate(model, TensorData(x, y), noise=True, seed=7)
    assert r["rows"]["chain"] == 1.0


def test_chain_row_is_the_forecasters_deterministic_mse():
    from nplib.timeseries import NoPropForecaster, data_from_array, evaluate_point, predict_windows

    torch.manual_seed(0)
    rows = np.arange(80, dtype=np.float32)
    data = data_from_array(np.stack([np.sin(rows / 3), np.cos(rows / 5)], axis=1), 8, 4, hours=(40, 20, 20))
    model = NoPropForecaster(8, 4, T=3, d=6, hidden=8).eval()
    want = evaluate_point(predict_windows(model.predict, data.test), data.test)["mse"]
    assert A.ablate(model, data.test)["rows"]["chain"] == pytest.approx(want, rel=1e-6)


# ---------------------------------------------------------------------------------- bad input
def test_unknown_model_type_is_refused():
    with pytest.raises(ValueError, match="does not know models of type Linear"):
        A.ablate(nn.Linear(3, 3), _images())


def test_images_of_the_wrong_shape_are_refused():
    bad = TensorData(torch.zeros(4, 1, 14, 14), Y.clone())
    with pytest.raises(ValueError, match="images of shape"):
        A.ablate(_spy_dt(), bad)


def test_empty_data_is_refused():
    empty = TensorData(torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="non-empty"):
        A.ablate(_spy_dt(), empty)


def test_forecaster_windows_of_another_horizon_are_refused():
    from nplib.timeseries import data_from_array

    model, _ = _spy_forecaster()
    other = data_from_array(np.arange(80, dtype=np.float32), 8, 6, hours=(40, 20, 20))
    with pytest.raises(ValueError, match="horizon 6"):
        A.ablate(model, other.test)


def test_a_forecaster_given_images_is_refused():
    model, _ = _spy_forecaster()
    with pytest.raises(ValueError, match="needs a WindowSet"):
        A.ablate(model, _images())


def test_unknown_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a shipped checkpoint"):
        A.load_model(str(tmp_path / "nope.pt"))


def test_format_table_names_every_row():
    text = A.format_table(A.ablate(_spy_dt(), _images(), noise=False), "spy")
    for name in A.ROW_LABELS:
        assert name in text
    assert "75.00 %  chain " in text


@pytest.mark.slow
def test_cli_prints_the_table_of_a_shipped_checkpoint(capsys, tmp_path):
    import json

    from nplib.cli import main

    out = tmp_path / "abl.json"
    assert main(["ablation", "--checkpoint", "nb04_dt", "--noise", "off", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "first_block_alone" in text
    res = json.loads(out.read_text())["results"]["nb04_dt"]["ablation"][0]
    assert res["metric"] == "accuracy" and len(res["blocks"]) == 10

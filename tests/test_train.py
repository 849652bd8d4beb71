"""Training loop: learning on real MNIST, exact resume, NaN handling, checkpoints."""
import json

import pytest
import torch

from nplib.data import TensorData, load_train_test
from nplib.models import NoPropDT
from nplib.schedules import make_schedule
from nplib.train import evaluate_runs, fit, load_checkpoint, trained_models


def synthetic(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.randn(n, 1, 28, 28, generator=g) * 0.1
    x[torch.arange(n), 0, y, y] += 3.0  # a class-dependent bright pixel
    return TensorData(x, y, "synthetic")


def small_model(T=3, seed=0):
    torch.manual_seed(seed)
    return NoPropDT((1, 28, 28), 10, T=T, block="small", schedule=make_schedule("cosine", T))


@pytest.mark.slow
def test_quick_training_on_real_mnist_beats_chance_widely():
    """A few epochs on 4,000 real MNIST images: far above the 10 % of chance."""
    train, test = load_train_test("mnist", smoke=False, train_size=4000, test_size=1000)
    model = small_model(T=10)
    hist = fit(model, train, test, epochs=3, seed=0, progress=False, log=None, train_eval_size=1000)
    assert [r["epoch"] for r in hist] == [1, 2, 3]
    assert hist[-1]["loss"] < hist[0]["loss"]
    final = evaluate_runs(model, test, runs=2)
    assert final["mean"] > 0.6, final
    assert final["noise_free"] > 0.6, final


def test_history_rows_have_the_documented_keys():
    data = synthetic()
    hist = fit(small_model(), data, data, epochs=1, batch_size=32, progress=False, log=None)
    assert set(hist[0]) >= {"epoch", "loss", "train_acc", "test_acc", "seconds", "eval_seconds"}
    json.dumps(hist)  # serialisable


def test_resume_equals_uninterrupted_run(tmp_path):
    data = synthetic(96)
    kw = dict(batch_size=32, seed=3, progress=False, log=None)
    ref = small_model()
    hist_ref = fit(ref, data, data, epochs=3, **kw)

    ck = tmp_path / "run.pt"
    interrupted = small_model()
    fit(interrupted, data, data, epochs=1, checkpoint=ck, **kw)     # "killed" after epoch 1
    resumed = small_model(seed=123)                                   # a fresh process, other init
    hist_res = fit(resumed, data, data, epochs=3, checkpoint=ck, **kw)

    for (k, a), (_, b) in zip(ref.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k
    assert [r["loss"] for r in hist_ref] == [r["loss"] for r in hist_res]
    assert [r["test_acc"] for r in hist_ref] == [r["test_acc"] for r in hist_res]


def test_checkpoint_from_other_configuration_is_refused(tmp_path):
    data = synthetic(32)
    ck = tmp_path / "run.pt"
    fit(small_model(T=3), data, None, epochs=1, checkpoint=ck, progress=False, log=None, batch_size=16)
    with pytest.raises(ValueError, match="different model configuration"):
        load_checkpoint(ck, small_model(T=2))


def test_nan_loss_stops_the_run_with_a_clear_error():
    data = synthetic(32)
    data.x[3] = float("nan")
    with pytest.raises(FloatingPointError, match=r"epoch 1, batch 0: .*block 1"):
        fit(small_model(), data, None, epochs=1, batch_size=32, progress=False, log=None)


def test_bad_epochs():
    with pytest.raises(ValueError, match="epochs"):
        fit(small_model(), synthetic(8), None, epochs=-1, progress=False, log=None)


def test_max_seconds_stops_early():
    data = synthetic(32)
    hist = fit(small_model(), data, None, epochs=5, batch_size=16, progress=False, log=None, max_seconds=0.0)
    assert len(hist) == 1 and hist[0]["stopped_by_budget"]


def test_trained_models_reads_command_line_reports_and_notebook_04():
    """The records that notebook 05's table and the slides read from results/*.json."""
    acc = {"mean": 0.99, "se": 0.001, "runs": [0.99] * 5, "noise_free": 0.993}
    cli = {"config": {"dataset": "mnist", "variant": "ct", "embedding": "onehot", "epochs_run": 7, "smoke": False,
                      "block_name": "small", "model": {"variant": "ct", "inference_steps": 100}},
           "final_test_accuracy": acc, "wall_seconds": 60.0, "hardware": {"cpu_count": 2}}
    (rec,) = trained_models(cli)
    assert (rec["key"], rec["variant"], rec["block"], rec["epochs"], rec["steps"], rec["seconds"]) == \
        (None, "ct", "small", 7, 100, 60.0)
    del cli["config"]["block_name"]            # an older report: the block size's name was lost
    assert trained_models(cli)[0]["block"] is None
    hist = [{"epoch": 1, "eval_seconds": 2.0}, {"epoch": 2, "eval_seconds": 3.0}]
    nb = {"mode": "full", "config": {"dataset": "mnist", "epochs": 2, "block_name": "small",
                                     "dt_model": {"embedding": "onehot"}},
          "noprop_dt": {"history": hist, "train_seconds": 100.0, "test_accuracy": acc},
          "backprop": {"history": hist, "train_seconds": 80.0, "test_accuracy": acc, "model": {"variant": "backprop"}}}
    dt, bp = trained_models(nb)
    assert (dt["key"], dt["variant"], dt["seconds"], dt["embedding"]) == ("noprop_dt", "dt", 105.0, "onehot")
    assert (bp["key"], bp["variant"], bp["seconds"], bp["model_config"]) == ("backprop", "backprop", 85.0,
                                                                              {"variant": "backprop"})
    assert trained_models({**nb, "mode": "quick"}) == []
    assert trained_models({"rows": []}) == [] and trained_models(["not", "a", "dict"]) == []


def test_bf16_autocast_runs_the_convolutions_in_bfloat16_and_keeps_float32_parameters():
    # a forward hook on block 1's first convolution records the dtype it computes in
    data = synthetic()
    seen = {}
    for bf16 in (False, True):
        model = small_model()
        conv = next(m for m in model.blocks[0].modules() if isinstance(m, torch.nn.Conv2d))
        def record(mod, inp, out, bf16=bf16):
            seen.setdefault(bf16, out.dtype)    # returns None: the output is left unchanged

        h = conv.register_forward_hook(record)
        hist = fit(model, data, None, epochs=1, seed=0, progress=False, log=None, train_eval_size=16, bf16=bf16)
        h.remove()
        seen[f"loss{bf16}"] = hist[0]["loss"]
        assert all(p.dtype == torch.float32 for p in model.parameters())
    assert seen[False] == torch.float32 and seen[True] == torch.bfloat16
    # bfloat16 keeps about 3 significant digits: the same training, not the same numbers
    assert seen["lossTrue"] != seen["lossFalse"]
    assert seen["lossTrue"] == pytest.approx(seen["lossFalse"], rel=0.05)

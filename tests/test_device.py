"""Device correctness of nplib: every entry point runs on every available device.

Two kinds of test:

* ``on_device`` tests run sampling, training (one ``training_step`` and a one-epoch ``fit``),
  evaluation (``evaluate_runs`` and the chain tools) and the plots that take a model or tensors,
  for NoPropDT, BackpropBaseline, NoPropCT and NoPropFM, on "cpu" and, when there is a GPU, on
  "cuda" (marker ``cuda``; skipped without one).
* ``meta`` tests need no GPU. They run the same entry points on torch's ``meta`` device (tensors
  with a shape but no values) while a spy (:class:`GeneratorAudit`) checks every random draw:
  a draw made with an explicit generator must be made ON the generator's device. torch itself does
  not check this for meta tensors, and a CUDA run fails on exactly this ("Expected a 'cuda'
  device type for generator"). Mixing a CPU tensor into an op on meta tensors raises in torch as
  it does on CUDA, so a CPU tensor handed to device code is caught as well.

The rule the library follows (nplib/devices.py): with a generator, draw on the generator's device
and move the result to the device of the tensors it joins; without one, draw on that device.
"""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch
from torch.overrides import TorchFunctionMode

from nplib import evaluation as ev
from nplib.course import plots
from nplib.blocks import BlockConfig
from nplib.continuous import (ContinuousNet, LearnedSchedule, NoPropCT, NoPropFM, ct_step_coefficients,
                              fm_path, stratified_times)
from nplib.data import TensorData
from nplib.diffusion import posterior_step, q_sample
from nplib.embeddings import LabelEmbedding
from nplib.models import BackpropBaseline, NoPropDT
from nplib.schedules import make_schedule
from nplib.train import accuracy, evaluate_runs, fit

TINY = BlockConfig(channels=(4,), pools=(True,), hidden=16, head_hidden=8, dropout=0.1)
SHAPE = (1, 8, 8)
M = 4
KINDS = ("dt", "backprop", "ct", "fm")

HAS_CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda,
                                              pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")])]


def _model(kind: str, seed: int = 0):
    torch.manual_seed(seed)
    if kind == "dt":
        return NoPropDT(SHAPE, M, T=3, block=TINY)
    if kind == "backprop":
        return BackpropBaseline(SHAPE, M, T=3, block=TINY)
    if kind == "ct":
        return NoPropCT(SHAPE, M, model=TINY, inference_steps=4)
    if kind == "fm":
        return NoPropFM(SHAPE, M, model=TINY, inference_steps=4)
    raise AssertionError(kind)


def _data(n=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    return TensorData(torch.randn(n, *SHAPE, generator=g), torch.randint(0, M, (n,), generator=g))


# ------------------------------------------------------------------------------------------ the spy
_LIKE_OR_INPLACE = ("_like", "_")   # randn_like(x, ...), x.normal_(...): the target device is x's


class GeneratorAudit(TorchFunctionMode):
    """Fails any random draw whose explicit generator lives on another device than the draw.

    ``torch.randn(..., generator=g, device=d)`` on CUDA raises unless ``g.device == d``; on the
    meta device torch draws nothing and does not check, so this spy checks for it. ``draws``
    counts the draws made with a generator (so a test can assert that it checked something).
    """

    def __init__(self):
        super().__init__()
        self.draws = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        gen = kwargs.get("generator")
        if isinstance(gen, torch.Generator):
            name = getattr(func, "__name__", str(func))
            if kwargs.get("device") is not None:
                target = torch.device(kwargs["device"])
            elif name.endswith(_LIKE_OR_INPLACE) and args and torch.is_tensor(args[0]):
                target = args[0].device
            else:
                target = torch.device("cpu")   # torch's default device for factory functions
            assert target.type == gen.device.type, (
                f"torch.{name} draws on {target} with a generator on {gen.device}: on a GPU this raises "
                f"\"Expected a '{target.type}' device type for generator\"")
            self.draws += 1
        return func(*args, **kwargs)


@pytest.fixture
def audit():
    spy = GeneratorAudit()
    with spy:
        yield spy


@pytest.fixture
def meta_labels(monkeypatch):
    """Labels on the meta device have no values, so ``LabelEmbedding``'s range check cannot run."""
    monkeypatch.setattr(LabelEmbedding, "forward", lambda self, y: self.W_embed[y.long()])


def _meta_batch(n=5):
    return torch.empty(n, *SHAPE, device="meta"), torch.zeros(n, dtype=torch.long, device="meta")


def _is_meta(t):
    return torch.is_tensor(t) and t.device.type == "meta"


# ------------------------------------------------------------------------------------------ meta (no GPU)
def test_audit_flags_a_cpu_generator_used_for_a_meta_draw():
    with pytest.raises(AssertionError, match="generator on cpu"):
        with GeneratorAudit():
            torch.randn(3, generator=torch.Generator(), device="meta")


@pytest.mark.parametrize("kind", KINDS)
def test_sampling_on_meta_with_a_cpu_generator_draws_on_the_cpu(kind, audit):
    model = _model(kind).eval()
    if kind == "ct":
        # the sampler's coefficients need the schedule's VALUES: keep the schedule on the CPU
        for part in (model.net, model.classifier, model.embedding):
            part.to("meta")
    else:
        model.to("meta")
    x, _ = _meta_batch()
    g = torch.Generator().manual_seed(0)
    logits, traj = model.sample(x, noise=True, generator=g, return_trajectory=True)
    assert _is_meta(logits) and logits.shape == (5, M)
    assert _is_meta(traj["z"]) and traj["z"].shape[1:] == (5, model.d)
    assert _is_meta(model.predict(x, noise=True, generator=g))
    assert _is_meta(model.sample(x, noise=False))
    assert audit.draws > 0


@pytest.mark.parametrize("kind", ("ct", "fm"))
def test_continuous_losses_on_meta_with_a_cpu_generator(kind, audit, meta_labels):
    model = _model(kind).to("meta")
    x, y = _meta_batch()
    parts = model.loss_terms(x, y, generator=torch.Generator().manual_seed(0))
    assert _is_meta(parts["loss"]) and parts["loss"].shape == ()
    assert audit.draws > 0


def test_dt_losses_on_meta_with_a_cpu_generator(audit, meta_labels):
    model = _model("dt").to("meta")
    x, y = _meta_batch()
    g = torch.Generator().manual_seed(0)
    assert _is_meta(model.block_loss(2, x, y, generator=g))
    assert _is_meta(model.classifier_loss(y, generator=g))
    assert audit.draws > 0


@pytest.mark.parametrize("kind", ("dt", "backprop"))
@pytest.mark.parametrize("z_mode", ev.Z_MODES)
def test_run_chain_on_meta_with_a_cpu_generator(kind, z_mode, audit):
    model = _model(kind).to("meta")
    x, _ = _meta_batch()
    out = ev.run_chain(model, x, noise=True, generator=torch.Generator().manual_seed(0), z_mode=z_mode)
    assert all(_is_meta(v) for v in out.values())
    pred = ev.chain_predictions(model, x, noise=True, generator=torch.Generator().manual_seed(0), z_mode=z_mode)
    assert all(_is_meta(v) for v in pred.values())
    assert audit.draws > 0


def test_diffusion_draws_on_meta_with_a_cpu_generator(audit):
    s = make_schedule("cosine", 4)
    g = torch.Generator().manual_seed(0)
    u = torch.empty(3, M, device="meta")
    assert _is_meta(q_sample(u, 2, s, generator=g))
    assert _is_meta(posterior_step(u, u, 2, s, noise=True, generator=g))
    assert _is_meta(q_sample(u.double(), 2, s, generator=g))
    assert _is_meta(plots.sample_label_trajectories(u, s, seed=0))
    t = stratified_times(6, g, device="meta")
    assert _is_meta(t) and t.shape == (6,)
    assert audit.draws > 0


def test_learned_schedule_follows_the_device_of_t():
    """Schedule parameters on one device, ``t`` on another: gamma & co. are computed where t lives."""
    sched = LearnedSchedule()                    # parameters on the CPU
    t = torch.empty(7, device="meta")
    for fn in (sched.gamma, sched.alpha_bar, sched.snr):
        assert _is_meta(fn(t)) and fn(t).shape == (7,)
    gamma, dsnr = sched.snr_derivative(t, create_graph=False)
    assert _is_meta(gamma) and _is_meta(dsnr)
    assert _is_meta(sched.gamma(t.double())) and sched.gamma(t.double()).dtype == torch.float64


def test_continuous_net_moves_a_cpu_time_tensor_to_its_device():
    net = ContinuousNet(SHAPE, M, M, TINY).to("meta")
    x, z = torch.empty(3, *SHAPE, device="meta"), torch.empty(3, M, device="meta")
    for t in (0.3, torch.tensor([0.3]), torch.full((3,), 0.3, dtype=torch.float64)):
        assert _is_meta(net(x, z, t))
    z0 = torch.empty(3, M, device="meta")
    assert _is_meta(fm_path(z0, z0, torch.rand(3)))


# ------------------------------------------------------------------------------------------ every device
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", KINDS)
def test_sampling_on_device(kind, device):
    model = _model(kind).to(device).eval()
    x = _data(6).x.to(device)
    g_dev = torch.Generator(device).manual_seed(0)
    logits, traj = model.sample(x, noise=True, generator=g_dev, return_trajectory=True)
    assert logits.device.type == device and traj["z"].device.type == device
    assert torch.isfinite(logits).all()
    assert model.predict(x, noise=False).device.type == device
    # a CPU generator is accepted on any device: the noise is drawn on the CPU, then moved, so the
    # chain starts from the same z_0 on every device
    _, traj_cpu_gen = model.sample(x, noise=True, generator=torch.Generator().manual_seed(3),
                                   return_trajectory=True)
    z0 = torch.randn(len(x), model.d, generator=torch.Generator().manual_seed(3))
    assert torch.equal(traj_cpu_gen["z"][0].cpu(), z0)
    if "t" in traj:   # CT / FM: the time grid is a float64 CPU tensor, ready for plotting
        assert traj["t"].device.type == "cpu" and traj["t"].dtype == torch.float64


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", KINDS)
def test_training_step_and_fit_on_device(kind, device, tmp_path):
    model = _model(kind).to(device)
    data = _data(32)
    opts = model.configure_optimizers()
    model.train()
    out = model.training_step(data.x[:16].to(device), data.y[:16].to(device), opts)
    assert all(isinstance(v, float) and v == v for v in out.values())
    history = fit(_model(kind), data, data, epochs=1, batch_size=16, device=device, progress=False, log=None,
                  train_eval_size=None, checkpoint=tmp_path / "ckpt.pt")
    assert len(history) == 1 and history[0]["loss"] == history[0]["loss"]
    assert 0.0 <= history[0]["test_acc"] <= 1.0
    # resume from the checkpoint (written from the device) onto the device
    history2 = fit(_model(kind), data, data, epochs=2, batch_size=16, device=device, progress=False, log=None,
                   train_eval_size=None, checkpoint=tmp_path / "ckpt.pt")
    assert [r["epoch"] for r in history2] == [1, 2]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", KINDS)
def test_evaluate_runs_on_device(kind, device):
    model = _model(kind).to(device)
    data = _data(20)
    res = evaluate_runs(model, data, runs=2, seed=0, device=device)
    assert len(res["runs"]) == 2 and all(0.0 <= a <= 1.0 for a in res["runs"] + [res["noise_free"]])
    # the device defaults to the model's
    assert accuracy(model, data, noise=True, seed=1) == accuracy(model, data, noise=True, seed=1, device=device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ("dt", "backprop"))
def test_chain_tools_and_plots_on_device(kind, device):
    model = _model(kind).to(device)
    data = _data(12)
    x = data.x[:6].to(device)
    for g in (torch.Generator(device).manual_seed(1), torch.Generator().manual_seed(1)):
        traj = ev.run_chain(model, x, noise=True, generator=g, z_mode="shuffle")
        assert traj["z"].device.type == device
    pred, probs = ev.classify_batch(model, x, noise=True, seed=2)
    assert pred.device.type == device
    acc = ev.per_step_accuracy(model, data, noise=True, seed=0, batch_size=5, device=device)
    assert len(acc["u_hat"]) == model.T
    abl = ev.ablation(model, data, noise=True, seed=0, batch_size=5, device=device)
    assert set(abl) == set(ev.ABLATION_LABELS)
    est = ev.estimate_epoch_seconds(model, data, batches=1, batch_size=6, warmup=0)
    assert est["seconds_per_batch"] > 0
    for fig in (ev.plot_chain(traj, x, n=3, labels=data.y[:6].to(device)),
                ev.plot_chain(traj, x, n=3, key="u_hat"),
                ev.plot_predictions(x, pred, data.y[:6].to(device), probs)):
        plt.close(fig)


@pytest.mark.parametrize("device", DEVICES)
def test_label_plots_take_device_tensors(device):
    s = make_schedule("cosine", 4)
    W = torch.eye(M, device=device)
    u_y = W[torch.tensor([0, 1, 2], device=device)]
    z = plots.sample_label_trajectories(u_y, s, seed=0)
    assert z.shape == (s.T + 1, 3, M)
    # the same draws on every device (CPU generator, drawn on the CPU)
    assert torch.allclose(z.cpu(), plots.sample_label_trajectories(u_y.cpu(), s, seed=0), rtol=0, atol=1e-12)
    for fig in (plots.plot_label_trajectories(z, u_y, s),
                plots.plot_marginals(W, s, ts=(0, 4), n_per_class=5),
                plots.plot_noised_labels_at(2, W_embed=W, schedule=s, y=1, n_per_class=5),
                plots.plot_images(torch.rand(3, 1, 8, 8, device=device))):
        plt.close(fig)


@pytest.mark.parametrize("device", DEVICES)
def test_learned_schedule_on_device_takes_float64_cpu_times(device):
    model = _model("ct").to(device)
    t = torch.linspace(0, 1, 5, dtype=torch.float64)       # as notebook 05 builds its grids
    gamma = model.schedule.gamma(t)
    assert gamma.device.type == "cpu" and gamma.dtype == torch.float64
    _, dsnr = model.schedule.snr_derivative(t, create_graph=False)
    assert dsnr.device.type == "cpu" and (dsnr > 0).all()
    with torch.no_grad():
        assert float(model.schedule.gamma(torch.tensor([0.5], dtype=torch.float64))) == pytest.approx(
            float(model.schedule.gamma(torch.tensor([0.5], device=device))), abs=1e-5)
    co = ct_step_coefficients(model.schedule, 4)
    assert co["a"].dtype == torch.float64 and co["a"].device.type == "cpu"
    assert "gamma" in model.schedule.table(3)
    # u_hat / velocity take a time tensor from anywhere
    x = _data(3).x.to(device)
    z = torch.zeros(3, model.d, device=device)
    assert model.u_hat(x, z, torch.tensor([0.5]))[0].device.type == device

"""NoProp-CT and NoProp-FM (nplib.continuous): schedule, targets, samplers, errors, a training step."""
import math

import pytest
import torch

from nplib.continuous import (ContinuousNet, LearnedSchedule, NoPropCT, NoPropFM, build, ct_step_coefficients,
                              euler_integrate, fm_path, fm_target, sinusoidal_embedding, stratified_times)
from nplib.blocks import BlockConfig

TINY = BlockConfig(channels=(4,), pools=(True,), hidden=16, head_hidden=16, dropout=0.0)
SHAPE = (1, 12, 12)


def _randomise(module, seed, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("seed", range(20))
def test_learned_schedule_is_monotone_for_random_parameters(seed):
    sched = LearnedSchedule(hidden=8)
    _randomise(sched, seed)
    t = torch.linspace(0, 1, 2001, dtype=torch.float64)
    with torch.no_grad():
        gamma = sched.gamma(t)
        ab = sched.alpha_bar(t)
        snr = sched.snr(t)
        g0, g1 = float(sched.g0), float(sched.g1)
    assert torch.all(gamma[1:] <= gamma[:-1])        # gamma decreasing
    assert torch.all(ab[1:] >= ab[:-1])              # alpha_bar increasing (t = 0 noise, t = 1 label)
    assert torch.all(snr[1:] >= snr[:-1])
    # the ends are g1 (noise) and g0 (label)
    assert math.isclose(float(gamma[0]), g1, rel_tol=1e-6, abs_tol=1e-6)
    assert math.isclose(float(gamma[-1]), g0, rel_tol=1e-6, abs_tol=1e-6)
    assert g0 < g1


def test_schedule_initial_endpoints_and_alpha_bar_relation():
    sched = LearnedSchedule(g0=-7.0, g1=7.0)
    t = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    with torch.no_grad():
        g = sched.gamma(t)
        ab, snr = sched.alpha_bar(t), sched.snr(t)
    assert torch.allclose(g[[0, 2]], torch.tensor([7.0, -7.0], dtype=torch.float64), atol=1e-5)
    # SNR = alpha_bar / (1 - alpha_bar)
    assert torch.allclose(snr, ab / (1 - ab), rtol=1e-10)


@pytest.mark.parametrize("seed", range(3))
def test_snr_derivative_matches_finite_difference(seed):
    sched = LearnedSchedule(hidden=8)
    _randomise(sched, seed, scale=0.5)
    sched.double()
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    _, dsnr = sched.snr_derivative(t, create_graph=False)
    h = 1e-6
    with torch.no_grad():
        fd = (sched.snr(t + h) - sched.snr(t - h)) / (2 * h)
    assert torch.all(dsnr > 0)
    assert torch.allclose(dsnr, fd, rtol=1e-5)


def test_snr_derivative_trains_the_schedule():
    """create_graph=True: a loss on SNR'(t) has gradients for the schedule's parameters."""
    sched = LearnedSchedule()
    _, dsnr = sched.snr_derivative(torch.rand(8), create_graph=True)
    dsnr.sum().backward()
    assert sched.raw_w1.grad is not None and sched.g0.grad is not None and sched.raw_gap.grad is not None


def test_ct_step_coefficients_reproduce_the_marginal():
    """With the true u_y, one step maps q(z_s|y) to q(z_t|y): mean a + b sqrt(ab_s) = sqrt(ab_t), variance."""
    sched = LearnedSchedule()
    co = ct_step_coefficients(sched, 50)
    with torch.no_grad():
        ab = sched.alpha_bar(co["t"])
    ab_s, ab_t = ab[:-1], ab[1:]
    assert torch.allclose(co["a"] + co["b"] * ab_s.sqrt(), ab_t.sqrt(), atol=1e-12)
    assert torch.allclose(co["b"] ** 2 * (1 - ab_s) + co["c"], 1 - ab_t, atol=1e-12)
    assert torch.all(co["a"] > 0) and torch.all(co["b"] > 0) and torch.all(co["c"] > 0)


def test_fm_path_and_target():
    z0 = torch.randn(5, 3)
    z1 = torch.randn(5, 3)
    t = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    zt = fm_path(z0, z1, t)
    assert torch.allclose(zt[0], z0[0]) and torch.allclose(zt[-1], z1[-1])
    assert torch.allclose(zt[1], 0.25 * z1[1] + 0.75 * z0[1])
    # the target is the time derivative of the path
    h = 1e-3
    d = (fm_path(z0, z1, t + h) - fm_path(z0, z1, t - h)) / (2 * h)
    assert torch.allclose(fm_target(z0, z1), d, atol=1e-3)
    assert not torch.allclose(fm_path(z0, z1, t, sigma=0.1), zt)


def test_euler_is_exact_for_a_constant_field_and_steps_agree():
    z0 = torch.randn(4, 3)
    c = torch.randn(4, 3)
    ends = [euler_integrate(lambda z, t: c, z0, n) for n in (1, 7, 1000)]
    for e in ends:
        assert torch.allclose(e, z0 + c, atol=1e-4)   # float32 rounding over 1000 additions
    # a linear-in-t field dz/dt = 2t c: z_1 = z_0 + c; Euler converges as O(1/N)
    errs = [float((euler_integrate(lambda z, t: 2 * t * c, z0, n) - (z0 + c)).abs().max()) for n in (10, 100, 1000)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 2e-3 * float(c.abs().max())


def test_ct_sampler_end_point_does_not_depend_on_N_for_a_network_that_ignores_t():
    """A network that always predicts class 2 (whatever z and t): every N gives the same end point of
    the noise-free chain. The time argument of each step is checked in test_formulas.py with a
    network whose answer depends on t.

    The mean m of z follows m_t = a + b m_s, and a + b sqrt(alpha_bar(s)) = sqrt(alpha_bar(t)), so the
    gap to sqrt(alpha_bar) is multiplied by b at each step; prod_k b_k telescopes to
    sqrt(ab0 / ab1) (1 - ab1) / (1 - ab0) for ANY grid. Starting from z_0 = 0 (gap -sqrt(ab0)):
    z_1 = [sqrt(ab1) - ab0 (1 - ab1) / (sqrt(ab1) (1 - ab0))] u_2.
    """
    model = NoPropCT(SHAPE, 4, model=TINY, inference_steps=3)
    with torch.no_grad():
        for p in model.net.parameters():
            p.zero_()
        model.net.head[-1].bias[2] = 50.0
    x = torch.randn(6, *SHAPE)
    with torch.no_grad():
        ab0, ab1 = model.schedule.alpha_bar(torch.tensor([0.0, 1.0], dtype=torch.float64)).tolist()
    expect = torch.zeros(6, 4)
    expect[:, 2] = math.sqrt(ab1) - ab0 * (1 - ab1) / (math.sqrt(ab1) * (1 - ab0))
    for n in (1, 5, 1000):
        _, traj = model.sample(x, noise=False, steps=n, return_trajectory=True)
        assert torch.allclose(traj["z"][-1], expect, atol=1e-5), n
    # stochastic: the final distribution is q(z_1 | y=2) for any N (mean sqrt(ab1), var 1 - ab1)
    xb = torch.randn(1, *SHAPE).expand(4000, *SHAPE)
    for n in (2, 200):
        _, traj = model.sample(xb, noise=True, steps=n, generator=torch.Generator().manual_seed(n),
                               return_trajectory=True)
        z = traj["z"][-1]
        assert torch.allclose(z.mean(0), expect[0], atol=0.02)   # 6 standard errors at 4000 samples
        assert torch.allclose(z.var(0), torch.full((4,), 1 - ab1), rtol=0.15, atol=1e-4)


def test_fm_sampler_with_a_constant_real_network_output_is_exact_for_any_N():
    """A real network whose output is its final bias (all weights 0): v = (0, 1, 0, 0) for every z
    and t, so Euler is exact and 1, 10 and 1000 steps all end at z_1 = (0, 1, 0, 0); the predicted
    class is 1. (Time-dependent fields: test_formulas.py.)"""
    model = NoPropFM(SHAPE, 4, model=TINY, inference_steps=10)
    with torch.no_grad():
        for p in model.net.parameters():
            p.zero_()
        model.net.head[-1].bias.copy_(torch.tensor([0.0, 1.0, 0.0, 0.0]))
    x = torch.randn(3, *SHAPE)
    outs = [model.sample(x, noise=False, steps=n, return_trajectory=True)[1]["z"][-1] for n in (1, 10, 1000)]
    for o in outs:
        assert torch.allclose(o, torch.tensor([0.0, 1.0, 0.0, 0.0]).expand(3, 4), atol=1e-5)
    assert torch.equal(model.predict(x, noise=False), torch.full((3,), 1))


def test_image_features_are_reused_exactly():
    """The split first head layer equals the concat layer of the spec."""
    net = ContinuousNet(SHAPE, 4, 4, TINY)
    net.eval()
    x, z, t = torch.randn(5, *SHAPE), torch.randn(5, 4), torch.rand(5)
    h = TINY.hidden
    emb = sinusoidal_embedding(t)
    cat = torch.cat([net.image_path(x), net.z_path(z), net.time_path(emb)], dim=1)
    ref = net.head(net.fuse(cat))
    assert cat.shape[1] == 3 * h
    assert torch.allclose(net(x, z, t), ref, atol=1e-5)


def test_stratified_times_cover_the_interval():
    t = stratified_times(100, torch.Generator().manual_seed(0))
    assert t.shape == (100,) and float(t.min()) >= 0 and float(t.max()) < 1
    assert torch.equal(torch.sort((t * 100).floor()).values, torch.arange(100, dtype=torch.float32))


@pytest.mark.parametrize("call, match", [
    (lambda: build("xt", "small", SHAPE, 4), "variant"),
    (lambda: build("ct", "huge", SHAPE, 4), "model size"),
    (lambda: build("ct", TINY, SHAPE, 4, eta=-1.0), "eta"),
    (lambda: build("fm", TINY, SHAPE, 4, eta=1.0), "no eta"),
    (lambda: build("ct", TINY, SHAPE, 4, inference_steps=0), "inference_steps"),
    (lambda: build("fm", TINY, (12, 12), 4), "image_shape"),
    (lambda: NoPropFM(SHAPE, 4, model=TINY, sigma=-0.5), "sigma"),
    (lambda: LearnedSchedule(g0=3.0, g1=-3.0), "g0 < g1"),
    (lambda: sinusoidal_embedding(torch.rand(3), dim=7), "even"),
    (lambda: fm_path(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2)), "shape"),
    (lambda: NoPropCT(SHAPE, 4, model=TINY).predict(torch.randn(2, 1, 28, 28)), "images of shape"),
    (lambda: NoPropCT(SHAPE, 4, model=TINY).predict(torch.randn(2, *SHAPE), steps=0), "steps"),
    (lambda: NoPropCT(SHAPE, 4, model=TINY).loss_terms(torch.randn(2, *SHAPE), torch.tensor([0, 9])), "labels"),
])
def test_bad_arguments_raise_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _easy_batch(n=64, m=4, seed=0):
    """Images whose class is written in their mean brightness: an easy problem."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % m
    x = 0.1 * torch.randn(n, *SHAPE, generator=g) + (y.float() - 1.5).view(-1, 1, 1, 1)
    return x, y


@pytest.mark.parametrize("variant, embedding", [("ct", "onehot"), ("fm", "onehot"), ("ct", "learned"),
                                                ("fm", "learned")])
def test_sixty_training_steps_lower_the_loss_on_an_easy_batch(variant, embedding):
    """End to end: 60 Adam steps on a batch whose class is its brightness cut the loss (measured on
    a fixed draw of noise and times) by more than 30 %. The loss formulas themselves are checked
    by hand in test_formulas.py."""
    torch.manual_seed(0)
    model = build(variant, TINY, SHAPE, 4, embedding=embedding, embed_dim=6 if embedding == "learned" else None,
                  inference_steps=20)
    opts = model.configure_optimizers(lr=3e-3, weight_decay=1e-3)
    x, y = _easy_batch()

    def eval_loss():
        with torch.no_grad():
            return float(model.loss_terms(x, y, generator=torch.Generator().manual_seed(7))["loss"])

    before = eval_loss()
    for _ in range(60):
        out = model.training_step(x, y, opts)
        assert math.isfinite(out["loss"])
    after = eval_loss()
    assert after < 0.7 * before, (before, after)
    assert model.predict(x, noise=False).shape == y.shape
    assert model.config()["variant"] == variant


def test_training_step_raises_on_non_finite_loss():
    model = build("fm", TINY, SHAPE, 4)
    opts = model.configure_optimizers()
    x, y = _easy_batch(8)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError):
        model.training_step(x, y, opts)


def test_schedule_parameters_have_no_weight_decay():
    model = build("ct", TINY, SHAPE, 4)
    groups = model.configure_optimizers(lr=1e-3, weight_decay=1e-3)["all"].param_groups
    sched_ids = {id(p) for p in model.schedule.parameters()}
    for g in groups:
        ids = {id(p) for p in g["params"]}
        assert (g["weight_decay"] == 0.0) == bool(ids & sched_ids)
    n_opt = sum(len(g["params"]) for g in groups)
    assert n_opt == sum(1 for p in model.parameters() if p.requires_grad)

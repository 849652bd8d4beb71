"""Every formula whose number a student or a paper comparison relies on, checked independently.

Each test replaces the learned parts (blocks, networks, classifiers) by *spies*: small modules
that record what they receive and return values chosen in the test. The expected numbers are
then worked out in the test from the spec's formulas (/work/shared/docs/noprop-spec.md), typed
by hand, or estimated by Monte Carlo; nothing is compared with the code path under test.

Hand-typed schedule used throughout (T = 2), alpha_bar = (0.1, 0.4, 0.8):

    alpha     = (0.1/0.4, 0.4/0.8, 0.8)        = (0.25, 0.5, 0.8)
    SNR       = (0.1/0.9, 0.4/0.6, 0.8/0.2)    = (1/9, 2/3, 4)
    SNR(t) - SNR(t-1)                          = (5/9, 10/3)
    a_1 = sqrt(0.4) 0.75 / 0.9 = 0.5270462767    b_1 = 0.5 * 0.6 / 0.9 = 1/3      c_1 = 0.6 * 0.75 / 0.9 = 0.5
    a_2 = sqrt(0.8) 0.5 / 0.6  = 0.7453559925    b_2 = sqrt(0.5) 0.2 / 0.6 = 0.2357022604   c_2 = 0.2 * 0.5 / 0.6 = 1/6
    KL(q(z_0|y) || N(0,I)), one-hot, d = 4: 0.5 [0.1 (1 - 4) - 4 ln 0.9] = 0.0607210313

For NoProp-CT the learned schedule is pinned to a straight line (:func:`linear_gamma`):
gamma(t) = 3 - 6 t, so alpha_bar(t) = 1 / (1 + e^(3 - 6t)), SNR(t) = e^(6t - 3), SNR'(t) = 6 e^(6t - 3).
"""
import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nplib import timeseries as ts
from nplib.blocks import BlockConfig
from nplib.continuous import NoPropCT, NoPropFM, ct_step_coefficients, euler_integrate
from nplib.models import BackpropBaseline, NoPropDT
from nplib.schedules import DTSchedule

TINY = BlockConfig(channels=(4,), pools=(True,), hidden=8, head_hidden=8, dropout=0.0)
SHAPE = (1, 8, 8)
M = 4
AB = (0.1, 0.4, 0.8)
A1, B1, C1 = 0.5270462767, 1 / 3, 0.5
A2, B2, C2 = 0.7453559925, 0.2357022604, 1 / 6
KL_ONEHOT = 0.0607210313


def onehot_logits(k: int, n: int, big: float = 100.0) -> torch.Tensor:
    """Logits whose softmax is (numerically exactly) the one-hot vector e_k."""
    out = torch.zeros(n, M)
    out[:, k] = big
    return out


class SpyBlock(nn.Module):
    """Stands in for a DT block: records (x, z) and returns ``fn(x, z)`` as logits."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.seen = []

    def forward(self, x, z):
        self.seen.append(z.detach().clone())
        return self.fn(x, z)


class SpyLinear(nn.Module):
    """Stands in for the classifier p(y | z): records z and returns ``scale * z`` as logits."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale
        self.seen = []

    def forward(self, z):
        self.seen.append(z.detach().clone())
        return self.scale * z


class SpyNet(nn.Module):
    """Stands in for the CT / FM network: logits = ``fn(z, t)`` with t a (batch,) tensor.

    Implements both entry points the models use: ``forward(x, z, t)`` (training) and the split
    ``image_features`` / ``time_features`` / ``logits_from_features`` (samplers). Records every
    (z, t) it is called with.
    """

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.seen_z, self.seen_t = [], []

    def _call(self, z, t):
        t = torch.as_tensor(t, dtype=torch.float64).reshape(-1).expand(z.shape[0])
        self.seen_z.append(z.detach().clone())
        self.seen_t.append(t.clone())
        return self.fn(z, t).to(z.dtype)

    def forward(self, x, z, t):
        return self._call(z, t)

    def image_features(self, x):
        return torch.zeros(x.shape[0], 0)

    def time_features(self, t):
        return torch.tensor([float(t)], dtype=torch.float64)

    def logits_from_features(self, feat_x, z, feat_t):
        return self._call(z, feat_t)


class ZeroLogits(nn.Module):
    """A classifier whose logits are all 0: its cross-entropy is exactly ln m."""

    def forward(self, z):
        return torch.zeros(z.shape[0], M)


def hand_schedule() -> DTSchedule:
    return DTSchedule.from_alpha_bar(list(AB))


def dt_model(eta=0.1, embedding="onehot", embed_dim=None) -> NoPropDT:
    torch.manual_seed(0)
    return NoPropDT(SHAPE, M, T=2, block=TINY, schedule=hand_schedule(), eta=eta, embedding=embedding,
                    embed_dim=embed_dim)


def linear_gamma(sched) -> None:
    """Pin the learned CT schedule to gamma(t) = g0 + (g1 - g0)(1 - t): the sigmoid units get
    weight softplus(-60) ~ 1e-26, so gt(t) = w_1 t and gbar(t) = t."""
    with torch.no_grad():
        sched.raw_w2.fill_(-60.0)


def ab_ct(t):
    """alpha_bar(t) of the pinned CT schedule, gamma(t) = 3 - 6t."""
    return 1.0 / (1.0 + np.exp(3.0 - 6.0 * np.asarray(t, dtype=np.float64)))


def standardised(z: torch.Tensor, mean: torch.Tensor, var) -> torch.Tensor:
    return (z.double() - mean) / torch.as_tensor(var, dtype=torch.float64).sqrt()


# ================================================================ schedule by hand
def test_hand_schedule_every_array_matches_the_values_worked_out_by_hand():
    s = hand_schedule()
    expect = {"alpha": [0.25, 0.5, 0.8], "snr": [1 / 9, 2 / 3, 4.0], "snr_delta": [5 / 9, 10 / 3],
              "a": [A1, A2], "b": [B1, B2], "c": [C1, C2]}
    for name, values in expect.items():
        np.testing.assert_allclose(getattr(s, name).numpy(), values, rtol=1e-9, err_msg=name)


# ================================================================ NoProp-DT losses
def test_dt_block_loss_is_T_half_eta_snr_delta_times_squared_error_summed_over_d():
    """L_t = (T/2) eta (SNR(t) - SNR(t-1)) ||u_hat - u_y||^2 with the norm SUMMED over d.

    The spy block returns zero logits, so u_hat = (1/4, 1/4, 1/4, 1/4) and for one-hot
    ||u_hat - u_y||^2 = (3/4)^2 + 3 (1/4)^2 = 3/4 for every example.
    """
    model = dt_model(eta=0.3)
    for t, weight in ((1, 5 / 9), (2, 10 / 3)):
        spy = SpyBlock(lambda x, z: torch.zeros(z.shape[0], M))
        model.blocks[t - 1] = spy
        y = torch.tensor([0, 1, 2, 3, 1])
        loss = model.block_loss(t, torch.zeros(5, *SHAPE), y)
        assert len(spy.seen) == 1, f"block {t}'s loss did not call block {t}"
        assert float(loss) == pytest.approx((2 / 2) * 0.3 * weight * 0.75, rel=1e-6)


def test_dt_block_t_sees_a_sample_of_q_z_t_minus_1_given_y():
    """z_{t-1} ~ N(sqrt(alpha_bar_{t-1}) u_y, (1 - alpha_bar_{t-1}) I), captured at the block's input."""
    model = dt_model()
    n = 20000
    y = torch.full((n,), 2)
    u = torch.zeros(M, dtype=torch.float64)
    u[2] = 1.0
    for t in (1, 2):
        spy = SpyBlock(lambda x, z: torch.zeros(z.shape[0], M))
        model.blocks[t - 1] = spy
        model.block_loss(t, torch.zeros(n, *SHAPE), y, generator=torch.Generator().manual_seed(t))
        z = spy.seen[0].double()
        ab = AB[t - 1]
        np.testing.assert_allclose(z.mean(0).numpy(), (math.sqrt(ab) * u).numpy(), atol=0.03)
        np.testing.assert_allclose(z.var(0).numpy(), [1 - ab] * M, rtol=0.04)


def test_dt_classifier_is_trained_on_a_sample_of_q_z_T_given_y_not_on_the_clean_label():
    """The classifier's input over many draws has the mean sqrt(alpha_bar_T) u_y = sqrt(0.8) u_y
    and the variance 1 - alpha_bar_T = 0.2 of q(z_T | y); the clean u_y would have variance 0."""
    model = dt_model()
    spy = SpyLinear()
    model.classifier = spy
    n = 20000
    y = torch.full((n,), 1)
    model.classifier_loss(y, generator=torch.Generator().manual_seed(0))
    z = spy.seen[0].double()
    np.testing.assert_allclose(z.mean(0).numpy(), [0.0, math.sqrt(0.8), 0.0, 0.0], atol=0.01)
    np.testing.assert_allclose(z.var(0).numpy(), [0.2] * M, rtol=0.04)


def test_dt_classifier_loss_is_cross_entropy_on_z_T_plus_the_closed_form_kl():
    """classifier_loss = mean_i -log softmax(5 z_T,i)[y_i] + 0.0607210313 (KL worked out by hand)."""
    model = dt_model()
    spy = SpyLinear(scale=5.0)
    model.classifier = spy
    y = torch.tensor([0, 1, 2, 3, 3, 0])
    loss = float(model.classifier_loss(y, generator=torch.Generator().manual_seed(1)))
    logits = 5.0 * spy.seen[0].double()
    ce = float((torch.logsumexp(logits, 1) - logits[torch.arange(6), y]).mean())
    assert loss == pytest.approx(ce + KL_ONEHOT, rel=1e-5)
    # with a classifier that outputs zeros, the cross-entropy is exactly ln 4
    model.classifier = SpyLinear(scale=0.0)
    assert float(model.classifier_loss(y)) == pytest.approx(math.log(4) + KL_ONEHOT, rel=1e-6)


def test_dt_kl_term_grows_with_the_squared_norm_of_a_learned_embedding():
    """KL = 0.5 [alpha_bar_0 (||u||^2 - d) - d ln(1 - alpha_bar_0)]: with ||u_y||^2 = 9, d = 2:
    0.5 [0.1 * 7 - 2 ln 0.9] = 0.4553605156."""
    model = dt_model(embedding="learned", embed_dim=2)
    with torch.no_grad():
        model.embedding.W_embed.copy_(torch.tensor([[3.0, 0.0], [0.0, 3.0], [-3.0, 0.0], [0.0, -3.0]]))
    model.classifier = ZeroLogits()   # cross-entropy exactly ln 4
    y = torch.tensor([0, 2])
    assert float(model.classifier_loss(y).detach()) == pytest.approx(math.log(4) + 0.4553605156, rel=1e-6)


def test_dt_u_hat_is_softmax_of_the_block_logits_times_W_embed():
    """p = softmax(ln(1, 2, 3, 4)) = (0.1, 0.2, 0.3, 0.4); u_hat = p @ W worked out by hand."""
    model = dt_model(embedding="learned", embed_dim=2)
    with torch.no_grad():
        model.embedding.W_embed.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 1.0], [2.0, 3.0]]))
    logits = torch.log(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    model.blocks[0] = SpyBlock(lambda x, z: logits.expand(z.shape[0], M))
    u_hat, out_logits = model.u_hat(1, torch.zeros(1, *SHAPE), torch.zeros(1, 2))
    # (0.1 - 0.3 + 0.8, 0.4 + 0.3 + 1.2) = (0.6, 1.9)
    np.testing.assert_allclose(u_hat.detach().numpy(), [[0.6, 1.9]], rtol=1e-6)
    assert torch.equal(out_logits, logits)


# ================================================================ NoProp-DT chain
def _dt_chain_model():
    model = dt_model()
    spies = [SpyBlock(lambda x, z: onehot_logits(0, z.shape[0])), SpyBlock(lambda x, z: onehot_logits(3, z.shape[0]))]
    for t, spy in enumerate(spies, start=1):
        model.blocks[t - 1] = spy
    model.classifier = SpyLinear()
    return model, spies


def test_dt_deterministic_chain_follows_a_t_u_hat_plus_b_t_z_by_hand():
    """u_hat_1 = e_0, u_hat_2 = e_3, z_0 = 0:
    z_1 = a_1 e_0 = (0.52705, 0, 0, 0);  z_2 = a_2 e_3 + b_2 z_1 = (0.2357 * 0.52705, 0, 0, 0.74536)."""
    model, spies = _dt_chain_model()
    logits = model.sample(torch.zeros(3, *SHAPE), noise=False)
    z1 = [A1, 0, 0, 0]
    z2 = [B2 * A1, 0, 0, A2]
    np.testing.assert_allclose(spies[0].seen[0].numpy(), np.zeros((3, M)))
    np.testing.assert_allclose(spies[1].seen[0].numpy(), [z1] * 3, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(logits.numpy(), [z2] * 3, rtol=1e-6, atol=1e-7)   # classifier on z_T


def test_dt_stochastic_chain_has_the_mean_and_variance_worked_out_by_hand():
    """z_0 ~ N(0, I): Var z_1 = b_1^2 + c_1 = 1/9 + 1/2 = 0.61111, Var z_2 = b_2^2 Var z_1 + c_2 = 0.20062;
    the means are those of the deterministic chain."""
    model, spies = _dt_chain_model()
    n = 20000
    logits = model.sample(torch.zeros(n, *SHAPE), noise=True, generator=torch.Generator().manual_seed(0))
    z0, z1 = spies[0].seen[0], spies[1].seen[0]
    np.testing.assert_allclose(z0.var(0).numpy(), [1.0] * M, rtol=0.04)
    np.testing.assert_allclose(z1.mean(0).numpy(), [A1, 0, 0, 0], atol=0.025)
    np.testing.assert_allclose(z1.var(0).numpy(), [0.6111111] * M, rtol=0.04)
    np.testing.assert_allclose(logits.mean(0).numpy(), [B2 * A1, 0, 0, A2], atol=0.01)
    np.testing.assert_allclose(logits.var(0).numpy(), [0.2006173] * M, rtol=0.04)


def test_dt_inference_never_looks_up_a_label_embedding():
    """Spec 8.6: a chain that built z_T from the true label would call the embedding lookup."""
    model, _ = _dt_chain_model()

    def forbidden(y):
        raise AssertionError("the embedding lookup u_y = W_embed[y] was called at inference")

    model.embedding.forward = forbidden
    model.sample(torch.zeros(2, *SHAPE), noise=True)
    model.predict(torch.zeros(2, *SHAPE), noise=False)


# ================================================================ backprop baseline
def test_backprop_baseline_recursion_with_tanh_gates_by_hand():
    """z_t = (1 - tanh w_t) z_{t-1} + tanh(w_t) u_hat_t with u_hat_t = e_{t-1}, w = (0.3, -0.2, 1.0), z_0 = 0."""
    torch.manual_seed(0)
    model = BackpropBaseline(SHAPE, M, T=3, block=TINY, classifier_scale=None)
    spies = [SpyBlock(lambda x, z, k=k: onehot_logits(k, z.shape[0])) for k in range(3)]
    for t, spy in enumerate(spies, start=1):
        model.blocks[t - 1] = spy
    model.classifier = SpyLinear()
    with torch.no_grad():
        model.w.copy_(torch.tensor([0.3, -0.2, 1.0]))
    out = model(torch.zeros(2, *SHAPE), noise=False)
    g1, g2, g3 = math.tanh(0.3), math.tanh(-0.2), math.tanh(1.0)
    z1 = [g1, 0.0, 0.0, 0.0]
    z2 = [(1 - g2) * g1, g2, 0.0, 0.0]
    z3 = [(1 - g3) * z2[0], (1 - g3) * z2[1], g3, 0.0]
    np.testing.assert_allclose(spies[1].seen[0].numpy(), [z1] * 2, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(spies[2].seen[0].numpy(), [z2] * 2, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out.detach().numpy(), [z3] * 2, rtol=1e-6, atol=1e-7)
    # typed: z_3 = (0.0831587, -0.0470554, 0.7615942, 0)
    np.testing.assert_allclose(out.detach().numpy()[0], [0.0831587, -0.0470554, 0.7615942, 0.0], atol=1e-6)


def test_backprop_baseline_starts_from_standard_normal_noise():
    torch.manual_seed(0)
    model = BackpropBaseline(SHAPE, M, T=1, block=TINY)
    spy = SpyBlock(lambda x, z: onehot_logits(0, z.shape[0]))
    model.blocks[0] = spy
    model(torch.zeros(20000, *SHAPE), noise=True, generator=torch.Generator().manual_seed(0))
    z0 = spy.seen[0]
    np.testing.assert_allclose(z0.mean(0).numpy(), [0.0] * M, atol=0.03)
    np.testing.assert_allclose(z0.var(0).numpy(), [1.0] * M, rtol=0.04)


def test_backprop_baseline_noise_is_on_by_default_and_drawn_from_the_given_generator():
    """Training calls ``model(x)`` without ``noise=``: z_0 must then be N(0, I) (variance 1; the
    tolerance 0.1 is 4.5 standard errors sqrt(2/4000)), drawn from the generator passed in:
    the same seed gives the same z_0 whatever the global generator did, another seed another z_0."""
    torch.manual_seed(0)
    model = BackpropBaseline(SHAPE, M, T=1, block=TINY)
    spy = SpyBlock(lambda x, z: onehot_logits(0, z.shape[0]))
    model.blocks[0] = spy
    x = torch.zeros(4000, *SHAPE)
    z = []
    for global_seed, seed in ((1, 0), (2, 0), (3, 1)):
        torch.manual_seed(global_seed)
        model(x, generator=torch.Generator().manual_seed(seed))
        z.append(spy.seen[-1])
    np.testing.assert_allclose(z[0].var(0).numpy(), [1.0] * M, rtol=0.1)
    assert torch.equal(z[0], z[1]) and not torch.equal(z[0], z[2])


# ================================================================ NoProp-CT
def ct_model(eta=1.0, steps=4) -> NoPropCT:
    torch.manual_seed(0)
    model = NoPropCT(SHAPE, M, model=TINY, eta=eta, inference_steps=steps)
    linear_gamma(model.schedule)
    return model


def test_pinned_ct_schedule_has_the_closed_form_gamma_alpha_bar_and_snr_derivative():
    sched = ct_model().schedule
    t = torch.tensor([0.0, 0.2, 0.5, 0.9, 1.0], dtype=torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(sched.gamma(t).numpy(), 3 - 6 * t.numpy(), atol=1e-5)
        np.testing.assert_allclose(sched.alpha_bar(t).numpy(), ab_ct(t.numpy()), rtol=1e-5)
        np.testing.assert_allclose(sched.snr(t).numpy(), np.exp(6 * t.numpy() - 3), rtol=1e-5)
    _, dsnr = sched.snr_derivative(t, create_graph=False)
    np.testing.assert_allclose(dsnr.detach().numpy(), 6 * np.exp(6 * t.numpy() - 3), rtol=1e-5)


def _ct_loss_run(eta, n=4000, seed=0):
    model = ct_model(eta=eta)
    net = SpyNet(lambda z, t: torch.zeros(z.shape[0], M))  # u_hat = (1/4, ..., 1/4)
    model.net = net
    model.classifier = SpyLinear(scale=5.0)
    y = torch.arange(n) % M
    out = model.loss_terms(torch.zeros(n, *SHAPE), y, generator=torch.Generator().manual_seed(seed))
    return model, net, y, out


def test_ct_denoising_term_is_eta_half_snr_prime_times_squared_error_summed_over_d():
    """loss_denoise = mean_i (eta/2) SNR'(t_i) ||u_hat - u_y||^2 = mean_i (eta/2) 6 e^(6 t_i - 3) * 3/4.

    SNR(t) = e^(6t-3) instead of SNR'(t) would be 6 times smaller."""
    for eta in (1.0, 0.5):
        _, net, _, out = _ct_loss_run(eta, n=64)
        t = net.seen_t[0].numpy()
        expect = np.mean(0.5 * eta * 6.0 * np.exp(6 * t - 3) * 0.75)
        assert float(out["loss_denoise"]) == pytest.approx(expect, rel=1e-4)


def test_ct_loss_trains_the_schedule_through_the_snr_prime_weight():
    """SNR'(t) is computed with create_graph=True, so the loss trains the schedule's shape.

    With a network that ignores z_t and an unpinned schedule, w_1 (the weight of the linear part
    of gt) moves the loss ONLY through the weight SNR'(t_i): gamma(0) = g1 and gamma(1) = g0 hold
    for every w_1, so the KL and the classifier term do not depend on it. The autograd gradient in
    raw_w1 must match a central finite difference of the loss (same seed: same t and eps; it is
    about -0.0049 here, the float32 rounding of the difference about 1e-5); a detached SNR' gives 0."""
    torch.manual_seed(0)
    model = NoPropCT(SHAPE, M, model=TINY)
    model.net = SpyNet(lambda z, t: torch.zeros(z.shape[0], M))
    model.classifier = SpyLinear(scale=5.0)
    x, y = torch.zeros(16, *SHAPE), torch.arange(16) % M

    def loss():
        return model.loss_terms(x, y, generator=torch.Generator().manual_seed(0))["loss"]

    (grad,) = torch.autograd.grad(loss(), model.schedule.raw_w1)
    h = 1e-2
    with torch.no_grad():
        model.schedule.raw_w1 += h
    up = float(loss().detach())
    with torch.no_grad():
        model.schedule.raw_w1 -= 2 * h
    down = float(loss().detach())
    fd = (up - down) / (2 * h)
    assert abs(fd) > 2e-3
    assert float(grad) == pytest.approx(fd, rel=0.1)


def test_ct_times_are_stratified_over_the_batch():
    _, net, _, _ = _ct_loss_run(1.0, n=64)
    t = net.seen_t[0]
    assert torch.equal(torch.sort(torch.floor(t * 64)).values, torch.arange(64, dtype=torch.float64))


def test_ct_network_sees_a_sample_of_q_z_t_given_y_at_its_own_time():
    """(z_t - sqrt(alpha_bar(t)) u_y) / sqrt(1 - alpha_bar(t)) is standard normal, with alpha_bar(t) = 1/(1+e^(3-6t))."""
    _, net, y, _ = _ct_loss_run(1.0)
    z, t = net.seen_z[0].double(), net.seen_t[0].numpy()
    ab = torch.tensor(ab_ct(t))
    u = F.one_hot(y, M).double()
    r = standardised(z, ab.sqrt()[:, None] * u, (1 - ab)[:, None])
    on_label = r[torch.arange(len(y)), y]
    assert abs(float(on_label.mean())) < 0.06
    assert float(r.mean()) == pytest.approx(0.0, abs=0.03)
    assert float(r.var()) == pytest.approx(1.0, rel=0.04)


def test_ct_classifier_is_trained_on_a_sample_of_q_z_1_given_y():
    """z_1 has mean sqrt(alpha_bar(1)) u_y = sqrt(1/(1+e^-3)) u_y = 0.97600 u_y and variance
    1 - alpha_bar(1) = 0.047426; the clean label would have variance 0, z at t = 0 the mean 0.2178."""
    model, net, y, out = _ct_loss_run(1.0)
    z1 = model.classifier.seen[0].double()
    on_label = z1[torch.arange(len(y)), y]
    assert float(on_label.mean()) == pytest.approx(0.97600, abs=0.01)
    off = z1[F.one_hot(y, M) == 0]
    assert float(off.mean()) == pytest.approx(0.0, abs=0.01)
    resid = z1 - 0.97600 * F.one_hot(y, M).double()
    assert float(resid.var()) == pytest.approx(0.047426, rel=0.05)


def test_ct_cross_entropy_and_kl_terms_and_their_sum():
    """loss_ce = mean -log softmax(5 z_1)[y];  loss_kl = 0.5 [ab0 (1 - 4) - 4 ln(1 - ab0)], ab0 = 1/(1+e^3)."""
    model, net, y, out = _ct_loss_run(0.5, n=64)
    logits = 5.0 * model.classifier.seen[0].double()
    ce = float((torch.logsumexp(logits, 1) - logits[torch.arange(64), y]).mean())
    ab0 = 1 / (1 + math.exp(3))
    kl = 0.5 * (ab0 * (1 - 4) - 4 * math.log(1 - ab0))   # = 0.0260361
    assert kl == pytest.approx(0.0260361, rel=1e-5)
    assert float(out["loss_ce"]) == pytest.approx(ce, rel=1e-5)
    assert float(out["loss_kl"]) == pytest.approx(kl, rel=1e-4)
    total = float(out["loss_ce"]) + float(out["loss_kl"]) + float(out["loss_denoise"])
    assert float(out["loss"].detach()) == pytest.approx(total, rel=1e-6)


def test_ct_kl_uses_the_squared_norm_of_a_learned_embedding():
    """||u_y||^2 = 4, d = 2: KL = 0.5 [ab0 (4 - 2) - 2 ln(1 - ab0)] with ab0 = 1/(1+e^3)."""
    torch.manual_seed(0)
    model = NoPropCT(SHAPE, M, model=TINY, embedding="learned", embed_dim=2)
    linear_gamma(model.schedule)
    with torch.no_grad():
        model.embedding.W_embed.copy_(torch.tensor([[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0], [0.0, -2.0]]))
    ab0 = 1 / (1 + math.exp(3))
    kl = model.kl_prior(model.embedding(torch.tensor([1, 3])))
    np.testing.assert_allclose(kl.detach().numpy(), [0.5 * (ab0 * 2 - 2 * math.log(1 - ab0))] * 2, rtol=1e-5)


def test_ct_step_coefficients_match_the_closed_form_schedule():
    """a, b, c of the DT posterior between s = t_{k-1} and t = t_k, from alpha_bar(t) = 1/(1+e^(3-6t))."""
    co = ct_step_coefficients(ct_model().schedule, 4)
    np.testing.assert_allclose(co["t"].numpy(), [0, 0.25, 0.5, 0.75, 1.0])
    for k in range(1, 5):
        ab_s, ab_t = ab_ct((k - 1) / 4), ab_ct(k / 4)
        al = ab_s / ab_t
        a = math.sqrt(ab_t) * (1 - al) / (1 - ab_s)
        b = math.sqrt(al) * (1 - ab_t) / (1 - ab_s)
        c = (1 - ab_t) * (1 - al) / (1 - ab_s)
        assert float(co["a"][k - 1]) == pytest.approx(a, rel=1e-5)
        assert float(co["b"][k - 1]) == pytest.approx(b, rel=1e-5)
        assert float(co["c"][k - 1]) == pytest.approx(c, rel=1e-5)


def test_ct_step_coefficients_are_float64():
    """The sampler's grid and coefficients are computed in float64 (module docstring), whatever the model's dtype."""
    co = ct_step_coefficients(ct_model().schedule, 4)
    assert [co[k].dtype for k in "tabc"] == [torch.float64] * 4


def _ct_sampler_model(steps):
    model = ct_model(steps=steps)
    # the network's answer depends on t: class 0 before t = 0.5, class 1 from t = 0.5 on
    net = SpyNet(lambda z, t: torch.where((t < 0.5)[:, None], onehot_logits(0, z.shape[0]),
                                          onehot_logits(1, z.shape[0])))
    model.net = net
    with torch.no_grad():
        model.classifier.weight.copy_(torch.eye(M))
        model.classifier.bias.zero_()
    return model, net


def test_ct_sampler_evaluates_the_network_at_the_start_of_each_step():
    """N = 4: the network is called at s = 0, 0.25, 0.5, 0.75 (never at t = 1), and z follows the
    DT update by hand: u_hat = e_0 for the first two steps, e_1 for the last two."""
    model, net = _ct_sampler_model(4)
    logits = model.sample(torch.zeros(2, *SHAPE), noise=False)
    assert [float(t[0]) for t in net.seen_t] == [0.0, 0.25, 0.5, 0.75]
    z = np.zeros(M)
    for k in range(1, 5):
        s, t = (k - 1) / 4, k / 4
        ab_s, ab_t = ab_ct(s), ab_ct(t)
        al = ab_s / ab_t
        u = np.eye(M)[0 if s < 0.5 else 1]
        np.testing.assert_allclose(net.seen_z[k - 1].numpy()[0], z, atol=1e-6)
        z = math.sqrt(ab_t) * (1 - al) / (1 - ab_s) * u + math.sqrt(al) * (1 - ab_t) / (1 - ab_s) * z
    np.testing.assert_allclose(logits.numpy(), [z] * 2, atol=1e-5)


def test_ct_stochastic_sampler_one_step_mean_and_variance():
    """One step from z_0 ~ N(0, I) with u_hat = e_0: mean a e_0 and variance b^2 + c per coordinate."""
    model, _ = _ct_sampler_model(1)
    n = 20000
    z = model.sample(torch.zeros(n, *SHAPE), noise=True, generator=torch.Generator().manual_seed(0)).double()
    ab_s, ab_t = ab_ct(0.0), ab_ct(1.0)
    al = ab_s / ab_t
    a = math.sqrt(ab_t) * (1 - al) / (1 - ab_s)
    b = math.sqrt(al) * (1 - ab_t) / (1 - ab_s)
    c = (1 - ab_t) * (1 - al) / (1 - ab_s)
    np.testing.assert_allclose(z.mean(0).numpy(), [a, 0, 0, 0], atol=0.01)
    np.testing.assert_allclose(z.var(0).numpy(), [b * b + c] * M, rtol=0.05)


# ================================================================ NoProp-FM
def fm_model(**kw) -> NoPropFM:
    torch.manual_seed(0)
    return NoPropFM(SHAPE, M, model=TINY, **kw)


def test_fm_loss_is_squared_error_to_z1_minus_z0_summed_over_d():
    """A constant field v = c = (1, -1, 0.5, 0) and z_1 = u_y = e_2:
    E ||c - (u - z_0)||^2 = ||c - u||^2 + d = 2.25 + 4 = 6.25 (Monte Carlo over 20000 examples),
    and exactly, with z_0 recovered from the path, mean ||c - u + z_0||^2."""
    model = fm_model()
    c = torch.tensor([1.0, -1.0, 0.5, 0.0])
    net = SpyNet(lambda z, t: c.expand(z.shape[0], M))
    model.net = net
    n = 20000
    y = torch.full((n,), 2)
    out = model.loss_terms(torch.zeros(n, *SHAPE), y, generator=torch.Generator().manual_seed(0))
    assert set(out) == {"loss", "loss_fm"}
    assert float(out["loss_fm"]) == pytest.approx(6.25, abs=0.15)
    z_t, t = net.seen_z[0].double(), net.seen_t[0]
    u = F.one_hot(y, M).double()
    z0 = (z_t - t[:, None] * u) / (1 - t[:, None])           # the path z_t = t u + (1 - t) z_0
    assert float(z0.mean()) == pytest.approx(0.0, abs=0.02)
    assert float(z0.var()) == pytest.approx(1.0, rel=0.03)
    exact = float(((c.double() - u + z0) ** 2).sum(1).mean())
    assert float(out["loss_fm"]) == pytest.approx(exact, rel=1e-3)
    assert float(out["loss"]) == float(out["loss_fm"])


def test_fm_velocity_is_logits_times_W_embed_without_softmax():
    model = fm_model(embedding="learned", embed_dim=2)
    with torch.no_grad():
        model.embedding.W_embed.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 1.0], [2.0, 3.0]]))
    model.net = SpyNet(lambda z, t: torch.tensor([[1.0, -1.0, 0.5, 2.0]]).expand(z.shape[0], M))
    v = model.velocity(torch.zeros(1, *SHAPE), torch.zeros(1, 2), 0.3)
    # (1 - 0.5 + 4, -2 + 0.5 + 6) = (4.5, 4.5)
    np.testing.assert_allclose(v.detach().numpy(), [[4.5, 4.5]], rtol=1e-6)


def test_fm_anchor_term_with_the_perfect_field_is_cross_entropy_of_the_label_embedding():
    """A learned W = 2 I and a field that is exactly z_1 - z_0: z_1~ = z_t + (1 - t) v = u_y, the
    distances to the classes are (0, 8, 8, 8), so the anchor is ln(1 + 3 e^-8) = 0.0010058 and the
    flow-matching loss is 0."""
    model = fm_model(embedding="learned", embed_dim=M)
    with torch.no_grad():
        model.embedding.W_embed.copy_(2 * torch.eye(M))
    u = torch.tensor([0.0, 2.0, 0.0, 0.0])
    # v = (u - z_t) / (1 - t) = z_1 - z_0 on the path; logits = v W^-1 = v / 2
    model.net = SpyNet(lambda z, t: ((u - z) / (1 - t.float())[:, None]) / 2)
    y = torch.full((32,), 1)
    out = model.loss_terms(torch.zeros(32, *SHAPE), y, generator=torch.Generator().manual_seed(0))
    assert float(out["loss_fm"]) == pytest.approx(0.0, abs=1e-6)
    assert float(out["loss_anchor"]) == pytest.approx(math.log(1 + 3 * math.exp(-8)), rel=1e-3)
    assert float(out["loss"].detach()) == pytest.approx(float(out["loss_fm"]) + float(out["loss_anchor"]), rel=1e-6)


def test_fm_anchor_term_by_hand_for_a_constant_field():
    """z_1~ = z_t + (1 - t) v with v = (1, 0, 0, 0); logits_k = -||z_1~ - u_k||^2, u_k = 2 e_k."""
    model = fm_model(embedding="learned", embed_dim=M)
    with torch.no_grad():
        model.embedding.W_embed.copy_(2 * torch.eye(M))
    net = SpyNet(lambda z, t: torch.tensor([[0.5, 0.0, 0.0, 0.0]]).expand(z.shape[0], M))  # v = 2 * logits
    model.net = net
    y = torch.tensor([0, 1, 2, 3])
    out = model.loss_terms(torch.zeros(4, *SHAPE), y, generator=torch.Generator().manual_seed(3))
    z_t, t = net.seen_z[0].double().numpy(), net.seen_t[0].numpy()
    total = 0.0
    for i in range(4):
        z1 = z_t[i] + (1 - t[i]) * np.array([1.0, 0, 0, 0])
        logits = [-sum((z1[j] - 2.0 * (j == k)) ** 2 for j in range(M)) for k in range(M)]
        total += math.log(sum(math.exp(v) for v in logits)) - logits[int(y[i])]
    assert float(out["loss_anchor"]) == pytest.approx(total / 4, rel=1e-4)


def test_fm_class_logits_are_minus_squared_distances_to_the_class_embeddings():
    model = fm_model()
    z = torch.tensor([[0.375, 0.75, 0.0, -0.375]])
    # ||z||^2 = 0.84375; ||z - e_k||^2 = 0.84375 - 2 z_k + 1
    np.testing.assert_allclose(model.class_logits(z).numpy(), [[-1.09375, -0.34375, -1.84375, -2.59375]], rtol=1e-5)


def test_euler_integrate_evaluates_the_field_at_the_start_of_each_step():
    """dz/dt = t from z_0 = 0: Euler with N steps gives sum_k (1/N)(k/N) = (N - 1) / (2N)
    (the end-of-step rule would give (N + 1) / (2N)); dz/dt = z gives (1 + 1/N)^N z_0."""
    z0 = torch.zeros(1, 1, dtype=torch.float64)
    for n, expect in ((1, 0.0), (4, 0.375), (10, 0.45)):
        seen = []
        out = euler_integrate(lambda z, t: seen.append(t) or torch.full_like(z, t), z0, n)
        assert float(out) == pytest.approx(expect, abs=1e-12)
        assert seen == pytest.approx([k / n for k in range(n)])
    out = euler_integrate(lambda z, t: z, torch.ones(1, 1, dtype=torch.float64), 4)
    assert float(out) == pytest.approx(2.44140625, abs=1e-12)


def test_fm_sampler_integrates_a_time_dependent_field_by_hand():
    """v(z, t) = t (1, 2, 0, -1), N = 4, z_0 = 0: z_1 = 0.375 (1, 2, 0, -1); the sampler returns
    -||z_1 - e_k||^2 = (-1.09375, -0.34375, -1.84375, -2.59375)."""
    model = fm_model(inference_steps=4)
    direction = torch.tensor([1.0, 2.0, 0.0, -1.0])
    net = SpyNet(lambda z, t: t.float()[:, None] * direction)
    model.net = net
    logits = model.sample(torch.zeros(2, *SHAPE), noise=False)
    assert [float(t[0]) for t in net.seen_t] == [0.0, 0.25, 0.5, 0.75]
    np.testing.assert_allclose(logits.numpy(), [[-1.09375, -0.34375, -1.84375, -2.59375]] * 2, rtol=1e-5)
    assert model.predict(torch.zeros(2, *SHAPE), noise=False).tolist() == [1, 1]


def test_fm_stochastic_sampler_starts_from_standard_normal_noise():
    model = fm_model(inference_steps=1)
    net = SpyNet(lambda z, t: torch.zeros(z.shape[0], M))
    model.net = net
    model.sample(torch.zeros(20000, *SHAPE), noise=True, generator=torch.Generator().manual_seed(0))
    z0 = net.seen_z[0]
    np.testing.assert_allclose(z0.mean(0).numpy(), [0.0] * M, atol=0.03)
    np.testing.assert_allclose(z0.var(0).numpy(), [1.0] * M, rtol=0.04)


# ================================================================ time-series metrics
def _window_set(rows, lookback, horizon, starts):
    return ts.WindowSet(torch.tensor(rows, dtype=torch.float32), torch.tensor(starts), lookback, horizon)


def test_point_metrics_mse_and_mae_worked_out_by_hand():
    """Errors (1, -2, 0, 3, -1, 0, 2, -4): MSE = 35/8 = 4.375, MAE = 13/8 = 1.625 (means, not sums)."""
    ws = _window_set([[0, 10], [1, 11], [2, 12], [3, 13], [4, 14], [5, 15]], 2, 2, [0, 2])
    y = ws.y()
    assert y[:, :, 0].tolist() == [[2, 3], [4, 5]] and y[:, :, 1].tolist() == [[12, 13], [14, 15]]
    err = torch.tensor([[[1.0, -2.0], [0.0, 3.0]], [[-1.0, 0.0], [2.0, -4.0]]])
    out = ts.evaluate_point(y + err, ws)
    assert out["mse"] == pytest.approx(4.375, rel=1e-6)
    assert out["mae"] == pytest.approx(1.625, rel=1e-6)


class StubForecaster:
    """Sample s of the future of per-channel input i at step h is x_i[-1] + h + v_s,
    v = (0, 1, 2, 3, 10): mean 3.2; torch.quantile (linear) 0.1 -> 0.4, 0.9 -> 7.2,
    0.025 -> 0.1, 0.975 -> 9.3 (all relative to c = x_i[-1] + h)."""

    V = torch.tensor([0.0, 1.0, 2.0, 3.0, 10.0])

    def forecast(self, x, noise=False, samples=1, generator=None, decoder_noise=False):
        # the defaults are those of NoPropForecaster.forecast: intervals need noise=True
        assert samples == 5 and noise
        H = 2
        base = x[:, -1][None, :, None] + torch.arange(H, dtype=x.dtype)[None, None, :]
        return base + self.V[:, None, None]


# L = 1, H = 2, two channels, windows start at rows 0 and 3. d = y - c per (window, step, channel):
#   channel 0: 0.5, 8.0 | 0.2, 10.0        channel 1: 7.1, 0.05 | 3.2, 9.2
INTERVAL_ROWS = [[0.0, 1.0], [0.5, 8.1], [9.0, 2.05], [2.0, -1.0], [2.2, 2.2], [13.0, 9.2]]
D = [0.5, 8.0, 0.2, 10.0, 7.1, 0.05, 3.2, 9.2]


def test_interval_coverage_width_and_sample_mean_metrics_by_hand():
    """80 %: [c + 0.4, c + 7.2] holds d = 0.5, 7.1, 3.2 -> coverage 3/8, width 6.8.
    95 %: [c + 0.1, c + 9.3] misses only 10.0 and 0.05 -> coverage 6/8, width 9.2.
    Point metrics of the sample mean c + 3.2: errors d - 3.2 -> MSE 146.7025 / 8, MAE 30.35 / 8."""
    ws = _window_set(INTERVAL_ROWS, 1, 2, [0, 3])
    out = ts.evaluate_intervals(StubForecaster(), ws, samples=5, batch=1)
    assert out["coverage"] == pytest.approx({"80": 0.375, "95": 0.75})
    assert out["width"]["80"] == pytest.approx(6.8, rel=1e-5)
    assert out["width"]["95"] == pytest.approx(9.2, rel=1e-5)
    assert out["mse"] == pytest.approx(146.7025 / 8, rel=1e-5)
    assert out["mae"] == pytest.approx(30.35 / 8, rel=1e-5)


def test_widened_intervals_coverage_and_width_by_hand():
    """k = 2 at 80 %: [m - 2 * 2.8, m + 2 * 4.0] = [c - 2.4, c + 11.2] holds all 8, width 13.6.
    k = 0.5 at 95 %: [m - 0.5 * 3.1, m + 0.5 * 6.1] = [c + 1.65, c + 6.25] holds only 3.2, width 4.6."""
    ws = _window_set(INTERVAL_ROWS, 1, 2, [0, 3])
    out = ts.evaluate_intervals(StubForecaster(), ws, samples=5, scale={0.8: 2.0, 0.95: 0.5}, batch=1)
    assert out["coverage_calibrated"] == pytest.approx({"80": 1.0, "95": 0.125})
    assert out["width_calibrated"]["80"] == pytest.approx(13.6, rel=1e-5)
    assert out["width_calibrated"]["95"] == pytest.approx(4.6, rel=1e-5)
    assert out["scale"] == {"80": 2.0, "95": 0.5}
    # the raw intervals are unchanged by the widening
    assert out["coverage"] == pytest.approx({"80": 0.375, "95": 0.75})


def test_calibrated_widening_factor_is_the_smallest_that_reaches_the_level():
    """The factor that covers d needs k >= (3.2 - d) / (m - q_lo) below the mean and
    k >= (d - 3.2) / (q_hi - m) above it. 80 % (7 of 8): k = 6.0 / 4.0 = 1.5 (d = 9.2);
    95 % (8 of 8): k = 6.8 / 6.1 = 1.1147541 (d = 10.0)."""
    ws = _window_set(INTERVAL_ROWS, 1, 2, [0, 3])
    scale, raw = ts.calibrate_interval_scale(StubForecaster(), ws, samples=5)
    assert scale[0.8] == pytest.approx(1.5, abs=1e-4)
    assert scale[0.95] == pytest.approx(6.8 / 6.1, abs=1e-4)
    assert raw["coverage"] == pytest.approx({"80": 0.375, "95": 0.75})
    # the returned factor reaches the level on the windows it was chosen on (the factor just
    # below it, 1.5 - 1e-9 at 80 %, would miss d = 9.2 and cover only 6 of 8)
    check = ts.evaluate_intervals(StubForecaster(), ws, samples=5, scale=scale)
    assert check["coverage_calibrated"]["80"] >= 0.8 and check["coverage_calibrated"]["95"] >= 0.95


def test_forecast_chain_with_spy_blocks_follows_the_dt_update_and_the_linear_decoder():
    """NoProp forecaster, T = 2, hand schedule, blocks returning constant latents u_1, u_2:
    z_2 = a_2 u_2 + b_2 a_1 u_1 (deterministic chain), forecast = D(z_2)."""
    model = ts.NoPropForecaster(4, 3, T=2, d=2, hidden=4, schedule=hand_schedule()).eval()
    u1, u2 = torch.tensor([1.0, -1.0]), torch.tensor([0.5, 2.0])

    class ConstBlock(nn.Module):
        def __init__(self, u):
            super().__init__()
            self.u = u

        def past_features(self, x):
            return x.shape[0]

        def from_features(self, feats, z, samples=1):
            return self.u.expand(z.shape[0], 2)

    model.blocks[0], model.blocks[1] = ConstBlock(u1), ConstBlock(u2)
    with torch.no_grad():
        model.autoencoder.dec_lin.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        model.autoencoder.dec_lin.bias.copy_(torch.tensor([0.0, 0.0, 10.0]))
    z2 = A2 * u2.numpy() + B2 * A1 * u1.numpy()
    pred = model.predict(torch.zeros(3, 4))
    np.testing.assert_allclose(pred.numpy(), [[z2[0], z2[1], z2[0] + z2[1] + 10.0]] * 3, rtol=1e-6)


# ================================================================ defaults and inputs a student relies on
def test_paper_defaults_of_the_models_and_optimisers():
    """Spec: DT eta = 0.1, T = 10, AdamW lr 1e-3 wd 1e-3; CT eta = 1, Adam lr 1e-3 wd 1e-3 (none on
    the schedule), 1000 inference steps; FM sigma = 0; cosine schedule clipped to [1e-4, 0.99]."""
    dt = NoPropDT(SHAPE, M, block=TINY)
    assert dt.T == 10 and dt.eta == 0.1
    assert float(dt.schedule.alpha_bar[0]) == pytest.approx(1e-4) and float(dt.schedule.alpha_bar[-1]) == pytest.approx(0.99)
    for opt in dt.configure_optimizers().values():
        assert isinstance(opt, torch.optim.AdamW)
        assert opt.defaults["lr"] == 1e-3 and opt.defaults["weight_decay"] == 1e-3
    ct = NoPropCT(SHAPE, M, model=TINY)
    assert ct.eta == 1.0 and ct.inference_steps == 1000
    opt = ct.configure_optimizers()["all"]
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["lr"] == 1e-3
    decays = sorted(g["weight_decay"] for g in opt.param_groups)
    assert decays == [0.0, 1e-3]
    fm = NoPropFM(SHAPE, M, model=TINY)
    assert fm.sigma == 0.0 and fm.inference_steps == 1000
    bp = BackpropBaseline(SHAPE, M, block=TINY)
    assert bp.T == 10
    np.testing.assert_allclose(torch.tanh(bp.w.detach()).numpy(), [math.tanh(0.5)] * 10, rtol=1e-6)


def test_dt_has_one_adamw_per_block_over_its_own_parameters_and_one_for_the_classifier():
    """Algorithm 1: block t is updated by its own optimiser; the classifier (and a learned W_embed)
    by a shared one. Exactly T + 1 optimisers, none holding another block's parameters."""
    model = dt_model()
    opts = model.configure_optimizers()
    assert set(opts) == {"block1", "block2", "shared"}
    for t in (1, 2):
        got = [p for g in opts[f"block{t}"].param_groups for p in g["params"]]
        assert [id(p) for p in got] == [id(p) for p in model.blocks[t - 1].parameters()]
    shared = [p for g in opts["shared"].param_groups for p in g["params"]]
    assert {id(p) for p in shared} == {id(p) for p in model.classifier.parameters()}


def test_dt_optimisers_take_the_given_learning_rate_and_weight_decay():
    opts = dt_model().configure_optimizers(lr=0.02, weight_decay=0.3)
    assert {k: (o.defaults["lr"], o.defaults["weight_decay"]) for k, o in opts.items()} == {
        "block1": (0.02, 0.3), "block2": (0.02, 0.3), "shared": (0.02, 0.3)}


def test_dt_without_a_schedule_builds_the_cosine_schedule_with_its_own_T():
    schedule = NoPropDT(SHAPE, M, T=3, block=TINY).schedule
    assert schedule.kind == "cosine" and schedule.T == 3
    assert DTSchedule.from_alpha_bar([0.1, 0.5]).kind == "custom"


def test_learned_embeddings_take_the_given_dimension_in_every_model():
    torch.manual_seed(0)
    for model in (NoPropDT(SHAPE, M, T=1, block=TINY, schedule=DTSchedule.from_alpha_bar([0.1, 0.5]),
                           embedding="learned", embed_dim=3),
                  BackpropBaseline(SHAPE, M, T=1, block=TINY, embedding="learned", embed_dim=3),
                  NoPropCT(SHAPE, M, model=TINY, embedding="learned", embed_dim=3),
                  NoPropFM(SHAPE, M, model=TINY, embedding="learned", embed_dim=3)):
        assert model.W_embed.shape == (M, 3), type(model).__name__


def test_models_default_to_mnist_ten_classes_small_blocks_and_one_hot_labels():
    """What a model built without arguments is (the notebooks and the command line rely on it):
    images (1, 28, 28), m = 10 classes, the 'small' block, one-hot label embeddings W_embed = I_10;
    NoProp-DT and the baseline have T = 10 blocks, NoProp-CT starts its schedule at g0 = -3, g1 = 3
    with 16 sigmoid units."""
    torch.manual_seed(0)
    for model in (NoPropDT(), BackpropBaseline(), NoPropCT(), NoPropFM()):
        name = type(model).__name__
        assert model.image_shape == (1, 28, 28) and model.num_classes == 10, name
        assert model.block_config == BlockConfig.small(), name
        assert model.embedding.kind == "onehot" and torch.equal(model.W_embed, torch.eye(10)), name
        if isinstance(model, (NoPropDT, BackpropBaseline)):
            assert model.T == 10 and len(model.blocks) == 10, name
    ct = NoPropCT()
    assert ct.schedule.config() == {"g0_init": -3.0, "g1_init": 3.0, "hidden": 16, "learn_endpoints": True}


def test_linear_alpha_bar_defaults_run_from_1e_minus_4_to_0_99():
    from nplib.schedules import linear_alpha_bar
    np.testing.assert_allclose(linear_alpha_bar(2).numpy(), [1e-4, (1e-4 + 0.99) / 2, 0.99], rtol=1e-12)


def test_sinusoidal_time_embedding_values_by_hand():
    """[sin(1000 t f_k), cos(1000 t f_k)], f_k = 10000^(-k/half): for dim 4 (half 2), f = (1, 0.01);
    t = 0.001 gives (sin 1, sin 0.01, cos 1, cos 0.01); t = 0 gives (0, 0, 1, 1)."""
    from nplib.continuous import sinusoidal_embedding
    emb = sinusoidal_embedding(torch.tensor([0.0, 0.001], dtype=torch.float64), dim=4)
    np.testing.assert_allclose(emb.numpy(), [[0, 0, 1, 1],
                                             [math.sin(1), math.sin(0.01), math.cos(1), math.cos(0.01)]],
                               atol=1e-12)
    assert sinusoidal_embedding(torch.zeros(3)).shape == (3, 64)


def test_sinusoidal_time_embedding_of_size_2_and_of_a_t_of_any_shape():
    """dim = 2 is allowed; a (2, 3) grid of times gives (2, 3, dim), row by row the 1-D values."""
    from nplib.continuous import sinusoidal_embedding
    # dim = 2 is the smallest valid size: f_0 = 1, (sin 1000 t, cos 1000 t)
    np.testing.assert_allclose(sinusoidal_embedding(torch.tensor([0.001], dtype=torch.float64), dim=2).numpy(),
                               [[math.sin(1), math.cos(1)]], atol=1e-12)
    # shape (*t.shape, dim) for a t of any shape, entry by entry
    t = torch.tensor([[0.0, 0.001, 0.5], [0.25, 0.75, 1.0]], dtype=torch.float64)
    grid = sinusoidal_embedding(t, dim=4)
    assert grid.shape == (2, 3, 4)
    np.testing.assert_allclose(grid.reshape(6, 4).numpy(), sinusoidal_embedding(t.reshape(6), dim=4).numpy(),
                               atol=1e-12)


def test_learned_ct_schedule_starts_from_its_documented_initialisation():
    """gt(t) = w_1 t + sum_j w_2j sigmoid(w_3j t + b_j) with w_1 = 1, w_2j = 0.05,
    w_3j = softplus(n_j + softplus^-1(5)) (n_j: randn of a generator seeded 1234), b = linspace(-5, 0, 16);
    gamma(t) = g0 + (g1 - g0)(1 - gbar(t)) with g0 = -3, g1 = 3. Recomputed here in numpy."""
    from nplib.continuous import LearnedSchedule
    sched = LearnedSchedule()
    n = torch.randn(16, generator=torch.Generator().manual_seed(1234)).double().numpy()
    softplus = lambda v: np.log1p(np.exp(v))  # noqa: E731
    w3 = softplus(n + np.log(np.expm1(5.0)))
    b = np.linspace(-5.0, 0.0, 16)

    def gt(t):
        return t + (0.05 / (1 + np.exp(-(w3 * t + b)))).sum()

    ts_ = [0.0, 0.25, 0.5, 1.0]
    gbar = [(gt(t) - gt(0.0)) / (gt(1.0) - gt(0.0)) for t in ts_]
    expect = [-3 + 6 * (1 - g) for g in gbar]
    with torch.no_grad():
        got = sched.gamma(torch.tensor(ts_, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-5)
    assert float(sched.g0.detach()) == -3.0 and float(sched.g1.detach()) == pytest.approx(3.0, abs=1e-5)


def test_learned_schedule_computes_in_float64_for_a_float64_t_and_entry_by_entry():
    """gamma(t) of the initial schedule, recomputed in numpy float64 from its parameters
    (gt(t) = w_1 t + sum_j w_2j sigmoid(w_3j t + b_j), w = softplus(raw)): agreement to 1e-12
    means every step ran in float64 (float32 would leave errors of about 1e-7). gamma acts entry
    by entry on a t of any shape, and SNR' keeps its graph by default (create_graph=True)."""
    from nplib.continuous import LearnedSchedule
    sched = LearnedSchedule()
    raw = {k: getattr(sched, k).detach().double().numpy() for k in ("raw_w1", "raw_w2", "raw_w3", "b")}
    sp = lambda v: np.log1p(np.exp(v))  # noqa: E731
    w1, w2, w3, b = sp(raw["raw_w1"]), sp(raw["raw_w2"]), sp(raw["raw_w3"]), raw["b"]

    def gt(t):
        return w1 * t + (w2 / (1 + np.exp(-(w3 * t + b)))).sum()

    g0, g1 = float(sched.g0.detach()), float(sched.g1.detach())
    ts_ = [0.0, 0.1, 0.5, 0.9, 1.0]
    expect = [g0 + (g1 - g0) * (1 - (gt(t) - gt(0.0)) / (gt(1.0) - gt(0.0))) for t in ts_]
    t = torch.tensor(ts_, dtype=torch.float64)
    with torch.no_grad():
        got = sched.gamma(t)
        assert got.dtype == torch.float64
        np.testing.assert_allclose(got.numpy(), expect, rtol=1e-12, atol=1e-12)
        grid = torch.tensor([[0.1, 0.5], [0.9, 1.0]], dtype=torch.float64)
        np.testing.assert_allclose(sched.gamma(grid).numpy(), [expect[1:3], expect[3:5]], rtol=1e-12, atol=1e-12)
        assert float(sched.gamma(t[2])) == pytest.approx(expect[2], rel=1e-12)
    assert sched.snr_derivative(t)[1].requires_grad


def test_fm_path_without_eps_draws_standard_normal_noise():
    """z_t = t z_1 + (1 - t) z_0 + sigma eps with eps ~ N(0, I) drawn when not given: t = 0.5,
    z_0 = 0, z_1 = 1, sigma = 0.5 gives mean 0.5 and variance 0.25 (tolerances about 5 s.e.)."""
    from nplib.continuous import fm_path
    torch.manual_seed(0)
    n = 20000
    z = fm_path(torch.zeros(n, 2), torch.ones(n, 2), torch.full((n,), 0.5), sigma=0.5).double()
    assert float(z.mean()) == pytest.approx(0.5, abs=0.01)
    assert float(z.var()) == pytest.approx(0.25, rel=0.04)


def test_prototype_embeddings_reach_every_model():
    """embedding='prototype' with prototypes P: W_embed holds the flattened P and z is seen as an image."""
    P = torch.arange(M * 64, dtype=torch.float32).reshape(M, 1, 8, 8) / 100
    torch.manual_seed(0)
    for model in (NoPropDT(SHAPE, M, T=2, block=TINY, schedule=hand_schedule(), embedding="prototype", prototypes=P),
                  BackpropBaseline(SHAPE, M, T=1, block=TINY, embedding="prototype", prototypes=P),
                  NoPropCT(SHAPE, M, model=TINY, embedding="prototype", prototypes=P),
                  NoPropFM(SHAPE, M, model=TINY, embedding="prototype", prototypes=P)):
        assert torch.equal(model.W_embed.detach(), P.flatten(1)), type(model).__name__
        assert model.embedding.image_shape == (1, 8, 8)


def test_fm_path_with_noise_by_hand():
    """z_t = t z_1 + (1 - t) z_0 + sigma eps: t = (0.25, 1), z_0 = (4, 4), z_1 = (0, 8), sigma = 0.5, eps = 1
    gives (3 + 0.5, 5 + 0.5) and (0 + 0.5, 8 + 0.5)."""
    from nplib.continuous import fm_path, fm_target
    z0 = torch.tensor([[4.0, 4.0], [4.0, 4.0]])
    z1 = torch.tensor([[0.0, 8.0], [0.0, 8.0]])
    out = fm_path(z0, z1, torch.tensor([0.25, 1.0]), sigma=0.5, eps=torch.ones(2, 2))
    np.testing.assert_allclose(out.numpy(), [[3.5, 5.5], [0.5, 8.5]])
    np.testing.assert_allclose(fm_path(z0, z1, torch.tensor([0.25, 1.0])).numpy(), [[3.0, 5.0], [0.0, 8.0]])
    np.testing.assert_allclose(fm_target(z0, z1).numpy(), [[-4.0, 4.0], [-4.0, 4.0]])


def test_fm_training_path_noise_has_variance_sigma_squared():
    """With sigma = 0.5 the network sees z_t = t u + (1 - t) z_0 + 0.5 eps: Var = (1 - t)^2 + 0.25."""
    model = fm_model(sigma=0.5)
    net = SpyNet(lambda z, t: torch.zeros(z.shape[0], M))
    model.net = net
    n = 20000
    y = torch.zeros(n, dtype=torch.long)
    model.loss_terms(torch.zeros(n, *SHAPE), y, generator=torch.Generator().manual_seed(0))
    z, t = net.seen_z[0].double(), net.seen_t[0]
    r = (z - t[:, None] * F.one_hot(y, M).double()) / ((1 - t) ** 2 + 0.25).sqrt()[:, None]
    assert float(r.mean()) == pytest.approx(0.0, abs=0.02)
    assert float(r.var()) == pytest.approx(1.0, rel=0.03)


# ================================================================ reproducibility of the losses
_GLOBAL_SEEDS = iter(range(1000, 10**6))


def _loss_with_seed(fn, seed):
    torch.manual_seed(next(_GLOBAL_SEEDS))   # a new global seed each call: it must not matter
    return fn(torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("variant", ["dt_block", "dt_classifier", "ct", "fm", "fm_sigma"])
def test_losses_draw_their_noise_from_the_given_generator(variant):
    """Same seed, same loss (whatever the global generator did in between); another seed, another loss."""
    x, y = torch.zeros(8, *SHAPE), torch.arange(8) % M
    if variant.startswith("dt"):
        model = dt_model()
        model.eval()
        fn = ((lambda g: model.block_loss(2, x, y, generator=g)) if variant == "dt_block"
              else (lambda g: model.classifier_loss(y, generator=g)))
    else:
        model = ct_model() if variant == "ct" else fm_model(sigma=0.3 if variant == "fm_sigma" else 0.0)
        model.eval()
        fn = lambda g: model.loss_terms(x, y, generator=g)["loss"]  # noqa: E731
    a, b, c = (float(_loss_with_seed(fn, s).detach()) for s in (0, 0, 1))
    assert a == b and a != c


def test_dt_sampler_noise_comes_from_the_given_generator():
    model, _ = _dt_chain_model()
    x = torch.zeros(5, *SHAPE)
    a, b, c = (_loss_with_seed(lambda g: model.sample(x, noise=True, generator=g), s) for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_backprop_baseline_classifier_starts_as_a_scaled_nearest_embedding_readout():
    """logits_k = 5 <z, u_k> / ||u_k||^2 with zero bias: for W = ((2, 0), (0, 1), (1, 1), (-1, 0))
    the weight rows are 5 u_k / ||u_k||^2 = (2.5, 0), (0, 5), (2.5, 2.5), (-5, 0)."""
    torch.manual_seed(0)
    W = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    from nplib.embeddings import LabelEmbedding
    emb = LabelEmbedding("learned", M, 2)
    with torch.no_grad():
        emb.W_embed.copy_(W)
    model = BackpropBaseline(SHAPE, M, T=1, block=TINY, embedding=emb)
    np.testing.assert_allclose(model.classifier.weight.detach().numpy(),
                               [[2.5, 0.0], [0.0, 5.0], [2.5, 2.5], [-5.0, 0.0]], rtol=1e-6)
    assert torch.count_nonzero(model.classifier.bias) == 0
    with pytest.raises(ValueError, match="classifier_scale"):
        BackpropBaseline(SHAPE, M, T=1, block=TINY, classifier_scale=0.0)


def test_backprop_baseline_accepts_any_positive_classifier_scale():
    """classifier_scale = 0.5 (below 1) is valid: one-hot rows 0.5 e_k / ||e_k||^2 = 0.5 e_k."""
    torch.manual_seed(0)
    model = BackpropBaseline(SHAPE, M, T=1, block=TINY, classifier_scale=0.5)
    np.testing.assert_allclose(model.classifier.weight.detach().numpy(), 0.5 * np.eye(M))


@pytest.mark.parametrize("make, match", [
    (lambda: NoPropDT(SHAPE, M, T=2, block=TINY, schedule=hand_schedule(), eta=0.0), "eta"),
    (lambda: NoPropDT(SHAPE, M, T=3, block=TINY, schedule=hand_schedule()), "T = 2"),
    (lambda: NoPropCT(SHAPE, M, model=TINY, eta=0.0), "eta"),
    (lambda: NoPropCT(SHAPE, M, model=TINY, eta=float("inf")), "eta"),
    (lambda: NoPropFM(SHAPE, M, model=TINY, sigma=-0.1), "sigma"),
    (lambda: NoPropFM(SHAPE, M, model=TINY, sigma=float("nan")), "sigma"),
    (lambda: NoPropCT(SHAPE, M, model=TINY, g0=1.0, g1=1.0), "g0 < g1"),
    # a schedule built field by field (not through from_alpha_bar) with a zero loss weight
    pytest.param(lambda: NoPropDT(SHAPE, M, T=2, block=TINY, schedule=dataclasses.replace(
        hand_schedule(), snr_delta=torch.tensor([0.0, 10 / 3]))), "every loss weight", id="zero-loss-weight"),
    pytest.param(lambda: NoPropFM(SHAPE, M, model=TINY, sigma=float("inf")), "sigma", id="infinite-sigma"),
    pytest.param(lambda: NoPropCT(SHAPE, M, model=TINY, g0=float("-inf")), "g0 < g1", id="infinite-g0"),
])
def test_models_refuse_settings_that_break_the_maths(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_ct_schedule_endpoints_are_learned_unless_frozen():
    from nplib.continuous import LearnedSchedule
    assert LearnedSchedule().g0.requires_grad and LearnedSchedule().raw_gap.requires_grad
    frozen = LearnedSchedule(g0=-2.0, g1=5.0, learn_endpoints=False)
    assert not frozen.g0.requires_grad and not frozen.raw_gap.requires_grad
    assert float(frozen.g1) == pytest.approx(5.0, abs=1e-5)
    assert frozen.raw_w1.requires_grad


def test_stratified_times_are_shuffled_and_drawn_from_the_given_generator():
    from nplib.continuous import stratified_times
    a = stratified_times(64, torch.Generator().manual_seed(0))
    b = stratified_times(64, torch.Generator().manual_seed(0))
    c = stratified_times(64, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, torch.sort(a).values)  # shuffled, not in increasing order
    # one u for the whole batch: the fractional parts of B t are all equal
    frac = a * 64 - torch.floor(a * 64)
    assert float(frac.max() - frac.min()) < 1e-4


def test_point_forecasts_of_every_window_and_variable_land_in_their_place():
    """_predict_windows feeds each (window, variable) past to a channel-independent predict and
    puts the answer back at (window, step, variable). A predict that returns last value + 10 h:
    window 0 (rows 0..1 past), variable 1 has last value 11, so its forecast is (11, 21)."""
    ws = _window_set([[0, 10], [1, 11], [2, 12], [3, 13], [4, 14], [5, 15]], 2, 2, [0, 2])

    def predict(x):          # x: (n, L) -> (n, H)
        return x[:, -1:] + 10.0 * torch.arange(2.0)

    out = ts._predict_windows(predict, ws, batch=1)
    assert out.shape == (2, 2, 2)
    # out[window, step, variable]
    assert out[:, :, 0].tolist() == [[1.0, 11.0], [3.0, 13.0]]
    assert out[:, :, 1].tolist() == [[11.0, 21.0], [13.0, 23.0]]


def test_interval_evaluation_defaults_50_samples_seed_0_and_decoder_noise():
    """run_experiment relies on the defaults: 50 chain samples, the decoder's residual noise on,
    the generator seeded with 0 (reproducible), no bands unless asked."""
    seen = []

    class Recorder(StubForecaster):
        def forecast(self, x, noise=False, samples=1, generator=None, decoder_noise=False):
            seen.append((samples, generator.initial_seed(), decoder_noise))
            return super().forecast(x, noise, 5, generator, decoder_noise)[torch.arange(samples) % 5]

    ws = _window_set(INTERVAL_ROWS, 1, 2, [0, 3])
    out = ts.evaluate_intervals(Recorder(), ws)
    assert seen == [(50, 0, True)]
    assert "bands" not in out and out["samples"] == 50 and out["decoder_noise"] is True
    ts.evaluate_intervals(Recorder(), ws, seed=7, decoder_noise=False)
    assert seen[-1] == (50, 7, False)


# --- added for the survivors of the mutation run of 30 Nov 2026, 03:53-04:30 UTC -----------------

def test_non_increasing_alpha_bar_error_names_the_first_step_that_decreases():
    """The error for a non-increasing alpha_bar names the first t with alpha_bar_t <= alpha_bar_{t-1}:
    for (0.1, 0.3, 0.5, 0.4, 0.9) that is t = 3 (0.4 <= 0.5), not t = 1."""
    with pytest.raises(ValueError, match=r"alpha_bar\[3\] = 0\.4 <= alpha_bar\[2\] = 0\.5"):
        DTSchedule.from_alpha_bar([0.1, 0.3, 0.5, 0.4, 0.9])


def test_alpha_bar_outside_0_1_error_lists_only_the_values_outside():
    """The error for alpha_bar values outside (0, 1) lists those values (0 and 1 included) and no others."""
    with pytest.raises(ValueError, match=r"got values \[0\.0, 1\.0, 1\.5\]$"):
        DTSchedule.from_alpha_bar([0.0, 0.5, 1.0, 1.5])


def test_sinusoidal_time_embedding_of_a_float64_t_is_computed_in_float64():
    """For a float64 t the frequencies f_k = 10000^(-k/(dim/2)) are float64 too: the embedding
    matches the float64 closed form to 1e-12 (float32 frequencies are off by ~1e-4 at 1000 t)."""
    from nplib.continuous import sinusoidal_embedding
    t = np.array([0.3, 0.7, 0.99])
    k = np.arange(4)
    args = 1000.0 * t[:, None] * 10000.0 ** (-k / 4.0)
    expected = np.concatenate([np.sin(args), np.cos(args)], axis=1)
    got = sinusoidal_embedding(torch.tensor(t, dtype=torch.float64), dim=8)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)


def test_ct_schedule_takes_the_given_number_of_hidden_units():
    """NoPropCT(schedule_hidden=h) builds a learned schedule with h sigmoid units (default 16)."""
    model = NoPropCT(SHAPE, M, model=TINY, schedule_hidden=5)
    assert model.schedule.hidden == 5
    assert model.schedule.raw_w2.numel() == model.schedule.raw_w3.numel() == model.schedule.b.numel() == 5


def test_interval_bands_of_the_first_keep_windows_span_several_batches():
    """keep = 2 with batch = 1: the bands hold both windows (one per batch), in order. Window 0
    ends at row (0, 1), window 1 at row (2, -1); c = x[-1] + h, mean c + 3.2, 10 % quantile c + 0.4."""
    ws = _window_set(INTERVAL_ROWS, 1, 2, [0, 3])
    out = ts.evaluate_intervals(StubForecaster(), ws, samples=5, batch=1, keep=2)
    c = torch.tensor([[[0.0, 1.0], [1.0, 2.0]], [[2.0, -1.0], [3.0, 0.0]]])   # (window, step, variable)
    assert out["bands"]["mean"].shape == (2, 2, 2)
    torch.testing.assert_close(out["bands"]["mean"].float(), c + 3.2)
    torch.testing.assert_close(out["bands"]["q0.1"].float(), c + 0.4)


def test_interval_evaluation_forecasts_each_window_once_in_batches_of_batch():
    """Two windows of two channels with batch = 1: two forecast calls of 1 window x 2 channels
    each (every window forecast once, not every window in every batch)."""
    seen = []

    class Recorder(StubForecaster):
        def forecast(self, x, noise=False, samples=1, generator=None, decoder_noise=False):
            seen.append(x.shape[0])
            return super().forecast(x, noise, samples, generator, decoder_noise)

    ts.evaluate_intervals(Recorder(), _window_set(INTERVAL_ROWS, 1, 2, [0, 3]), samples=5, batch=1)
    assert seen == [2, 2]


def test_fm_times_are_stratified_over_the_batch():
    """FM training draws one time per example, t_i = (i + u) / B shuffled: exactly one in each
    [k/B, (k+1)/B) for B = 64 (not one time shared by the batch)."""
    model = fm_model()
    net = SpyNet(lambda z, t: torch.zeros(z.shape[0], M))
    model.net = net
    model.loss_terms(torch.zeros(64, *SHAPE), torch.zeros(64, dtype=torch.long), generator=torch.Generator().manual_seed(0))
    t = net.seen_t[0]
    assert torch.equal(torch.sort(torch.floor(t * 64)).values, torch.arange(64, dtype=torch.float64))

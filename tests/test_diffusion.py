"""Diffusion maths: q(z_t | y), the posterior step and the KL term, checked against Monte Carlo."""
import math

import pytest
import torch

from nplib.diffusion import kl_prior, posterior_step, q_sample
from nplib.schedules import make_schedule

N = 200_000


@pytest.fixture(scope="module")
def sched():
    return make_schedule("cosine", 10)


@pytest.mark.parametrize("t", [0, 3, 9, 10])
def test_marginal_mean_and_variance(sched, t):
    g = torch.Generator().manual_seed(t)
    u = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64).expand(N, 3)
    z = q_sample(u, t, sched, generator=g)
    ab = float(sched.alpha_bar[t])
    assert torch.allclose(z.mean(0), math.sqrt(ab) * u[0], atol=0.01)
    assert torch.allclose(z.var(0), torch.full((3,), 1 - ab, dtype=torch.float64), rtol=0.02)


def test_trap7_noised_label_uses_sqrt_alpha_bar(sched):
    """Spec 8.7: the mean is sqrt(alpha_bar_t) u_y, not alpha_bar_t u_y."""
    u = torch.ones(1, 4, dtype=torch.float64)
    z = q_sample(u, 5, sched, eps=torch.zeros_like(u))
    assert torch.allclose(z, sched.alpha_bar[5].sqrt() * u)
    assert not torch.allclose(z, sched.alpha_bar[5] * u)


@pytest.mark.parametrize("t", [1, 2, 5, 9, 10])
def test_posterior_against_monte_carlo(sched, t):
    """Sample (z_{t-1}, z_t) from the noising process and regress z_t on z_{t-1}.

    The noising direction is z_{t-1} = sqrt(alpha_{t-1}) z_t + sqrt(1 - alpha_{t-1}) eps with
    z_t ~ q(z_t | y); the posterior q(z_t | z_{t-1}, y) then has slope b_t, intercept a_t u_y and
    residual variance c_t.
    """
    g = torch.Generator().manual_seed(100 + t)
    u = torch.tensor([0.7], dtype=torch.float64)
    z_t = q_sample(u.expand(N, 1), t, sched, generator=g)
    alpha_prev = float(sched.alpha[t - 1])
    z_prev = math.sqrt(alpha_prev) * z_t + math.sqrt(1 - alpha_prev) * torch.randn(N, 1, generator=g, dtype=torch.float64)
    x, y = z_prev[:, 0], z_t[:, 0]
    slope = float(((x - x.mean()) * (y - y.mean())).mean() / x.var())
    intercept = float(y.mean() - slope * x.mean())
    resid = float((y - intercept - slope * x).var())
    assert slope == pytest.approx(float(sched.b[t - 1]), abs=0.01)
    assert intercept == pytest.approx(float(sched.a[t - 1]) * 0.7, abs=0.01)
    assert resid == pytest.approx(float(sched.c[t - 1]), rel=0.03, abs=1e-4)


def test_posterior_step_chain_reproduces_marginals(sched):
    """Running the true posterior from z_0 ~ q(z_0|y) gives z_T ~ q(z_T|y)."""
    g = torch.Generator().manual_seed(7)
    u = torch.tensor([1.0, 0.0], dtype=torch.float64).expand(N, 2)
    z = q_sample(u, 0, sched, generator=g)
    for t in range(1, sched.T + 1):
        z = posterior_step(u, z, t, sched, generator=g)
    ab = float(sched.alpha_bar[-1])
    assert torch.allclose(z.mean(0), math.sqrt(ab) * u[0], atol=0.01)
    assert torch.allclose(z.var(0), torch.full((2,), 1 - ab, dtype=torch.float64), rtol=0.03)


def test_posterior_step_without_noise(sched):
    u = torch.randn(5, 3, dtype=torch.float64)
    z = torch.randn(5, 3, dtype=torch.float64)
    out = posterior_step(u, z, 4, sched, noise=False)
    assert torch.allclose(out, sched.a[3] * u + sched.b[3] * z)


def test_kl_closed_form_against_monte_carlo(sched):
    u = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    kl = float(kl_prior(u, sched)[0])
    ab = float(sched.alpha_bar[0])
    # KL between N(m, s^2 I) and N(0, I): 0.5 [d s^2 + |m|^2 - d - d ln s^2]
    m2, s2, d = ab * 1.0, 1 - ab, 3
    assert kl == pytest.approx(0.5 * (d * s2 + m2 - d - d * math.log(s2)), rel=1e-9)
    # Monte Carlo of E_q[log q - log p]
    big = make_schedule("linear", 10, alpha_bar_min=0.3)  # a KL large enough to estimate
    ab = float(big.alpha_bar[0])
    g = torch.Generator().manual_seed(3)
    z = q_sample(u.expand(N, 3), 0, big, generator=g)
    logq = -0.5 * ((z - math.sqrt(ab) * u) ** 2).sum(1) / (1 - ab) - 1.5 * math.log(1 - ab)
    logp = -0.5 * (z**2).sum(1)
    assert float((logq - logp).mean()) == pytest.approx(float(kl_prior(u, big)[0]), rel=0.03)


def test_bad_inputs(sched):
    u = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"t must be an integer in \[0, 10\]"):
        q_sample(u, 11, sched)
    with pytest.raises(ValueError, match=r"t must be an integer in \[1, 10\]"):
        posterior_step(u, u, 0, sched)
    with pytest.raises(ValueError, match="shape"):
        posterior_step(u, torch.zeros(2, 4), 1, sched)
    with pytest.raises(ValueError, match="eps has shape"):
        q_sample(u, 1, sched, eps=torch.zeros(3, 3))


def test_q_sample_with_a_given_eps_by_hand(sched):
    """z_5 = sqrt(alpha_bar_5) u + sqrt(1 - alpha_bar_5) eps with eps = (1, -2): alpha_bar_5 = 0.4938435904
    (cosine, T = 10), so z = 0.7027400 u + 0.7114467 eps."""
    u = torch.tensor([[1.0, 3.0]], dtype=torch.float64)
    eps = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    z = q_sample(u, 5, sched, eps=eps)
    ab = 0.4938435904
    expect = [math.sqrt(ab) * 1 + math.sqrt(1 - ab) * 1, math.sqrt(ab) * 3 - 2 * math.sqrt(1 - ab)]
    assert z[0].tolist() == pytest.approx(expect, rel=1e-8)


def test_noise_comes_from_the_given_generator(sched):
    """Same seed, same draw (whatever the global generator does in between); another seed, another draw."""
    u = torch.zeros(4, 3, dtype=torch.float64)

    def draw(seed, global_seed):
        torch.manual_seed(global_seed)  # the global generator must not matter
        g = torch.Generator().manual_seed(seed)
        return q_sample(u, 3, sched, generator=g), posterior_step(u, u, 3, sched, generator=g)

    (a1, b1), (a2, b2), (a3, b3) = draw(0, 100), draw(0, 200), draw(1, 100)
    assert torch.equal(a1, a2) and torch.equal(b1, b2)
    assert not torch.equal(a1, a3) and not torch.equal(b1, b3)


@pytest.mark.parametrize("t", [2.5, True, -1, 11])
def test_check_t_refuses_non_integer_or_out_of_range_times(sched, t):
    from nplib.diffusion import check_t
    with pytest.raises(ValueError, match="t must be an integer"):
        check_t(sched, t)

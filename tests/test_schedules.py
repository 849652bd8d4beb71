"""Schedules: every formula of spec section 1 and the schedule traps of section 8."""
import math

import pytest
import torch

from nplib.schedules import DTSchedule, cosine_alpha_bar, linear_alpha_bar, make_schedule


@pytest.fixture(params=["cosine", "linear"])
def sched(request):
    return make_schedule(request.param, T=10)


def test_shapes(sched):
    T = sched.T
    assert T == 10
    for name in ("alpha", "alpha_bar", "snr"):
        assert getattr(sched, name).shape == (T + 1,)
    for name in ("snr_delta", "a", "b", "c"):
        assert getattr(sched, name).shape == (T,)


def test_alpha_bar_is_product_from_t_up_to_T(sched):
    # alpha_bar_t = prod_{s=t..T} alpha_s
    for t in range(sched.T + 1):
        assert math.isclose(float(sched.alpha[t:].prod()), float(sched.alpha_bar[t]), rel_tol=1e-12)
    assert float(sched.alpha_bar[-1]) == float(sched.alpha[-1])


def test_trap1_alpha_bar_increasing_and_weights_positive(sched):
    """Spec 8.1: a forward (DDPM-direction) product makes alpha_bar decrease and weights negative."""
    assert (sched.alpha_bar[1:] > sched.alpha_bar[:-1]).all()
    assert (sched.snr_delta > 0).all()
    assert ((sched.alpha > 0) & (sched.alpha <= 1)).all()


def test_trap1_forward_product_is_rejected():
    alpha = make_schedule("cosine", 10).alpha
    forward = torch.cumprod(alpha, 0)  # DDPM direction: decreasing
    with pytest.raises(ValueError, match="increasing"):
        DTSchedule.from_alpha_bar(forward)


def test_snr(sched):
    assert torch.allclose(sched.snr, sched.alpha_bar / (1 - sched.alpha_bar))
    assert torch.allclose(sched.snr_delta, sched.snr[1:] - sched.snr[:-1])


def test_posterior_coefficients_closed_form(sched):
    ab = sched.alpha_bar
    for t in range(1, sched.T + 1):
        a_prev = float(ab[t - 1] / ab[t])  # alpha_{t-1}
        assert math.isclose(float(sched.alpha[t - 1]), a_prev, rel_tol=1e-12)
        a = math.sqrt(ab[t]) * (1 - a_prev) / (1 - ab[t - 1])
        b = math.sqrt(a_prev) * (1 - ab[t]) / (1 - ab[t - 1])
        c = (1 - ab[t]) * (1 - a_prev) / (1 - ab[t - 1])
        assert math.isclose(float(sched.a[t - 1]), a, rel_tol=1e-12)
        assert math.isclose(float(sched.b[t - 1]), b, rel_tol=1e-12)
        assert math.isclose(float(sched.c[t - 1]), c, rel_tol=1e-12)


def test_posterior_mean_consistency(sched):
    # with z_{t-1} = sqrt(alpha_bar_{t-1}) u, the mean a_t + b_t sqrt(alpha_bar_{t-1}) = sqrt(alpha_bar_t)
    lhs = sched.a + sched.b * sched.alpha_bar[:-1].sqrt()
    assert torch.allclose(lhs, sched.alpha_bar[1:].sqrt(), atol=1e-12)


def test_posterior_variance_consistency(sched):
    # Var z_t = b_t^2 Var z_{t-1} + c_t  must equal 1 - alpha_bar_t
    lhs = sched.b**2 * (1 - sched.alpha_bar[:-1]) + sched.c
    assert torch.allclose(lhs, 1 - sched.alpha_bar[1:], atol=1e-12)


def test_trap2_b_uses_alpha_not_alpha_bar(sched):
    """Spec 8.2: b_t with sqrt(alpha_bar_{t-1}) instead of sqrt(alpha_{t-1}) is 10-60x too small."""
    ab = sched.alpha_bar
    wrong = ab[:-1].sqrt() * (1 - ab[1:]) / (1 - ab[:-1])
    # the wrong b_t is smaller by a factor sqrt(alpha_bar_t): large for the noisy early blocks
    assert torch.allclose(sched.b / wrong, 1 / sched.alpha_bar[1:].sqrt())
    assert (sched.b > wrong).all() and float((sched.b / wrong).max()) > 3


def test_trap3_alpha_bar_T_close_to_one(sched):
    """Spec 8.3: z_T must be close to the label, not nearly pure noise."""
    assert float(sched.alpha_bar[-1]) >= 0.95
    assert float(sched.alpha_bar[0]) <= 0.01


def test_cosine_clipping_weights_match_spec():
    # spec: last weight 64 (clip 0.99), 964 (0.999), 9964 (0.9999); the other nine in [0.025, 26]
    for clip, expected in [(0.99, 64), (0.999, 964), (0.9999, 9964)]:
        s = make_schedule("cosine", 10, alpha_bar_max=clip)
        assert abs(float(s.snr_delta[-1]) - expected) < 1.0, (clip, float(s.snr_delta[-1]))
        assert 0.02 < float(s.snr_delta[:-1].min()) and float(s.snr_delta[:-1].max()) < 26.5


def test_cosine_reversed_direction():
    ab = cosine_alpha_bar(10)
    assert float(ab[0]) == pytest.approx(1e-4)   # t = 0: noise (clipped from 0)
    assert float(ab[-1]) == pytest.approx(0.99)  # t = T: label (clipped from 1)


def test_linear_alpha_bar():
    ab = linear_alpha_bar(4, 0.1, 0.9)
    assert torch.allclose(ab, torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9], dtype=torch.float64))


@pytest.mark.parametrize("T", [1, 2, 15])
def test_other_T(T):
    s = make_schedule("cosine", T)
    assert s.T == T and (s.snr_delta > 0).all()


def test_hard_clip_at_large_T_is_refused_and_rescale_works():
    with pytest.raises(ValueError, match="clip='rescale'"):
        make_schedule("cosine", 50)
    for T in (10, 50, 1000):
        s = make_schedule("cosine", T, clip="rescale")
        assert (s.snr_delta > 0).all()
        assert float(s.alpha_bar[0]) == pytest.approx(1e-4) and float(s.alpha_bar[-1]) == pytest.approx(0.99)
    with pytest.raises(ValueError, match="clip must be"):
        make_schedule("cosine", 10, clip="soft")


@pytest.mark.parametrize("kwargs, match", [
    (dict(T=0), "T must be >= 1"),
    (dict(T=-3), "T must be >= 1"),
    (dict(T=2.5), "integer"),
    (dict(alpha_bar_max=1.0), r"alpha_bar_max must lie in \(0, 1\)"),
    (dict(alpha_bar_max=1.5), r"alpha_bar_max must lie in \(0, 1\)"),
    (dict(alpha_bar_min=0.0), r"alpha_bar_min must lie in \(0, 1\)"),
    (dict(alpha_bar_min=0.5, alpha_bar_max=0.4), "alpha_bar_min < alpha_bar_max"),
    (dict(kind="quadratic"), "unknown schedule kind"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_schedule(**kwargs)


@pytest.mark.parametrize("values, match", [
    ([0.1, 0.5, 1.0], r"strictly inside \(0, 1\)"),
    ([0.0, 0.5, 0.9], r"strictly inside \(0, 1\)"),
    ([0.1, 0.5, 0.5], "strictly increasing"),
    ([0.5], "T \\+ 1 >= 2"),
    ([0.1, float("nan"), 0.9], "NaN"),
])
def test_bad_alpha_bar(values, match):
    with pytest.raises(ValueError, match=match):
        DTSchedule.from_alpha_bar(values)


def test_as_dict_keys():
    d = make_schedule().as_dict()
    for k in ("alpha", "alpha_bar", "snr", "snr_delta", "a", "b", "c"):
        assert k in d
    assert len(d["alpha_bar"]) == 11 and len(d["a"]) == 10

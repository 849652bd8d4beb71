"""Schedules: every formula of spec section 1 and the schedule traps of section 8."""
import math

import numpy as np
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


def test_alpha_bar_is_the_product_from_t_up_to_T_on_a_hand_schedule():
    """alpha_bar = (0.1, 0.4, 0.8) gives alpha = (0.25, 0.5, 0.8), worked out by hand, and
    alpha_bar_t = prod_{s=t..T} alpha_s: 0.8, 0.5 * 0.8 = 0.4, 0.25 * 0.5 * 0.8 = 0.1."""
    s = DTSchedule.from_alpha_bar([0.1, 0.4, 0.8])
    assert s.alpha.tolist() == pytest.approx([0.25, 0.5, 0.8], rel=1e-12)
    for t, expected in enumerate([0.1, 0.4, 0.8]):
        assert float(torch.prod(s.alpha[t:])) == pytest.approx(expected, rel=1e-12)


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


# alpha_bar_t of the default cosine schedule (T = 10, clip [1e-4, 0.99]) and its loss weights
# SNR(t) - SNR(t-1), computed once outside nplib with the spec's formula in plain Python
# (f(s) = cos^2((s + 0.008)/1.008 pi/2) / cos^2(0.008/1.008 pi/2), alpha_bar_t = clip(f(1 - t/T))).
COSINE_AB = [0.0001, 0.0240917241, 0.0940456127, 0.2031214741, 0.3408096398, 0.4938435904,
             0.6474782111, 0.7869105112, 0.8987059206, 0.9720927371, 0.99]
COSINE_WEIGHTS = [0.024586454, 0.079121867, 0.15108808, 0.26211607, 0.45866141, 0.8610302, 1.85616,
                  5.1793813, 25.960721, 64.167034]
RESCALED_AB = [0.0001, 0.0239483977, 0.093195752, 0.2011699472, 0.3374674624, 0.4889557702,
               0.6410386812, 0.779062715, 0.8897289908, 0.9623746005, 0.99]


def test_cosine_schedule_matches_values_computed_outside_nplib():
    s = make_schedule("cosine", 10)
    np.testing.assert_allclose(s.alpha_bar.numpy(), COSINE_AB, rtol=1e-8)
    np.testing.assert_allclose(s.snr_delta.numpy(), COSINE_WEIGHTS, rtol=1e-5)
    # SNR(T) = 0.99 / 0.01 = 99, SNR(0) = 1e-4 / (1 - 1e-4)
    assert float(s.snr[-1]) == pytest.approx(99.0, rel=1e-9)
    assert float(s.snr[0]) == pytest.approx(1e-4 / 0.9999, rel=1e-9)


def test_rescaled_cosine_schedule_matches_values_computed_outside_nplib():
    s = make_schedule("cosine", 10, clip="rescale")
    np.testing.assert_allclose(s.alpha_bar.numpy(), RESCALED_AB, rtol=1e-8)
    assert float(s.snr_delta[-1]) == pytest.approx(73.4222091, rel=1e-6)


def test_posterior_coefficients_on_a_hand_schedule():
    """alpha_bar = (0.1, 0.4, 0.8):  a = (sqrt(0.4) 0.75/0.9, sqrt(0.8) 0.5/0.6) = (0.5270462767, 0.7453559925),
    b = (0.5 * 0.6/0.9, sqrt(0.5) 0.2/0.6) = (1/3, 0.2357022604), c = (0.6 * 0.75/0.9, 0.2 * 0.5/0.6) = (0.5, 1/6),
    SNR = (1/9, 2/3, 4), SNR(t) - SNR(t-1) = (5/9, 10/3)."""
    s = DTSchedule.from_alpha_bar([0.1, 0.4, 0.8])
    np.testing.assert_allclose(s.a.numpy(), [0.5270462767, 0.7453559925], rtol=1e-9)
    np.testing.assert_allclose(s.b.numpy(), [1 / 3, 0.2357022604], rtol=1e-9)
    np.testing.assert_allclose(s.c.numpy(), [0.5, 1 / 6], rtol=1e-9)
    np.testing.assert_allclose(s.snr.numpy(), [1 / 9, 2 / 3, 4.0], rtol=1e-12)
    np.testing.assert_allclose(s.snr_delta.numpy(), [5 / 9, 10 / 3], rtol=1e-12)


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
    (dict(alpha_bar_min=0.5, alpha_bar_max=0.5), "alpha_bar_min < alpha_bar_max"),
    (dict(kind="linear", alpha_bar_min=0.5, alpha_bar_max=0.5), "alpha_bar_min < alpha_bar_max"),
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


def test_as_dict_holds_the_schedule_as_plain_lists():
    d = make_schedule().as_dict()
    assert d["kind"] == "cosine" and d["T"] == 10
    assert d["alpha_bar"] == pytest.approx(COSINE_AB, rel=1e-8)
    assert d["snr_delta"] == pytest.approx(COSINE_WEIGHTS, rel=1e-5)
    assert len(d["a"]) == len(d["b"]) == len(d["c"]) == 10 and len(d["alpha"]) == len(d["snr"]) == 11

"""Tests of nplib.evaluation on tiny random models and data (fast, no dataset needed)."""
import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from nplib.blocks import BlockConfig
from nplib.data import TensorData
from nplib.evaluation import (ABLATION_LABELS, Z_MODES, ablation, chain_predictions, classify_batch,
                              confusion_matrix, estimate_epoch_seconds, mean_se, per_step_accuracy,
                              plot_ablation, plot_chain, plot_confusion_matrix, plot_learning_curves,
                              plot_per_step_accuracy, plot_predictions, run_chain)
from nplib.models import BackpropBaseline, NoPropDT

TINY = BlockConfig(channels=(4,), pools=(True,), hidden=16, head_hidden=8, dropout=0.1)
SHAPE = (1, 8, 8)
M = 4


def _dt(T=3, embedding="onehot", seed=0):
    torch.manual_seed(seed)
    return NoPropDT(SHAPE, M, T=T, block=TINY, embedding=embedding)


def _bp(T=3, seed=0):
    torch.manual_seed(seed)
    return BackpropBaseline(SHAPE, M, T=T, block=TINY)


def _data(n=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    return TensorData(torch.randn(n, *SHAPE, generator=g), torch.randint(0, M, (n,), generator=g))


def _train_a_little(model, data, steps=3, lr=1e-3):
    opts = model.configure_optimizers(lr=lr)
    model.train()
    for _ in range(steps):
        model.training_step(data.x, data.y, opts)
    model.eval()
    return model


@pytest.mark.parametrize("noise", [False, True])
def test_run_chain_reproduces_sample(noise):
    model = _train_a_little(_dt(), _data())
    x = _data().x
    g1 = torch.Generator().manual_seed(5)
    g2 = torch.Generator().manual_seed(5)
    ref, traj = model.sample(x, noise=noise, generator=g1, return_trajectory=True)
    out = run_chain(model, x, noise=noise, generator=g2)
    assert torch.allclose(out["logits"], ref, atol=1e-6)
    assert torch.allclose(out["z"], traj["z"], atol=1e-6)
    assert torch.allclose(out["u_hat"], traj["u_hat"], atol=1e-6)
    assert out["z"].shape == (model.T + 1, len(x), model.d)
    assert out["block_logits"].shape == (model.T, len(x), M)


def test_run_chain_reproduces_baseline():
    model = _train_a_little(_bp(), _data())
    x = _data().x
    ref = model.sample(x, noise=True, generator=torch.Generator().manual_seed(3))
    out = run_chain(model, x, noise=True, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(out["logits"], ref, atol=1e-6)


def test_run_chain_rejects_bad_mode_and_restores_training_flag():
    model = _dt()
    model.train()
    with pytest.raises(ValueError, match="z_mode"):
        run_chain(model, _data().x, z_mode="bogus")
    run_chain(model, _data().x)
    assert model.training  # eval mode only during the call


def test_z_modes_change_what_blocks_see():
    model = _train_a_little(_dt(), _data(), steps=5)
    x = _data().x
    outs = {m: run_chain(model, x, noise=False, generator=torch.Generator().manual_seed(0), z_mode=m)
            for m in Z_MODES}
    # block 1 sees z_0 = 0 in the noise-free chain and in "zeros": identical first predictions
    assert torch.allclose(outs["chain"]["u_hat"][0], outs["zeros"]["u_hat"][0])
    # later blocks see something else when the latent is replaced
    for mode in ("shuffle", "prior", "zeros"):
        assert not torch.allclose(outs["chain"]["u_hat"][1:], outs[mode]["u_hat"][1:])


def test_shuffle_is_a_permutation_of_the_latent():
    model = _dt(T=1)
    x = _data().x
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(len(x), model.d, generator=g)
    # re-run by hand: the permuted z_0 is what block 1 receives
    g = torch.Generator().manual_seed(0)
    out = run_chain(model, x, noise=True, generator=g, z_mode="shuffle")
    g = torch.Generator().manual_seed(0)
    torch.randn(len(x), model.d, generator=g)
    perm = torch.randperm(len(x), generator=g)
    model.eval()
    u_hat, _ = model.u_hat(1, x, z0[perm])
    assert torch.allclose(out["u_hat"][0], u_hat, atol=1e-6)
    assert sorted(perm.tolist()) == list(range(len(x)))


def test_classify_batch_shapes_and_probabilities():
    model = _dt()
    x = _data(10).x
    pred, probs = classify_batch(model, x)
    assert pred.shape == (10,) and probs.shape == (10, M)
    assert torch.allclose(probs.sum(dim=1), torch.ones(10), atol=1e-5)
    assert torch.equal(pred, probs.argmax(dim=1))
    # deterministic without noise; seeded with noise
    assert torch.equal(classify_batch(model, x)[0], pred)
    a = classify_batch(model, x, noise=True, seed=1)[1]
    b = classify_batch(model, x, noise=True, seed=1)[1]
    assert torch.allclose(a, b)


def test_classify_batch_does_not_depend_on_the_rest_of_the_batch():
    """Eval mode: BatchNorm uses running statistics, so an image's prediction is its own."""
    model = _train_a_little(_dt(), _data())
    x = _data(12).x
    _, full = classify_batch(model, x)
    _, half = classify_batch(model, x[:6])
    assert torch.allclose(full[:6], half, atol=1e-5)


class _SignBlock(torch.nn.Module):
    """A spy block: predicts class 1 when the image's first pixel is positive, else class 0,
    whatever z it receives (logits 100 e_k, so u_hat = e_k exactly)."""

    def forward(self, x, z):
        k = (x[:, 0, 0, 0] > 0).long()
        return 100.0 * torch.nn.functional.one_hot(k, M).float()


def _spy_model(make):
    model = make()
    for t in range(model.T):
        model.blocks[t] = _SignBlock()
    with torch.no_grad():  # classifier = identity: argmax z_T
        model.classifier.weight.copy_(torch.eye(M))
        model.classifier.bias.zero_()
    if isinstance(model, BackpropBaseline):
        with torch.no_grad():
            model.w.fill_(5.0)  # tanh(5) = 0.99991: z_t is (almost) u_hat_t, whatever z_{t-1} was

    def forbidden(y):
        raise AssertionError("the label embedding was looked up at inference")

    model.embedding.forward = forbidden
    return model


# first pixels (+, -, +, +, -, -): every block and the chain predict (1, 0, 1, 1, 0, 0)
_SIGNS = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0, -1.0])
_LABELS = torch.tensor([1, 1, 1, 0, 0, 2])       # 3 of 6 right: 0.5
_RELABELLED = (_LABELS + 1) % M                   # (2, 2, 2, 1, 1, 3): 1 of 6 right


def _sign_data(labels):
    x = torch.zeros(6, *SHAPE)
    x[:, 0, 0, 0] = _SIGNS
    return TensorData(x, labels)


@pytest.mark.parametrize("make", [_dt, _bp])
def test_per_step_accuracy_scores_label_free_predictions_by_hand(make):
    """The chain never looks up a label embedding (the lookup raises), and the accuracies are the
    ones worked out by hand: 3/6 against the labels, 1/6 against the shifted labels."""
    model = _spy_model(make)
    for labels, expected in ((_LABELS, 0.5), (_RELABELLED, 1 / 6)):
        acc = per_step_accuracy(model, _sign_data(labels), noise=False)
        assert acc["model"] == pytest.approx(expected)
        np.testing.assert_allclose(acc["u_hat"], [expected] * model.T)
        np.testing.assert_allclose(acc["block"], [expected] * model.T)
        assert acc["classifier_z"][-1] == pytest.approx(expected)


def test_per_step_accuracy_shapes_and_consistency():
    model = _train_a_little(_dt(T=4), _data())
    data = _data(40)
    acc = per_step_accuracy(model, data, batch_size=7)
    assert acc["u_hat"].shape == (4,) and acc["block"].shape == (4,)
    assert acc["classifier_z"].shape == (5,) and acc["nearest_z"].shape == (5,)
    # one-hot: nearest class embedding to u_hat = argmax of the block's softmax
    np.testing.assert_allclose(acc["u_hat"], acc["block"])
    # the classifier on z_T is the model
    assert acc["classifier_z"][-1] == pytest.approx(acc["model"])
    # batch size does not matter
    acc2 = per_step_accuracy(model, data, batch_size=1000)
    np.testing.assert_allclose(acc["u_hat"], acc2["u_hat"])
    assert all(0 <= v <= 1 for v in acc["u_hat"])


def test_per_step_accuracy_learned_embedding_uses_nearest_class():
    model = _train_a_little(_dt(embedding="learned"), _data())
    acc = per_step_accuracy(model, _data(20))
    assert acc["u_hat"].shape == (model.T,)


def test_ablation_on_a_model_that_learned_something():
    """On separable toy data the trained chain beats chance; every variant is reported."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, M, (256,), generator=g)
    x = 0.3 * torch.randn(256, *SHAPE, generator=g)
    x[torch.arange(256), 0, y, y] += 3.0  # the class is written on the diagonal
    data = TensorData(x, y)
    model = _train_a_little(_dt(T=3), data, steps=40, lr=1e-2)
    res = ablation(model, data, batch_size=100)
    assert set(res) == set(ABLATION_LABELS)
    assert all(0.0 <= v <= 1.0 for v in res.values())
    assert res["chain"] > 0.9
    acc = per_step_accuracy(model, data)
    assert res["chain"] == pytest.approx(acc["model"])
    assert res["chain_last_block"] == pytest.approx(float(acc["u_hat"][-1]))
    assert res["first_block"] == pytest.approx(float(acc["u_hat"][0]))


@pytest.mark.parametrize("make", [_dt, _bp])
def test_ablation_accuracies_by_hand_when_blocks_ignore_the_latent(make):
    """Blocks that read only the image: every variant predicts (1, 0, 1, 1, 0, 0), so every
    accuracy is 3/6, for NoProp-DT and for the backprop baseline alike."""
    model = _spy_model(make)
    res = ablation(model, _sign_data(_LABELS))
    assert set(res) == set(ABLATION_LABELS)
    for name, value in res.items():
        assert value == pytest.approx(0.5), name


def test_confusion_matrix():
    cm = confusion_matrix(torch.tensor([0, 0, 1, 2, 2, 2]), torch.tensor([0, 1, 1, 2, 0, 2]), 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert cm.sum() == 6
    with pytest.raises(ValueError):
        confusion_matrix(torch.tensor([0, 3]), torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0]), 3)


def test_mean_se():
    m, se = mean_se([1.0, 2.0, 3.0])
    assert m == pytest.approx(2.0)
    assert se == pytest.approx(1.0 / np.sqrt(3))
    assert np.isnan(mean_se([1.0])[1])
    with pytest.raises(ValueError):
        mean_se([])


def test_estimate_epoch_seconds():
    data = _data(64)
    r = estimate_epoch_seconds(_dt(), data, batches=2, batch_size=16, warmup=1)
    assert r["seconds_per_batch"] > 0
    assert r["seconds_per_epoch"] == pytest.approx(4 * r["seconds_per_batch"])
    with pytest.raises(ValueError):
        estimate_epoch_seconds(_dt(), data, batches=0)


def test_figures():
    model = _train_a_little(_dt(), _data())
    data = _data(16)
    hist = [{"epoch": e, "loss": 1.0 / e, "train_acc": 0.5, "test_acc": 0.4, "seconds": 1.0} for e in (1, 2)]
    figs = [plot_learning_curves({"NoProp-DT": hist, "backprop": hist})]
    pred, probs = classify_batch(model, data.x)
    figs.append(plot_confusion_matrix(confusion_matrix(data.y, pred, M)))
    figs.append(plot_predictions(data.x, pred, data.y, probs, ncols=4))
    figs.append(plot_predictions(data.x, pred))
    traj = run_chain(model, data.x)
    figs.append(plot_chain(traj, data.x, n=3, labels=data.y))
    figs.append(plot_chain(traj, data.x, n=3, key="u_hat"))
    acc = per_step_accuracy(model, data)
    figs.append(plot_per_step_accuracy(acc))
    figs.append(plot_per_step_accuracy({"a": acc, "b": acc}))
    res = ablation(model, data)
    figs.append(plot_ablation(res))
    figs.append(plot_ablation({"DT": res, "backprop": res}))
    assert all(isinstance(f, Figure) for f in figs)
    with pytest.raises(ValueError):
        plot_learning_curves({})
    with pytest.raises(ValueError):
        plot_chain(traj, data.x, key="nothing")
    import matplotlib.pyplot as plt

    plt.close("all")


def test_chain_heat_map_colour_scale_is_set_by_the_last_row_not_by_the_noise():
    # z_0 holds large noise (|z| up to 3), z_T a decided one-hot-like row of scale 1: the colour limits
    # must be those of z_T, so that the decided rows are not washed out.
    import matplotlib.pyplot as plt

    T, n, d = 4, 2, 10
    Z = torch.zeros(T + 1, n, d)
    Z[0] = torch.tensor([3.0, -2.5] + [0.0] * (d - 2))
    Z[-1, :, 3] = 0.8
    fig = plot_chain({"z": Z}, torch.zeros(n, 1, 28, 28), n=n)
    clims = [im.get_clim() for ax in fig.axes for im in ax.get_images() if im.get_array().shape == (T + 1, d)]
    assert len(clims) == n and np.allclose(clims, [(-0.8, 0.8)] * n)
    plt.close("all")


def test_per_step_plot_shows_the_error_on_a_log_axis():
    import matplotlib.pyplot as plt

    acc = {"u_hat": [0.9, 0.99, 0.995], "classifier_z": [0.1, 0.9, 0.99, 0.995], "model": 0.995}
    fig = plot_per_step_accuracy(acc)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    block_line = ax.get_lines()[0]
    # error = 100 - accuracy (%), worked out by hand: 10, 1, 0.5
    assert np.allclose(block_line.get_ydata(), [10.0, 1.0, 0.5])
    plt.close("all")


def test_prediction_votes_count_each_class_over_the_runs():
    import matplotlib.pyplot as plt

    from nplib.evaluation import plot_prediction_votes

    P = torch.tensor([[7, 1], [7, 1], [2, 1]])    # 3 runs, 2 images: image 0 voted 7,7,2; image 1 voted 1 x3
    fig = plot_prediction_votes(torch.zeros(2, 1, 28, 28), P, y=torch.tensor([7, 4]))
    bars0 = [p.get_height() for p in fig.axes[2].patches]   # axes: image0, image1, votes0, votes1
    bars1 = [p.get_height() for p in fig.axes[3].patches]
    assert bars0 == [0, 0, 1, 0, 0, 0, 0, 2, 0, 0]
    assert bars1 == [0, 3, 0, 0, 0, 0, 0, 0, 0, 0]
    with pytest.raises(ValueError, match="runs"):
        plot_prediction_votes(torch.zeros(3, 1, 28, 28), P)
    plt.close("all")

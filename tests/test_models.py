"""Blocks, embeddings, NoProp-DT and the backprop baseline: structure and the traps of spec section 8."""
import math

import pytest
import torch
from torch import nn

from nplib.blocks import BlockConfig, DenoisingBlock, count_parameters
from nplib.embeddings import LabelEmbedding, class_medoids
from nplib.models import BackpropBaseline, NoPropDT
from nplib.schedules import make_schedule


def tiny_batch(n=16, shape=(1, 28, 28), m=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randint(0, m, (n,), generator=g)


# ---------------------------------------------------------------------------- blocks
def test_paper_block_parameter_counts():
    """About 0.92 M per MNIST block and 1.22 M per CIFAR-10 block, as in the paper."""
    mnist = DenoisingBlock((1, 28, 28), 10, 10, BlockConfig.paper())
    cifar = DenoisingBlock((3, 32, 32), 10, 10, BlockConfig.paper())
    assert 0.90e6 < count_parameters(mnist) < 0.94e6
    assert 1.20e6 < count_parameters(cifar) < 1.24e6
    # unpadded convolutions: flatten is 128*4*4 on MNIST and 128*5*5 on CIFAR
    assert mnist.image_path[-2].in_features == 128 * 4 * 4
    assert cifar.image_path[-2].in_features == 128 * 5 * 5


def test_small_block_is_small():
    n = count_parameters(DenoisingBlock((1, 28, 28), 10, 10, BlockConfig.small()))
    assert 10_000 < n < 100_000


def test_block_output_and_bad_shapes():
    blk = DenoisingBlock((1, 28, 28), 10, 10, BlockConfig.small())
    x, _ = tiny_batch(4)
    assert blk(x, torch.randn(4, 10)).shape == (4, 10)
    with pytest.raises(ValueError, match="images of shape"):
        blk(torch.randn(4, 3, 28, 28), torch.randn(4, 10))
    with pytest.raises(ValueError, match="z of shape"):
        blk(x, torch.randn(4, 7))


def test_prototype_block_has_conv_label_path():
    blk = DenoisingBlock((1, 28, 28), 784, 10, BlockConfig.small(), z_image_shape=(1, 28, 28))
    x, _ = tiny_batch(4)
    assert blk(x, torch.randn(4, 784)).shape == (4, 10)
    assert any(isinstance(m, nn.Conv2d) for m in blk.label_path.modules())


# ---------------------------------------------------------------------------- embeddings
def test_embeddings():
    one = LabelEmbedding("onehot", 10)
    assert torch.equal(one.W_embed, torch.eye(10)) and not one.trainable
    learned = LabelEmbedding("learned", 10, 20)
    W = learned.W_embed.detach()
    assert W.shape == (10, 20) and learned.trainable
    assert torch.allclose(W @ W.T, torch.eye(10), atol=1e-5)  # orthonormal rows (m <= d)
    with pytest.raises(ValueError, match="unknown embedding kind"):
        LabelEmbedding("random", 10)
    with pytest.raises(ValueError, match="labels must lie in"):
        one(torch.tensor([10]))
    with pytest.raises(ValueError, match="need `prototypes`"):
        LabelEmbedding("prototype", 10)


def test_class_medoids_picks_the_central_image():
    # class 0: images at 0, 1, 2, 10 (medoid = 1); class 1: at 5, 6, 7, 20 (medoid = 6)
    vals = torch.tensor([0.0, 1.0, 2.0, 10.0, 5.0, 6.0, 7.0, 20.0])
    images = vals.view(8, 1, 1, 1).expand(8, 1, 2, 2).clone()
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    med = class_medoids(images, labels, 2)
    assert med.shape == (2, 1, 2, 2)
    assert float(med[0, 0, 0, 0]) == 1.0 and float(med[1, 0, 0, 0]) == 6.0
    emb = LabelEmbedding("prototype", 2, prototypes=med)
    assert emb.dim == 4 and emb.image_shape == (1, 2, 2)


# ---------------------------------------------------------------------------- NoProp-DT
@pytest.fixture
def model():
    torch.manual_seed(0)
    return NoPropDT((1, 28, 28), 10, T=4, block="small", schedule=make_schedule("cosine", 4))


def test_u_hat_of_a_real_block_lies_in_the_simplex_of_one_hot_embeddings(model):
    """u_hat_t = softmax(logits) @ I: non-negative entries that sum to 1, for the real block
    (the value itself is checked with a spy block in test_formulas.py)."""
    x, _ = tiny_batch(8)
    u_hat, _ = model.u_hat(2, x, torch.randn(8, 10))
    assert (u_hat >= 0).all()
    assert torch.allclose(u_hat.sum(1), torch.ones(8), atol=1e-5)


def test_no_gradient_reaches_another_block(model):
    x, y = tiny_batch(8)
    for t in range(1, model.T + 1):
        model.zero_grad(set_to_none=True)
        model.block_loss(t, x, y).backward()
        for s, blk in enumerate(model.blocks, start=1):
            grads = [p.grad for p in blk.parameters()]
            if s == t:
                assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
            else:
                assert all(g is None for g in grads), f"block {t}'s loss reached block {s}"
        assert all(p.grad is None for p in model.classifier.parameters())


def test_training_step_finishes_each_block_before_the_next(model):
    """When block t+1 starts its forward, block t has been updated and its gradients freed."""
    x, y = tiny_batch(8)
    opts = model.configure_optimizers()
    before = [[p.detach().clone() for p in b.parameters()] for b in model.blocks]
    seen = []

    def pre_hook(t):
        def hook(mod, inp):
            if t > 1:
                prev = model.blocks[t - 2]
                assert all(p.grad is None for p in prev.parameters())
                changed = any(not torch.equal(p, q) for p, q in zip(prev.parameters(), before[t - 2]))
                assert changed, f"block {t - 1} not yet updated when block {t} started"
            # later blocks untouched
            for s in range(t, model.T):
                assert all(torch.equal(p, q) for p, q in zip(model.blocks[s].parameters(), before[s]))
            seen.append(t)
        return hook

    handles = [b.register_forward_pre_hook(pre_hook(t)) for t, b in enumerate(model.blocks, start=1)]
    out = model.training_step(x, y, opts)
    for h in handles:
        h.remove()
    assert seen == list(range(1, model.T + 1))
    assert set(out) >= {"loss", "loss_blocks", "loss_classifier"}


def test_trap4_classifier_is_one_linear_layer_on_z_T(model):
    """Spec 8.4: the classifier is Linear(d -> m) on z_T, not a CNN block."""
    assert isinstance(model.classifier, nn.Linear)
    assert (model.classifier.in_features, model.classifier.out_features) == (model.d, 10)


def test_trap4_block_loss_does_not_depend_on_the_classifier(model):
    """Trap 4 (docs/pitfalls.md): no cross-entropy on the last block. Changing the classifier leaves every block
    loss unchanged (same noise draw), so no classifier term hides in it."""
    x, y = tiny_batch(8)
    model.eval()
    before = [float(model.block_loss(t, x, y, generator=torch.Generator().manual_seed(t)).detach()) for t in (1, 4)]
    with torch.no_grad():
        model.classifier.weight.mul_(-7.0).add_(3.0)
        model.classifier.bias.fill_(5.0)
    after = [float(model.block_loss(t, x, y, generator=torch.Generator().manual_seed(t)).detach()) for t in (1, 4)]
    assert before == after


def test_classifier_loss_reaches_no_block(model):
    """The classifier loss touches no block parameter (its z_T comes from q, checked by Monte Carlo
    in test_formulas.py::test_dt_classifier_is_trained_on_a_sample_of_q_z_T_given_y_not_on_the_clean_label)."""
    _, y = tiny_batch(8)
    model.zero_grad(set_to_none=True)
    model.classifier_loss(y).backward()
    assert all(p.grad is None for p in model.blocks.parameters())
    assert model.classifier.weight.grad is not None


def test_trap5_inference_uses_a_b_c(model):
    """Spec 8.5: inference must not replace z by u_hat; z_t = a_t u_hat + b_t z_{t-1} (+ noise)."""
    model.eval()
    x, _ = tiny_batch(4)
    _, traj = model.sample(x, noise=False, return_trajectory=True)
    z, u_hat = traj["z"], traj["u_hat"]
    assert z.shape == (model.T + 1, 4, model.d) and u_hat.shape == (model.T, 4, model.d)
    assert torch.equal(z[0], torch.zeros(4, model.d))
    s = model.schedule
    for t in range(1, model.T + 1):
        expected = float(s.a[t - 1]) * u_hat[t - 1] + float(s.b[t - 1]) * z[t - 1]
        assert torch.allclose(z[t], expected, atol=1e-6)
        assert not torch.allclose(z[t], u_hat[t - 1])


def test_stochastic_inference_is_seeded_and_noisy(model):
    model.eval()
    x, _ = tiny_batch(4)
    a = model.sample(x, noise=True, generator=torch.Generator().manual_seed(0))
    b = model.sample(x, noise=True, generator=torch.Generator().manual_seed(0))
    c = model.sample(x, noise=True, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_trap6_inference_never_calls_the_label_embedding(model):
    """Spec 8.6: building z_T from the true label needs the lookup u_y = W_embed[y]; make it fail."""
    import inspect
    for fn in (model.sample, model.predict):
        assert "y" not in inspect.signature(fn).parameters
    model.eval()
    x, _ = tiny_batch(4)

    def forbidden(y):
        raise AssertionError("label embedding looked up at inference")

    model.embedding.forward = forbidden
    model.sample(x, noise=True)
    model.predict(x, noise=False)


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="schedule has T = 10"):
        NoPropDT(T=4, schedule=make_schedule("cosine", 10))
    with pytest.raises(ValueError, match="unknown block"):
        NoPropDT(block="huge")
    m = NoPropDT(T=2, block="small", schedule=make_schedule("cosine", 2))
    with pytest.raises(ValueError, match="expected images"):
        m.sample(torch.randn(2, 28, 28))
    with pytest.raises(ValueError, match="blocks must be a subset"):
        m.training_step(*tiny_batch(4), m.configure_optimizers(), blocks=[3])


def test_nan_loss_stops_with_clear_error(model):
    x, y = tiny_batch(8)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="block 1"):
        model.training_step(x, y, model.configure_optimizers())


def test_learned_and_prototype_embeddings_train(model):
    x, y = tiny_batch(16)
    for emb in ("learned", "prototype"):
        protos = class_medoids(x, y, 10) if emb == "prototype" and len(set(y.tolist())) == 10 else None
        if emb == "prototype" and protos is None:
            protos = torch.randn(10, 1, 28, 28)
        m = NoPropDT((1, 28, 28), 10, T=2, block="small", embedding=emb, prototypes=protos,
                     schedule=make_schedule("cosine", 2))
        W0 = m.W_embed.detach().clone()
        m.training_step(x, y, m.configure_optimizers())
        assert not torch.equal(W0, m.W_embed.detach())
        m.eval()
        assert m.predict(x).shape == (16,)


# ---------------------------------------------------------------------------- baseline
def test_backprop_baseline_trains_end_to_end():
    torch.manual_seed(0)
    m = BackpropBaseline((1, 28, 28), 10, T=3, block="small")
    x, y = tiny_batch(8)
    opts = m.configure_optimizers()
    opts["all"].zero_grad()
    torch.nn.functional.cross_entropy(m(x), y).backward()
    # end to end: every block gets a gradient from the single loss
    for blk in m.blocks:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in blk.parameters())
    assert m.w.grad is not None
    out = m.training_step(x, y, opts)
    assert out["loss"] > 0
    m.eval()
    logits, traj = m(x, noise=False, return_trajectory=True)
    alpha = torch.tanh(m.w.detach())
    u_hat, _ = m.u_hat(1, x, traj["z"][0])
    assert torch.allclose(traj["z"][1], (1 - alpha[0]) * traj["z"][0] + alpha[0] * u_hat, atol=1e-6)


@pytest.mark.parametrize("embedding,dim", [("onehot", None), ("learned", 20)])
def test_backprop_baseline_classifier_starts_as_embedding_readout(embedding, dim):
    """The OPEN classifier initialisation: z_T = u_k is read as class k from the first step."""
    torch.manual_seed(0)
    m = BackpropBaseline((1, 28, 28), 10, T=2, block="small", embedding=embedding, embed_dim=dim)
    W = m.W_embed.detach()
    logits = m.classifier(W)                      # one row per class embedding u_k
    assert torch.equal(logits.argmax(dim=1), torch.arange(10))
    # logits_k(u_k) = scale * <u_k, u_k> / ||u_k||^2 = scale
    assert torch.allclose(logits.diagonal(), torch.full((10,), 5.0), atol=1e-5)
    assert torch.count_nonzero(m.classifier.bias) == 0
    if embedding == "onehot":
        # p(y | z_T = u_y) = e^5 / (e^5 + 9) for every class
        p = torch.softmax(logits, dim=1).diagonal()
        assert torch.allclose(p, torch.full((10,), math.exp(5) / (math.exp(5) + 9)), atol=1e-6)
    assert m.config()["classifier_scale"] == 5.0


def test_backprop_baseline_default_classifier_init_and_bad_scale():
    torch.manual_seed(0)
    m = BackpropBaseline((1, 28, 28), 10, T=2, block="small", classifier_scale=None)
    # PyTorch's default: uniform in +-1/sqrt(d), not a scaled identity
    assert m.classifier.weight.abs().max() <= 1 / math.sqrt(10) + 1e-6
    assert m.config()["classifier_scale"] is None
    with pytest.raises(ValueError, match="classifier_scale"):
        BackpropBaseline((1, 28, 28), 10, T=2, block="small", classifier_scale=0.0)

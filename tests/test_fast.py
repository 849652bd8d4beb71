"""The batched NoProp-DT fast path (nplib.speed.fast) against the per-block loop of NoPropDT.training_step.

Exactness is checked in float64: in float32 the parameters whose exact gradient is zero (the bias of
a layer followed by batch norm, and any batch-constant shift in front of the head's batch norm) get
gradients of pure rounding noise, and AdamW turns any noise into steps of size lr, so the two
paths' values of those parameters differ by O(lr) although both compute the same maths. In float64
that noise is ~1e-17, far below AdamW's eps, and every tensor agrees to ~1e-9.
"""
import copy

import pytest
import torch

from nplib.data import TensorData
from nplib.speed.fast import FastDTTrainer, check_fast_supported
from nplib.models import BackpropBaseline, NoPropDT
from nplib.train import fit


def _pair(block="small", T=3, dtype=torch.float64, shape=(1, 28, 28), seed=0):
    torch.manual_seed(seed)
    loop = NoPropDT(shape, 10, T=T, block=block).to(dtype)
    fast_model = copy.deepcopy(loop)
    return loop, fast_model, FastDTTrainer(fast_model)


def _batch(n=16, shape=(1, 28, 28), dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g, dtype=dtype), torch.randint(0, 10, (n,), generator=g)


def _max_state_difference(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k].double() - sb[k].double()).abs().max()) for k in sa)


def _run_steps(loop, fast, x, y, steps, seeds):
    o_loop, o_fast = loop.configure_optimizers(), fast.configure_optimizers()
    losses = []
    for s in range(steps):
        torch.manual_seed(seeds[0] + s)
        a = loop.training_step(x, y, o_loop)
        torch.manual_seed(seeds[1] + s)
        b = fast.training_step(x, y, o_fast)
        losses.append((a, b))
    return losses


@pytest.mark.parametrize("block", ["small", "paper"])
def test_fast_path_equals_loop_losses_and_every_tensor_after_three_steps(block):
    loop, fast_model, fast = _pair(block=block, T=3 if block == "small" else 2)
    assert loop.training and any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in loop.modules())
    before = _max_state_difference(loop, fast_model)
    x, y = _batch(n=16 if block == "small" else 8)
    for a, b in _run_steps(loop, fast, x, y, 3, (100, 100)):
        for k in ("loss", "loss_blocks", "loss_classifier"):
            assert b[k] == pytest.approx(a[k], rel=1e-10, abs=1e-10)
    # every parameter AND every batch-norm running statistic of every block, and the classifier
    assert before == 0.0
    assert _max_state_difference(loop, fast_model) < 1e-8


def test_fast_path_differs_when_the_random_streams_differ():
    # the comparison above can fail: other base seeds (noise, dropout masks) give other updates
    loop, fast_model, fast = _pair()
    x, y = _batch()
    _run_steps(loop, fast, x, y, 2, (100, 200))
    assert _max_state_difference(loop, fast_model) > 1e-4


def test_fast_path_float32_losses_match_loop():
    loop, _, fast = _pair(dtype=torch.float32)
    x, y = _batch(dtype=torch.float32)
    for a, b in _run_steps(loop, fast, x, y, 3, (7, 7)):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)


def test_fast_path_keeps_batch_norm_per_block_and_model_holds_weights():
    loop, fast_model, fast = _pair(T=2)
    x, y = _batch()
    _run_steps(loop, fast, x, y, 1, (3, 3))
    # the two blocks saw different z_{t-1}: their running statistics differ, and match the loop's
    rm = [b.head[1].running_mean for b in fast_model.blocks]
    assert float((rm[0] - rm[1]).abs().max()) > 1e-6
    for b_loop, b_fast in zip(loop.blocks, fast_model.blocks):
        assert torch.allclose(b_loop.head[1].running_mean, b_fast.head[1].running_mean, atol=1e-10)
        assert int(b_fast.head[1].num_batches_tracked) == 1
    # the model's parameters are views of the trainer's stacked tensors
    assert fast_model.blocks[1].head[0].weight.data_ptr() == fast.params["head.0.weight"][1].data_ptr()


@pytest.mark.parametrize("kind", ["learned", "prototype"])
def test_fast_path_refuses_trainable_embeddings(kind):
    kw = {"prototypes": torch.randn(10, 1, 28, 28)} if kind == "prototype" else {}
    model = NoPropDT((1, 28, 28), 10, T=2, embedding=kind, **kw)
    with pytest.raises(ValueError, match="trainable W_embed.*block t-1"):
        FastDTTrainer(model)
    with pytest.raises(ValueError, match="NoProp-DT models only"):
        check_fast_supported(BackpropBaseline((1, 28, 28), 10, T=2))


@pytest.fixture
def float64_default():
    # fit's evaluation draws z_0 in the default dtype: make it float64 for this exactness test
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def test_fit_with_the_fast_trainer_equals_fit_with_the_loop(tmp_path, float64_default):
    g = torch.Generator().manual_seed(0)
    data = TensorData(torch.randn(40, 1, 28, 28, generator=g, dtype=torch.float64),
                      torch.randint(0, 10, (40,), generator=g))
    torch.manual_seed(0)
    loop = NoPropDT((1, 28, 28), 10, T=2).double()
    fast_model = copy.deepcopy(loop)
    kw = dict(epochs=2, batch_size=16, seed=3, progress=False, log=None, train_eval_size=None)
    h_loop = fit(loop, data, data, **kw)
    # interrupted after epoch 1 and resumed from fit's checkpoint
    ckpt = tmp_path / "fast.pt"
    fit(FastDTTrainer(fast_model), data, data, **{**kw, "epochs": 1}, checkpoint=ckpt)
    h_fast = fit(FastDTTrainer(fast_model), data, data, **kw, checkpoint=ckpt)
    assert [r["loss"] for r in h_fast] == pytest.approx([r["loss"] for r in h_loop], rel=1e-10)
    assert [r["test_acc"] for r in h_fast] == [r["test_acc"] for r in h_loop]
    assert _max_state_difference(loop, fast_model) < 1e-8


def test_non_finite_loss_is_caught_at_the_periodic_check():
    torch.manual_seed(0)
    model = NoPropDT((1, 28, 28), 10, T=2)
    fast = FastDTTrainer(model, check_every=3)
    opts = fast.configure_optimizers()
    x, y = _batch(dtype=torch.float32)
    with torch.no_grad():
        fast.params["head.6.bias"][1].fill_(float("nan"))
    fast.step(x, y, opts)
    fast.step(x, y, opts)          # no synchronisation yet: nothing raised
    with pytest.raises(FloatingPointError, match="non-finite loss at step 1"):
        fast.step(x, y, opts)
    with pytest.raises(ValueError, match="check_every"):
        FastDTTrainer(NoPropDT((1, 28, 28), 10, T=2), check_every=0)

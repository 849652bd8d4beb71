"""Block-parallel NoProp-DT training (nplib.speed.parallel): splitting, refusals, exactness."""
import pytest
import torch

from nplib import BackpropBaseline, NoPropDT
from nplib.data import TensorLoader
from nplib.speed.parallel import (check_parallelisable, max_abs_difference, models_equal, split_blocks,
                            synthetic_data, train_block_parallel, train_single)
from nplib.train import fit, set_seed

KW = {"image_shape": (1, 16, 16), "num_classes": 10, "T": 5, "block": "small"}


@pytest.fixture(scope="module")
def data():
    return synthetic_data(192, (1, 16, 16), 10, seed=1)


def test_split_blocks_covers_every_block_once():
    assert split_blocks(10, 2) == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]
    assert split_blocks(5, 2) == [[1, 2], [3, 4, 5]]  # rank 0 also trains the classifier: fewer blocks
    for T in range(1, 12):
        for k in range(1, T + 1):
            groups = split_blocks(T, k)
            assert sorted(t for g in groups for t in g) == list(range(1, T + 1))
            assert max(map(len, groups)) - min(map(len, groups)) <= 1
    for bad in [(3, 4), (0, 1), (3, 0), (2.0, 1)]:
        with pytest.raises(ValueError):
            split_blocks(*bad)


def test_coupled_models_are_refused(data):
    with pytest.raises(ValueError, match="W_embed"):
        check_parallelisable(NoPropDT(**KW, embedding="learned"))
    with pytest.raises(ValueError, match="backprop|NoPropDT"):
        check_parallelisable(BackpropBaseline(**KW))
    check_parallelisable(NoPropDT(**KW))
    with pytest.raises(ValueError, match="W_embed"):  # refused before any process is started
        train_block_parallel(dict(KW, embedding="learned"), data, epochs=1, batch_size=64)


def test_train_single_is_fit(data):
    """train_single is the reference: the same parameters as nplib.train.fit for the same seed."""
    model, _ = train_single(KW, data, epochs=2, batch_size=64, seed=5, threads=1)
    set_seed(5)
    ref = NoPropDT(**KW)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fit(ref, data, epochs=2, batch_size=64, seed=5, progress=False, log=None, train_eval_size=16)
    finally:
        torch.set_num_threads(old)
    assert models_equal(model, ref)[0]


def test_subsets_of_blocks_recombine_exactly(data):
    """The principle in one process: two 'ranks' training disjoint blocks give the full model."""
    full, _ = train_single(KW, data, epochs=1, batch_size=64, seed=2, threads=1)
    parts = []
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for blocks, shared in (([1, 2], True), ([3, 4, 5], False)):
            set_seed(2)
            m = NoPropDT(**KW)
            set_seed(2)
            opts = m.configure_optimizers()
            loader = TensorLoader(data, batch_size=64, shuffle=True, seed=2)
            loader.epoch = 1
            m.train()
            for x, y in loader:
                m.training_step(x, y, opts, blocks=blocks, shared=shared)
            parts.append(m)
    finally:
        torch.set_num_threads(old)
    merged = parts[0]
    merged.blocks[2:].load_state_dict(parts[1].blocks[2:].state_dict())
    assert models_equal(merged, full)[0]
    # and the comparison can fail: rank 1's blocks 1-2 were never trained
    assert not models_equal(parts[1], full)[0]


@pytest.mark.slow
def test_block_parallel_equals_single_process(data):
    """Two processes (gloo on 127.0.0.1) give EXACTLY the single-process model for the same seed."""
    ref, _ = train_single(KW, data, epochs=2, batch_size=64, seed=3, threads=1)
    model, info = train_block_parallel(KW, data, epochs=2, batch_size=64, seed=3, world_size=2,
                                       threads_per_process=1, timeout=300)
    assert info["backend"] == "gloo" and info["blocks"] == [[1, 2], [3, 4, 5]]
    assert [r["steps"] for r in info["ranks"]] == [6, 6]
    sd_ref, sd = ref.state_dict(), model.state_dict()
    for name in sd_ref:  # every parameter and buffer (BatchNorm statistics included)
        assert torch.equal(sd_ref[name], sd[name]), name
    # the check is not vacuous: training moved the parameters, and another seed gives another model
    set_seed(3)
    init = NoPropDT(**KW)
    assert max_abs_difference(model, init) > 1e-3
    other, _ = train_single(KW, data, epochs=2, batch_size=64, seed=4, threads=1)
    assert not models_equal(model, other)[0]


@pytest.mark.slow
def test_fresh_process_reference_equals_the_in_process_one(data):
    """train_single(fresh_process=True) trains in a spawned process: the same parameters, bit for bit."""
    ref, _ = train_single(KW, data, epochs=1, batch_size=64, seed=6, threads=1)
    fresh, seconds = train_single(KW, data, epochs=1, batch_size=64, seed=6, threads=1, fresh_process=True,
                                  timeout=300)
    assert seconds > 0 and models_equal(fresh, ref)[0]
    with pytest.raises(ValueError):
        train_single(KW, data, epochs=0, fresh_process=True)

"""The shipped checkpoints (nplib/checkpoints/): small, described, verified, and they reproduce their numbers."""
import json
import shutil

import pytest
import torch

from nplib import pretrained
from nplib.data import DatasetNotFoundError, load_train_test
from nplib.models import NoPropDT
from nplib.train import evaluate_runs

CLASSIFIERS = [n for n in pretrained.names() if "test_accuracy" in pretrained.manifest(n)]
#: The trainings the course promises to ship (the Colab issue): notebook 04, 05 and 07.
EXPECTED = {"nb04_dt", "nb04_backprop", "nb05_ct", "nb05_fm"}


def test_the_promised_classifier_checkpoints_ship():
    assert EXPECTED <= set(pretrained.names())


def test_checkpoints_are_small():
    sizes = {n: (pretrained.CHECKPOINT_DIR / pretrained.manifest(n)["file"]).stat().st_size
             for n in pretrained.names()}
    assert all(b <= 5_000_000 for b in sizes.values()), sizes
    assert sum(sizes.values()) <= 20_000_000, sizes


@pytest.mark.parametrize("name", pretrained.names())
def test_manifest_describes_how_the_checkpoint_was_made(name):
    m = pretrained.manifest(name)
    for key in ("file", "sha256", "bytes", "config", "command", "hardware", "history"):
        assert m.get(key), f"{name}.json has no {key!r}"
    assert m["command"].startswith("python -m nplib")
    assert len(m["sha256"]) == 64 and m["bytes"] == (pretrained.CHECKPOINT_DIR / m["file"]).stat().st_size


@pytest.mark.parametrize("name", pretrained.names())
def test_shipped_file_matches_its_recorded_sha256(name):
    pretrained.verify(name)


_TEST_SETS: dict = {}


def _test_set(dataset: str):
    """The full test set a checkpoint was trained for (its manifest's build dataset), loaded once."""
    if dataset not in _TEST_SETS:
        try:
            _TEST_SETS[dataset] = load_train_test(dataset, smoke=False)[1]
        except DatasetNotFoundError as err:
            pytest.skip(f"{dataset} is not in the data root: {err}")
    return _TEST_SETS[dataset]


@pytest.mark.slow
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_checkpoint_reproduces_its_recorded_test_accuracy(name):
    """Noise-free accuracy exactly, and the first stochastic run exactly (run r draws with seed
    ``eval_seed + 1000 + r``, so one run checks the chain's noise without repeating all five); the
    recorded mean is the mean of the recorded runs."""
    m = pretrained.manifest(name)
    rec = m["test_accuracy"]
    model = pretrained.build(name)
    got = evaluate_runs(model, _test_set(m["build"]["dataset"]), runs=1, seed=rec["eval_seed"])
    assert got["noise_free"] == rec["noise_free"]
    assert got["runs"][0] == rec["runs"][0], (got, rec)
    assert abs(sum(rec["runs"]) / len(rec["runs"]) - rec["mean"]) < 1e-12


# ------------------------------------------------------------------ bad files give clear errors
@pytest.fixture
def shipped_copy(tmp_path, monkeypatch):
    """A copy of the checkpoint folder that the test may damage."""
    folder = tmp_path / "checkpoints"
    shutil.copytree(pretrained.CHECKPOINT_DIR, folder)
    monkeypatch.setattr(pretrained, "CHECKPOINT_DIR", folder)
    return folder


def _dt_model(**kw):
    torch.manual_seed(0)
    return NoPropDT((1, 28, 28), 10, T=10, **{"block": "small", **kw})


def test_corrupted_checkpoint_is_refused_with_its_file_name(shipped_copy):
    path = shipped_copy / "nb04_dt.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(pretrained.CheckpointError, match=r"nb04_dt\.pt.*corrupted"):
        pretrained.load("nb04_dt", _dt_model())


def test_missing_checkpoint_file_is_refused_with_its_file_name(shipped_copy):
    (shipped_copy / "nb04_dt.pt").unlink()
    with pytest.raises(pretrained.CheckpointError, match=r"nb04_dt\.pt is missing"):
        pretrained.load("nb04_dt", _dt_model())


def test_unknown_checkpoint_name_lists_the_shipped_ones():
    with pytest.raises(pretrained.CheckpointError, match="nb04_dt"):
        pretrained.manifest("no_such_model")


def test_checkpoint_of_another_configuration_is_refused_and_the_difference_named():
    with pytest.raises(pretrained.CheckpointError, match=r"nb04_dt\.pt.*\n.*eta"):
        pretrained.load("nb04_dt", _dt_model(eta=0.5))
    with pytest.raises(pretrained.CheckpointError, match=r"embedding: checkpoint 'onehot', model 'learned'"):
        pretrained.load("nb04_dt", _dt_model(embedding="learned", embed_dim=20))
    with pytest.raises(pretrained.CheckpointError, match=r"block: checkpoint"):
        pretrained.load("nb04_dt", _dt_model(block="paper"))


def test_tampered_weights_with_a_matching_hash_still_fail_to_load_into_another_shape(shipped_copy):
    """A manifest rewritten for a file of other shapes: the state dict does not fit the model."""
    m = json.loads((shipped_copy / "nb05_fm.json").read_text())
    fm_file = shipped_copy / m["file"]
    dt = json.loads((shipped_copy / "nb04_dt.json").read_text())
    dt.update(file=fm_file.name, sha256=pretrained.sha256(fm_file), bytes=fm_file.stat().st_size)
    (shipped_copy / "nb04_dt.json").write_text(json.dumps(dt))
    with pytest.raises(pretrained.CheckpointError, match="does not fit"):
        pretrained.load("nb04_dt", _dt_model())


# ------------------------------------------------------------------ the switch
def test_load_or_train_loads_by_default_and_never_trains(monkeypatch):
    monkeypatch.delenv(pretrained.RETRAIN_ENV, raising=False)
    model = _dt_model()
    history, source = pretrained.load_or_train("nb04_dt", model, lambda: pytest.fail("trained"), smoke=False,
                                               log=None)
    assert source == "checkpoint" and history == pretrained.manifest("nb04_dt")["history"]
    ref = torch.load(pretrained.checkpoint_path("nb04_dt"), weights_only=True)
    assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("value, retrains", [("1", True), ("all", True), ("nb04_dt", True),
                                             ("nb05_ct,nb04_dt", True), ("nb05_ct", False), ("0", False)])
def test_retrain_switch_names_which_models_retrain(monkeypatch, value, retrains):
    monkeypatch.setenv(pretrained.RETRAIN_ENV, value)
    calls = []
    _, source = pretrained.load_or_train("nb04_dt", _dt_model(), lambda: calls.append(1) or [], smoke=False, log=None)
    assert (source == "trained") == retrains and len(calls) == int(retrains)


def test_quick_mode_always_trains(monkeypatch):
    monkeypatch.delenv(pretrained.RETRAIN_ENV, raising=False)
    _, source = pretrained.load_or_train("nb04_dt", _dt_model(), lambda: [], smoke=True, log=None)
    assert source == "trained"

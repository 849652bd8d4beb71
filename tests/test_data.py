"""Data: real MNIST from the data root, clear errors for missing files, batching, quick mode."""
import pytest
import torch

from nplib import data as D


def test_mnist_loads_as_normalised_tensors():
    train = D.load_dataset("mnist", train=True)
    test = D.load_dataset("MNIST", train=False)
    assert train.x.shape == (60000, 1, 28, 28) and train.x.dtype == torch.float32
    assert test.x.shape == (10000, 1, 28, 28) and test.y.dtype == torch.int64
    assert abs(float(train.x.mean())) < 1e-3 and abs(float(train.x.std()) - 1) < 1e-2
    assert train.num_classes == 10 and sorted(set(test.y.tolist())) == list(range(10))


def test_fashionmnist_loads():
    test = D.load_dataset("fashion-mnist", train=False)
    assert test.x.shape == (10000, 1, 28, 28)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
        D.load_dataset("svhn")


def test_missing_files_give_a_clear_error(tmp_path, monkeypatch):
    # no network in the test: make torchvision's download fail the way an offline machine does
    import torchvision.datasets.cifar as C
    import torchvision.datasets.mnist as M
    from urllib.error import URLError

    def offline(*a, **k):
        raise URLError("network is unreachable")

    monkeypatch.setattr(M, "download_and_extract_archive", offline)
    monkeypatch.setattr(C, "download_and_extract_archive", offline)
    with pytest.raises(D.DatasetNotFoundError) as err:
        D.load_dataset("mnist", root=tmp_path)
    msg = str(err.value)
    assert "train-images-idx3-ubyte" in msg and str(tmp_path / "MNIST" / "raw") in msg and "NPLIB_DATA" in msg
    with pytest.raises(D.DatasetNotFoundError, match="cifar-10-batches-py"):
        D.load_dataset("cifar10", root=tmp_path, download=False)


def test_data_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("NPLIB_DATA", str(tmp_path))
    assert D.data_root() == tmp_path.resolve()
    monkeypatch.delenv("NPLIB_DATA")
    assert D.data_root().name == "data"


def test_smoke_switch(monkeypatch):
    monkeypatch.setenv("NPLIB_SMOKE", "1")
    assert D.smoke_mode()
    train, test = D.load_train_test("mnist")
    assert (len(train), len(test)) == D.SMOKE_SIZES
    for off in ("", "0"):
        monkeypatch.setenv("NPLIB_SMOKE", off)
        assert not D.smoke_mode()


def test_loader_batches_and_epoch_determinism():
    data = D.TensorData(torch.arange(10.0).view(10, 1, 1, 1), torch.arange(10))
    loader = D.TensorLoader(data, batch_size=4, seed=5)
    assert len(loader) == 3
    loader.epoch = 1
    e1 = [y.tolist() for _, y in loader]
    loader.epoch = 2
    e2 = [y.tolist() for _, y in loader]
    loader.epoch = 1
    assert [y.tolist() for _, y in loader] == e1 != e2
    assert sorted(sum(e1, [])) == list(range(10))
    with pytest.raises(ValueError, match="batch_size"):
        D.TensorLoader(data, batch_size=0)
    with pytest.raises(ValueError, match="labels"):
        D.TensorData(torch.zeros(3, 1, 1, 1), torch.zeros(2))


@pytest.mark.parametrize("which,n_train,m", [("cifar10", 5 * 8, 10), ("cifar100", 8, 100)])
def test_cifar_loads_from_torchvision_format_files(tmp_path, monkeypatch, which, n_train, m):
    D.write_synthetic_cifar(tmp_path, which, per_file=8, seed=3)
    train = D.load_dataset(which, train=True, root=tmp_path, download=False)
    test = D.load_dataset(which, train=False, root=tmp_path, download=False)
    assert train.x.shape == (n_train, 3, 32, 32) and test.x.shape == (8, 3, 32, 32)
    assert train.num_classes == m and len(train.classes) == m and train.y.dtype == torch.int64
    # the files are torchvision's real format: its own reader (md5 check off) sees the same pixels and labels
    import torchvision.datasets as tvd
    import torchvision.datasets.cifar as C
    cls = tvd.CIFAR10 if which == "cifar10" else tvd.CIFAR100
    monkeypatch.setattr(C, "check_integrity", lambda *a, **k: True)
    ref = cls(str(tmp_path), train=True, download=False)
    assert ref.targets == train.y.tolist() and ref.classes == list(train.classes)
    _, _, _, mean, std = D.DATASETS[which]
    pixel = torch.as_tensor(ref.data[3, 5, 7, :], dtype=torch.float32) / 255   # image 3, row 5, column 7 (HWC)
    expected = (pixel - torch.tensor(mean)) / torch.tensor(std)
    assert torch.allclose(train.x[3, :, 5, 7], expected, atol=1e-6)


@pytest.mark.parametrize("which,gone,folder", [("cifar10", "data_batch_3", "cifar-10-batches-py"),
                                               ("cifar100", "meta", "cifar-100-python")])
def test_missing_cifar_file_is_named(tmp_path, monkeypatch, which, gone, folder):
    D.write_synthetic_cifar(tmp_path, which, per_file=4)
    (tmp_path / folder / gone).unlink()
    monkeypatch.setenv("NPLIB_NO_DOWNLOAD", "1")
    with pytest.raises(D.DatasetNotFoundError) as err:
        D.load_dataset(which, train=True, root=tmp_path)
    msg = str(err.value)
    assert f"{folder}/{gone}" in msg and str(tmp_path) in msg and "NPLIB_NO_DOWNLOAD" in msg
    others = [f for f in ("data_batch_1", "train") if f != gone]
    assert not any(f"{folder}/{f}," in msg for f in others)


def test_corrupt_cifar_file_gives_a_clear_error(tmp_path):
    D.write_synthetic_cifar(tmp_path, "cifar100", per_file=4)
    (tmp_path / "cifar-100-python" / "test").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="cifar-100-python/test is not a CIFAR batch file"):
        D.load_dataset("cifar100", train=False, root=tmp_path, download=False)

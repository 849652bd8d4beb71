"""Datasets as in-memory tensors, the data root, and the quick ("smoke") mode switch.

Introduced in notebooks/01_forward_diffusion_on_label_embeddings (setup cell) and used by every
notebook and by ``python -m nplib``.

* The data root is ``$NPLIB_DATA`` when set, else the repository's ``data/`` folder (or ``./data``
  when nplib is installed outside a checkout, as on Colab). Datasets download there on first use
  through ``torchvision.datasets`` in its usual layout (``<root>/MNIST/raw/...``).
* Images are decoded ONCE into a float tensor (normalised with the training set's per-channel mean
  and standard deviation); :class:`TensorLoader` then serves shuffled minibatches by indexing, with
  no per-item PIL decoding.
* ``NPLIB_NO_DOWNLOAD=1`` never downloads (offline machines): a missing dataset fails at once.
* Quick mode: ``NPLIB_SMOKE=1`` (the test suite sets it) shrinks datasets and epochs so that every
  notebook and command runs in seconds. :func:`smoke_mode` reads it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["DATASETS", "DatasetNotFoundError", "file_digest", "TensorData", "TensorLoader", "data_root", "smoke_mode",
           "load_dataset", "load_train_test", "SMOKE_SIZES", "CIFAR_FILES", "write_synthetic_cifar", "runs_dir", "shown_path"]

#: name -> (torchvision class name, image shape, classes, per-channel mean, per-channel std)
DATASETS = {
    "mnist": ("MNIST", (1, 28, 28), 10, (0.1307,), (0.3081,)),
    "fashionmnist": ("FashionMNIST", (1, 28, 28), 10, (0.2860,), (0.3530,)),
    "cifar10": ("CIFAR10", (3, 32, 32), 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ("CIFAR100", (3, 32, 32), 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}

#: Sizes used in quick mode: (training images, test images).
SMOKE_SIZES = (2000, 500)

_REPO_ROOT = Path(__file__).resolve().parent.parent


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks (md5 for the ETT files, sha256 for checkpoints)."""
    import hashlib

    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are not under the data root and could not be downloaded."""


def smoke_mode() -> bool:
    """True when the environment variable ``NPLIB_SMOKE`` is set to anything but '' or '0'."""
    return os.environ.get("NPLIB_SMOKE", "").strip() not in ("", "0", "false", "False")


def data_root() -> Path:
    """``$NPLIB_DATA``, else the repository's ``data/`` folder, else ``./data``."""
    env = os.environ.get("NPLIB_DATA")
    if env:
        return Path(env).expanduser().resolve()
    if (_REPO_ROOT / "pyproject.toml").exists() and (_REPO_ROOT / "nplib").is_dir():
        return _REPO_ROOT / "data"
    return Path.cwd() / "data"


@dataclass
class TensorData:
    """Images ``x`` (N, C, H, W) float32, normalised, and labels ``y`` (N,) int64."""

    x: torch.Tensor
    y: torch.Tensor
    name: str = ""
    classes: tuple[str, ...] = ()

    def __post_init__(self):
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"{self.x.shape[0]} images but {self.y.shape[0]} labels")

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.classes else int(self.y.max()) + 1

    def subset(self, n: int, seed: int = 0) -> "TensorData":
        """A random subset of ``n`` examples (fixed by ``seed``); the whole set if n >= len."""
        if n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        return TensorData(self.x[idx], self.y[idx], self.name, self.classes)


class TensorLoader:
    """Minibatches of a :class:`TensorData`, reshuffled each epoch by a seeded generator.

    The order of epoch ``e`` depends only on ``(seed, e)``, so a resumed run sees exactly the
    batches an uninterrupted run would have seen.
    """

    def __init__(self, data: TensorData, batch_size: int = 128, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.data, self.batch_size, self.shuffle, self.seed, self.drop_last = data, batch_size, shuffle, seed, drop_last
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.data)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield self.data.x[idx], self.data.y[idx]


#: torchvision's on-disk CIFAR layout: folder, training files, test files, meta file, label key, names key
CIFAR_FILES = {
    "CIFAR10": ("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
                "batches.meta", "labels", "label_names"),
    "CIFAR100": ("cifar-100-python", ("train",), ("test",), "meta", "fine_labels", "fine_label_names"),
}


def _missing_message(name: str, cls_name: str, root: Path, reason: str, missing: list[str] | None = None) -> str:
    if cls_name in ("MNIST", "FashionMNIST"):
        files = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"]
        where = root / cls_name / "raw"
        what = ", ".join(files) + " (or the same names with .gz)"
    else:
        base, train_files, test_files, meta, _, _ = CIFAR_FILES[cls_name]
        archive = "cifar-10-python.tar.gz" if cls_name == "CIFAR10" else "cifar-100-python.tar.gz"
        where = root
        names = missing or [f"{base}/{f}" for f in (*train_files, *test_files, meta)]
        what = f"the folder {base}/ (unpacked from {archive}; missing: {', '.join(names)})"
    return (f"dataset {name!r} was not found under the data root {root} and could not be downloaded "
            f"({reason}). Put {what} in {where}, or point NPLIB_DATA at a folder that holds them.")


def _cifar_missing(cls_name: str, root: Path, train: bool) -> list[str]:
    base, train_files, test_files, meta, _, _ = CIFAR_FILES[cls_name]
    wanted = (*(train_files if train else test_files), meta)
    return [f"{base}/{f}" for f in wanted if not (root / base / f).is_file()]


def _read_cifar(cls_name: str, root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Read torchvision's CIFAR pickles directly: uint8 images (N, 32, 32, 3), labels, class names.

    The files are the ones ``torchvision.datasets.CIFAR10/100`` reads (``data``: N x 3072 uint8 rows,
    channel-major; labels under ``labels`` or ``fine_labels``). Unlike torchvision we do not check
    their md5 sums, so a copy re-packed elsewhere (or a test's small synthetic file) loads as well.
    """
    import pickle

    import numpy as np

    base, train_files, test_files, meta, label_key, names_key = CIFAR_FILES[cls_name]
    data, labels = [], []
    for f in (train_files if train else test_files):
        path = root / base / f
        try:
            with open(path, "rb") as fh:
                entry = pickle.load(fh, encoding="latin1")
            arr = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            lab = list(entry[label_key])
        except (OSError, pickle.UnpicklingError, EOFError, KeyError, ValueError) as err:
            raise ValueError(f"{path} is not a CIFAR batch file in torchvision's format "
                             f"({type(err).__name__}: {err})") from None
        if len(lab) != arr.shape[0]:
            raise ValueError(f"{path}: {arr.shape[0]} images but {len(lab)} labels")
        data.append(arr)
        labels.extend(lab)
    try:
        with open(root / base / meta, "rb") as fh:
            classes = tuple(pickle.load(fh, encoding="latin1")[names_key])
    except (OSError, pickle.UnpicklingError, EOFError, KeyError) as err:
        raise ValueError(f"{root / base / meta} is not a CIFAR meta file ({type(err).__name__}: {err})") from None
    x = torch.from_numpy(np.concatenate(data).transpose(0, 2, 3, 1).copy())   # (N, H, W, C), as torchvision
    return x, torch.as_tensor(labels, dtype=torch.long), classes


def load_dataset(name: str, train: bool = True, root: str | Path | None = None,
                 download: bool = True) -> TensorData:
    """Load a whole split of ``name`` ('mnist', 'fashionmnist', 'cifar10', 'cifar100') into memory.

    Introduced in notebooks/01_forward_diffusion_on_label_embeddings, section 0 (setup).
    Downloads into the data root on first use; when the files are missing and the download fails,
    raises :class:`DatasetNotFoundError` naming the files and where to put them. CIFAR files are
    read directly from torchvision's layout (``cifar-10-batches-py/data_batch_1..5, test_batch,
    batches.meta``; ``cifar-100-python/train, test, meta``); torchvision only downloads them.
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    import torchvision.datasets as tvd

    cls_name, shape, _, mean, std = DATASETS[key]
    cls = getattr(tvd, cls_name)
    root = Path(root) if root is not None else data_root()
    no_download = os.environ.get("NPLIB_NO_DOWNLOAD", "").strip() not in ("", "0")
    why = "downloads are disabled by NPLIB_NO_DOWNLOAD" if no_download else "download=False"
    if cls_name in CIFAR_FILES:
        missing = _cifar_missing(cls_name, root, train)
        if missing:
            if not download or no_download:
                raise DatasetNotFoundError(_missing_message(key, cls_name, root, why, missing))
            try:
                root.mkdir(parents=True, exist_ok=True)
                cls(str(root), train=train, download=True)
            except Exception as err:  # no network, a read-only root, a checksum failure...
                raise DatasetNotFoundError(_missing_message(key, cls_name, root, f"{type(err).__name__}: {err}",
                                                            missing)) from None
        data, targets, classes = _read_cifar(cls_name, root, train)
    else:
        try:
            ds = cls(str(root), train=train, download=False)
        except RuntimeError:
            if not download or no_download:
                raise DatasetNotFoundError(_missing_message(key, cls_name, root, why)) from None
            try:
                root.mkdir(parents=True, exist_ok=True)
                ds = cls(str(root), train=train, download=True)
            except Exception as err:  # no network, a read-only root, a checksum failure...
                raise DatasetNotFoundError(_missing_message(key, cls_name, root, f"{type(err).__name__}: {err}")) from None
        data, targets, classes = ds.data, ds.targets, tuple(getattr(ds, "classes", ()))
    x = torch.as_tensor(data) if not isinstance(data, torch.Tensor) else data
    x = x.float().div_(255.0)
    if x.ndim == 3:           # MNIST-like: (N, H, W)
        x = x.unsqueeze(1)
    else:                     # CIFAR: (N, H, W, C)
        x = x.permute(0, 3, 1, 2).contiguous()
    if tuple(x.shape[1:]) != shape:
        raise ValueError(f"dataset {key!r} under {root} has images of shape {tuple(x.shape[1:])}, expected {shape}")
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    # x = (x - mean_c) / std_c      (the training set's per-channel statistics)
    x = (x - m) / s
    y = torch.as_tensor(targets, dtype=torch.long)
    return TensorData(x, y, key, tuple(str(c) for c in classes))


def load_train_test(name: str, root: str | Path | None = None, download: bool = True,
                    smoke: bool | None = None, train_size: int | None = None,
                    test_size: int | None = None) -> tuple[TensorData, TensorData]:
    """Training and test splits of ``name``; quick mode keeps ``SMOKE_SIZES`` random examples.

    Introduced in notebooks/01_forward_diffusion_on_label_embeddings, section 0 (setup).
    """
    smoke = smoke_mode() if smoke is None else smoke
    train = load_dataset(name, True, root, download)
    test = load_dataset(name, False, root, download)
    if smoke:
        train_size = min(train_size or SMOKE_SIZES[0], SMOKE_SIZES[0])
        test_size = min(test_size or SMOKE_SIZES[1], SMOKE_SIZES[1])
    if train_size:
        train = train.subset(train_size, seed=0)
    if test_size:
        test = test.subset(test_size, seed=1)
    return train, test


def write_synthetic_cifar(root: str | Path, which: str = "cifar10", per_file: int = 20, seed: int = 0) -> Path:
    """Write small random CIFAR files in torchvision's real on-disk format under ``root``.

    Introduced for the tests and quick-mode runs of ``python -m nplib reproduce`` on machines
    without CIFAR (README.md, "Reproducing the paper"). ``per_file`` images per batch file
    (CIFAR-10: 5 training batches and one test batch; CIFAR-100: one ``train`` and one ``test``),
    random pixels, labels cycling over the classes. Returns the dataset folder.
    """
    import pickle

    import numpy as np

    key = which.lower().replace("-", "").replace("_", "")
    if key not in ("cifar10", "cifar100"):
        raise ValueError(f"which must be 'cifar10' or 'cifar100', got {which!r}")
    cls_name, _, m, _, _ = DATASETS[key]
    base, train_files, test_files, meta, label_key, names_key = CIFAR_FILES[cls_name]
    folder = Path(root) / base
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, f in enumerate((*train_files, *test_files)):
        entry = {"batch_label": f, "data": rng.integers(0, 256, (per_file, 3072), dtype=np.uint8),
                 label_key: [int(k) % m for k in range(i, i + per_file)], "filenames": [f"{f}_{k}.png" for k in range(per_file)]}
        if key == "cifar100":
            entry["coarse_labels"] = [k % 20 for k in entry[label_key]]
        with open(folder / f, "wb") as fh:
            pickle.dump(entry, fh)
    names = {names_key: [f"class{k}" for k in range(m)]}
    if key == "cifar100":
        names["coarse_label_names"] = [f"super{k}" for k in range(20)]
    with open(folder / meta, "wb") as fh:
        pickle.dump(names, fh)
    return folder


def shown_path(path: Path, env: str | None = None) -> str:
    """A path as a notebook prints it, without the machine's folder names (outputs are committed).

    Relative to the working directory when below its parent (``../runs`` from notebooks/), else
    ``$ENV`` when the environment variable ``env`` chose it, else ``~/...`` below the home folder,
    else the folder's name only (``.../data``).
    """
    path = Path(path).resolve()
    here = Path.cwd().resolve()
    for base, prefix in ((here, ""), (here.parent, "../")):
        try:
            rel = path.relative_to(base).as_posix()
        except ValueError:
            continue
        return (prefix + rel) if rel != "." else (prefix.rstrip("/") or ".")
    if env and os.environ.get(env) and Path(os.environ[env]).expanduser().resolve() == path:
        return f"${env}"
    try:
        return "~/" + path.relative_to(Path.home().resolve()).as_posix()
    except (ValueError, RuntimeError):
        return f".../{path.name}"


def runs_dir() -> Path:
    """Where notebooks keep checkpoints and result files: ``$NPLIB_RUNS`` or ``<repo>/runs``."""
    env = os.environ.get("NPLIB_RUNS")
    if env:
        return Path(env).expanduser().resolve()
    repo = Path(__file__).resolve().parent.parent
    if (repo / "pyproject.toml").exists() and (repo / "nplib").is_dir():
        return repo / "runs"
    return Path.cwd() / "runs"

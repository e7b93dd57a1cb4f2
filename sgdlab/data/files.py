"""Readers for image datasets stored on disk (never downloaded): CIFAR-10/100 in the standard
python-pickle format, Tiny ImageNet in its standard folder layout; and a writer of tiny
synthetic datasets in the real CIFAR format (to exercise the reader without the real files).

A missing, truncated or malformed file raises :class:`~sgdlab.core.errors.DataError` naming the files
that were expected.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sgdlab.core._torch import torch
from sgdlab.core.errors import ConfigError, DataError
from sgdlab.data.image_dataset import ImageDataset

__all__ = ["CIFAR_SPECS", "load_cifar10", "load_cifar100", "load_tiny_imagenet", "write_synthetic_cifar"]

# CIFAR images are 3 x 32 x 32, stored as one row of 3072 bytes (R plane, G plane, B plane).
CIFAR_SHAPE = (3, 32, 32)
CIFAR_ROW = int(np.prod(CIFAR_SHAPE))
# CIFAR-100's 20 superclasses.
CIFAR100_COARSE = 20
CIFAR10_TRAIN_BATCHES = 5


@dataclass(frozen=True)
class CifarSpec:
    """Where one CIFAR variant keeps its files, and which pickle keys hold what."""

    name: str
    archive: str          # the file the official site distributes
    folder: str           # the folder the archive unpacks to
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    num_classes: int

    def expected(self) -> str:
        files = ", ".join(self.train + self.test)
        return f"the archive {self.archive!r} or a folder {self.folder!r} containing {files}"


CIFAR_SPECS = {
    "cifar10": CifarSpec("cifar10", "cifar-10-python.tar.gz", "cifar-10-batches-py",
                         tuple(f"data_batch_{i}" for i in range(1, CIFAR10_TRAIN_BATCHES + 1)),
                         ("test_batch",), "batches.meta", 10),
    "cifar100": CifarSpec("cifar100", "cifar-100-python.tar.gz", "cifar-100-python", ("train",), ("test",),
                          "meta", 100),
}
LABEL_KEYS = {"cifar10": {"fine": "labels"}, "cifar100": {"fine": "fine_labels", "coarse": "coarse_labels"}}
NAME_KEYS = {"labels": "label_names", "fine_labels": "fine_label_names", "coarse_labels": "coarse_label_names"}


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles plain containers and NumPy arrays only: a data file must not run code."""

    _ALLOWED = frozenset({("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
                          ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")})

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if name == "_reconstruct":  # numpy 1 and 2 name the module differently
            return np.ndarray.__reduce__(np.zeros(0))[0]
        return getattr(np, name) if module == "numpy" else super().find_class(module, name)


def _unpickle(raw: bytes, where: str, spec: CifarSpec) -> dict:
    try:
        # encoding="bytes": the official files were written by Python 2.
        obj = _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # truncated or foreign data fails in many ways; all mean "corrupt"  # noqa: BLE001
        raise DataError(f"{where} is truncated or not a CIFAR pickle ({type(e).__name__}: {e}); "
                        f"expected {spec.expected()}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where} holds a {type(obj).__name__}, not a CIFAR batch dict; "
                        f"expected {spec.expected()}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


class _CifarFiles:
    """Reads member files from the archive or the extracted folder at ``path``."""

    def __init__(self, path: Path, spec: CifarSpec):
        self.spec = spec
        self.folder: Path | None = None
        self.archive: Path | None = None
        if not path.exists():
            raise DataError(f"{spec.name} path {str(path)!r} does not exist; expected {spec.expected()} "
                            "(sgdlab never downloads data)")
        if path.is_file():
            self.archive = path
        elif path.name == spec.folder or any((path / f).is_file() for f in spec.train + spec.test):
            self.folder = path  # the extracted folder itself; a missing member is named by read()
        elif (path / spec.folder).is_dir():
            self.folder = path / spec.folder
        elif (path / spec.archive).is_file():
            self.archive = path / spec.archive
        else:
            raise DataError(f"no {spec.name} data under {str(path)!r}; expected {spec.expected()}")
        self._members: dict[str, bytes] = {}
        if self.archive is not None:
            self._read_archive()

    def _read_archive(self) -> None:
        wanted = {f"{self.spec.folder}/{f}": f for f in self.spec.train + self.spec.test + (self.spec.meta,)}
        try:
            # Name the compression when the suffix does: "r:*" would report every codec it tried.
            mode = "r:gz" if self.archive.name.endswith(("gz", ".tgz")) else "r:*"
            with tarfile.open(self.archive, mode) as tar:
                for member in tar:
                    key = wanted.get(member.name.lstrip("./"))
                    if key is not None and member.isfile():
                        self._members[key] = tar.extractfile(member).read()
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise DataError(f"{str(self.archive)!r} is not a readable {self.spec.archive} archive "
                            f"({type(e).__name__}: {e}); expected {self.spec.expected()}") from None

    def read(self, name: str, required: bool = True) -> bytes | None:
        if self.folder is not None:
            p = self.folder / name
            if p.is_file():
                return p.read_bytes()
            where = str(self.folder)
        else:
            if name in self._members:
                return self._members[name]
            where = f"{self.archive} (inside {self.spec.folder}/)"
        if required:
            raise DataError(f"{self.spec.name}: file {name!r} missing in {where}; expected {self.spec.expected()}")
        return None

    def where(self, name: str) -> str:
        return str(self.folder / name) if self.folder is not None else f"{self.archive}:{self.spec.folder}/{name}"


def _read_batch(files: _CifarFiles, name: str, label_key: str, num_classes: int):
    where = files.where(name)
    d = _unpickle(files.read(name), where, files.spec)
    if "data" not in d or label_key not in d:
        raise DataError(f"{where} lacks key 'data' or {label_key!r} (has {sorted(d)}); "
                        f"expected {files.spec.expected()}")
    data = d["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_ROW:
        got = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{where}: 'data' must be a uint8 array of shape (N, {CIFAR_ROW}), got {got}")
    labels = np.asarray(d[label_key])
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: {label_key!r} must hold {len(data)} integers, got shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{where}: labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")
    x = torch.from_numpy(data.reshape(len(data), *CIFAR_SHAPE).copy())
    return x, torch.from_numpy(labels.astype(np.int64))


def _load_cifar(path, spec: CifarSpec, label_mode: str) -> ImageDataset:
    keys = LABEL_KEYS[spec.name]
    if label_mode not in keys:
        raise ConfigError(f"unknown label_mode {label_mode!r} for {spec.name}; allowed: {', '.join(keys)}")
    label_key = keys[label_mode]
    num_classes = CIFAR100_COARSE if label_mode == "coarse" else spec.num_classes
    files = _CifarFiles(Path(path), spec)
    splits = []
    for names in (spec.train, spec.test):
        parts = [_read_batch(files, n, label_key, num_classes) for n in names]
        splits += [torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])]
    class_names: tuple[str, ...] = ()
    meta = files.read(spec.meta, required=False)
    if meta is not None:  # the class names are a nicety: a missing meta file is not an error
        names = _unpickle(meta, files.where(spec.meta), spec).get(NAME_KEYS[label_key], [])
        names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
        class_names = names if len(names) == num_classes else ()
    name = spec.name if label_mode == "fine" else f"{spec.name}-coarse"
    return ImageDataset(*splits, num_classes=num_classes, name=name, class_names=class_names)


def load_cifar10(path: str | Path) -> ImageDataset:
    """CIFAR-10 from ``cifar-10-python.tar.gz``, the ``cifar-10-batches-py`` folder, or a
    folder holding either. Images ``(N, 3, 32, 32)`` uint8 (50000 train, 10000 test)."""
    return _load_cifar(path, CIFAR_SPECS["cifar10"], "fine")


def load_cifar100(path: str | Path, label_mode: str = "fine") -> ImageDataset:
    """CIFAR-100 from ``cifar-100-python.tar.gz``, the ``cifar-100-python`` folder, or a folder
    holding either; ``label_mode`` "fine" (100 classes) or "coarse" (20 superclasses)."""
    return _load_cifar(path, CIFAR_SPECS["cifar100"], label_mode)


def _pickle_to(path: Path, obj: dict) -> None:
    # Protocol 2 and bytes keys, like the official Python-2-written files.
    path.write_bytes(pickle.dumps({k.encode(): v for k, v in obj.items()}, protocol=2))


def _label_fields(y: np.ndarray, num_classes: int) -> dict:
    if num_classes == 10:
        return {"labels": y.tolist()}
    # Synthetic superclasses: fine label mod 20 (the real mapping groups 5 related classes).
    return {"fine_labels": y.tolist(), "coarse_labels": (y % CIFAR100_COARSE).tolist()}


def _write_cifar_folder(folder: Path, spec: CifarSpec, n_train: int, n_test: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, size=(spec.num_classes, 3, 1))
    noise_scale = 40.0  # pixel std around the class colour: classes overlap but stay separable

    def make(n: int):
        y = rng.integers(0, spec.num_classes, size=n)
        x = colours[y] + noise_scale * rng.standard_normal((n, 3, CIFAR_ROW // 3))
        return np.clip(x, 0, 255).astype(np.uint8).reshape(n, CIFAR_ROW), y

    folder.mkdir(parents=True, exist_ok=True)
    x, y = make(n_train)
    for i, (name, part) in enumerate(zip(spec.train, np.array_split(np.arange(n_train), len(spec.train)))):
        _pickle_to(folder / name, {"batch_label": f"training batch {i + 1} of {len(spec.train)}".encode(),
                                   "data": x[part], "filenames": [f"img{j}.png".encode() for j in part],
                                   **_label_fields(y[part], spec.num_classes)})
    x, y = make(n_test)
    _pickle_to(folder / spec.test[0], {"batch_label": b"testing batch 1 of 1", "data": x,
                                       **_label_fields(y, spec.num_classes)})
    if spec.num_classes == 10:
        meta = {"label_names": [f"class{c}".encode() for c in range(10)]}
    else:
        meta = {"fine_label_names": [f"fine{c}".encode() for c in range(spec.num_classes)],
                "coarse_label_names": [f"coarse{c}".encode() for c in range(CIFAR100_COARSE)]}
    _pickle_to(folder / spec.meta, meta)


def write_synthetic_cifar(root: str | Path, num_classes: int = 10, n_train: int = 50, n_test: int = 20,
                          seed: int = 0, archive: bool = False) -> Path:
    """Write a tiny dataset in the real CIFAR-10 (``num_classes=10``) or CIFAR-100 (100) format.

    Each class gets its own mean colour plus noise, so the data is learnable. Creates
    ``root/cifar-10-batches-py/`` (``data_batch_1..5``, ``test_batch``, ``batches.meta``) or
    ``root/cifar-100-python/`` (``train``, ``test``, ``meta``), or with ``archive=True`` only the
    matching ``root/cifar-10-python.tar.gz`` / ``root/cifar-100-python.tar.gz``.
    Returns the folder or archive path. Same ``seed``, same bytes of data.
    """
    if num_classes not in (10, 100):
        raise ConfigError(f"num_classes must be 10 or 100 (the CIFAR formats), got {num_classes}")
    if n_train < CIFAR10_TRAIN_BATCHES or n_test < 1:
        raise ConfigError(f"need n_train >= {CIFAR10_TRAIN_BATCHES} and n_test >= 1, got {n_train}, {n_test}")
    spec = CIFAR_SPECS["cifar10" if num_classes == 10 else "cifar100"]
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if not archive:
        _write_cifar_folder(root / spec.folder, spec, n_train, n_test, seed)
        return root / spec.folder
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        _write_cifar_folder(Path(tmp) / spec.folder, spec, n_train, n_test, seed)
        with tarfile.open(root / spec.archive, "w:gz") as tar:
            tar.add(Path(tmp) / spec.folder, arcname=spec.folder)
    return root / spec.archive


# Tiny ImageNet: 200 classes of 64x64 RGB JPEGs, 500 train and 50 val images per class.
TINY_FOLDER = "tiny-imagenet-200"
TINY_SIDE = 64
TINY_CACHE_VERSION = 1  # bump when the cached arrays change meaning
TINY_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def _tiny_root(path: Path) -> Path:
    expected = (f"a folder {TINY_FOLDER!r} (or its parent) with wnids.txt, train/<wnid>/images/*.JPEG, "
                "val/images/*.JPEG and val/val_annotations.txt")
    if not path.exists():
        raise DataError(f"Tiny ImageNet path {str(path)!r} does not exist; expected {expected} "
                        "(sgdlab never downloads data)")
    for root in (path, path / TINY_FOLDER):
        if (root / "wnids.txt").is_file():
            break
    else:
        zipped = path.suffix == ".zip" or (path / f"{TINY_FOLDER}.zip").exists()
        hint = f" (unzip {TINY_FOLDER}.zip first)" if zipped else ""
        raise DataError(f"no Tiny ImageNet data under {str(path)!r}{hint}; expected {expected}")
    for needed in ("train", "val/images", "val/val_annotations.txt"):
        if not (root / needed).exists():
            raise DataError(f"Tiny ImageNet folder {str(root)!r} lacks {needed!r}; expected {expected}")
    return root


def _decode(files: list[Path]) -> np.ndarray:
    """JPEG files -> uint8 ``(N, 3, 64, 64)``. PIL decodes ~2-5k images/s per core, so the full
    110k-image set takes on the order of a minute: pass ``cache=`` to pay it once."""
    from PIL import Image, UnidentifiedImageError

    out = np.empty((len(files), TINY_SIDE, TINY_SIDE, 3), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                a = np.asarray(im.convert("RGB"))  # a few Tiny ImageNet JPEGs are greyscale
        except (OSError, UnidentifiedImageError) as e:
            raise DataError(f"cannot decode image {str(f)!r}: {e}") from None
        if a.shape != (TINY_SIDE, TINY_SIDE, 3):
            raise DataError(f"image {str(f)!r} is {a.shape[1]}x{a.shape[0]}, expected {TINY_SIDE}x{TINY_SIDE}")
        out[i] = a
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def _tiny_dataset(arrays: dict, wnids: list[str]) -> ImageDataset:
    return ImageDataset(*(torch.from_numpy(arrays[k]) for k in TINY_ARRAYS), num_classes=len(wnids),
                        name="tiny-imagenet", class_names=tuple(wnids))


def load_tiny_imagenet(path: str | Path, cache: str | Path | None = None,
                       max_per_class: int | None = None) -> ImageDataset:
    """Tiny ImageNet from its standard folder layout; the labelled ``val`` split is the test split.

    Images ``(N, 3, 64, 64)`` uint8, 200 classes in ``wnids.txt`` order. Decoding all JPEGs costs
    about a minute; with ``cache`` (an ``.npz`` path) the decoded arrays are saved there and
    reused when the path and ``max_per_class`` match. ``max_per_class`` keeps the first
    (sorted by file name) train images of each class, for quick runs.
    """
    if max_per_class is not None and (isinstance(max_per_class, bool) or int(max_per_class) < 1):
        raise ConfigError(f"max_per_class must be a positive integer or None, got {max_per_class!r}")
    root = _tiny_root(Path(path))
    key = f"v{TINY_CACHE_VERSION}|{root.resolve()}|{max_per_class}"
    if cache is not None and Path(cache).is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                if str(z["key"]) == key:
                    return _tiny_dataset({k: z[k] for k in TINY_ARRAYS}, [str(s) for s in z["class_names"]])
        except (OSError, KeyError, ValueError, zlib.error) as e:
            raise DataError(f"Tiny ImageNet cache {str(cache)!r} is corrupt ({e}); delete it to rebuild") from None
    wnids = [w.strip() for w in (root / "wnids.txt").read_text().split() if w.strip()]
    index = {w: i for i, w in enumerate(wnids)}
    train_files, train_labels = [], []
    for w in wnids:
        files = sorted((root / "train" / w / "images").glob("*.JPEG"))
        if not files:
            raise DataError(f"Tiny ImageNet class {w!r} has no images in {str(root / 'train' / w / 'images')!r}")
        files = files[:max_per_class]
        train_files += files
        train_labels += [index[w]] * len(files)
    val_files, val_labels = [], []
    for n, line in enumerate((root / "val" / "val_annotations.txt").read_text().splitlines(), 1):
        fields = line.split("\t")
        if not line.strip():
            continue
        if len(fields) < 2 or fields[1] not in index:
            raise DataError(f"{root / 'val' / 'val_annotations.txt'} line {n}: expected 'file<TAB>wnid...' "
                            f"with a wnid from wnids.txt, got {line[:80]!r}")
        val_files.append(root / "val" / "images" / fields[0])
        val_labels.append(index[fields[1]])
    arrays = {"x_train": _decode(train_files), "y_train": np.asarray(train_labels, dtype=np.int64),
              "x_test": _decode(val_files), "y_test": np.asarray(val_labels, dtype=np.int64)}
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, key=key, class_names=np.asarray(wnids), **arrays)
    return _tiny_dataset(arrays, wnids)

"""Data readers (CIFAR pickle format, Tiny ImageNet layout, offline datasets) and augmentation."""

import pickle
import sys
import tarfile

import numpy as np
import pytest
import torch

from sgdlab.core.errors import ConfigError, DataError
from sgdlab.data.augment import (
    NO_AUGMENTATION,
    Augmentation,
    BatchIterator,
    random_crop_flip,
)
from sgdlab.data.files import (
    load_cifar10,
    load_cifar100,
    load_tiny_imagenet,
    write_synthetic_cifar,
)
from sgdlab.data.images import (
    ImageDataset,
    load_digits,
    load_image_dataset,
    load_mnist1d,
)

pytestmark = pytest.mark.study("deep_nets")

CIFAR10_FILES = ["data_batch_1", "data_batch_5", "test_batch", "cifar-10-python.tar.gz"]


# ----------------------------------------------------------------------------- CIFAR reader
@pytest.mark.parametrize("num_classes", [10, 100])
def test_cifar_reader_folder_and_archive_agree(tmp_path, num_classes):
    folder = write_synthetic_cifar(tmp_path / "f", num_classes, n_train=23, n_test=7, seed=1)
    archive = write_synthetic_cifar(tmp_path / "a", num_classes, n_train=23, n_test=7, seed=1, archive=True)
    assert archive.name.endswith(".tar.gz") and archive.is_file()
    load = load_cifar10 if num_classes == 10 else load_cifar100
    results = [load(p) for p in (folder, folder.parent, archive, archive.parent)]
    for ds in results:
        assert ds.x_train.shape == (23, 3, 32, 32) and ds.x_train.dtype == torch.uint8
        assert ds.x_test.shape == (7, 3, 32, 32) and ds.y_train.dtype == torch.int64
        assert ds.num_classes == num_classes and len(ds.class_names) == num_classes
        for k in ("x_train", "y_train", "x_test", "y_test"):
            assert torch.equal(getattr(ds, k), getattr(results[0], k))
    via_registry = load_image_dataset(f"cifar{num_classes}", archive)
    assert torch.equal(via_registry.x_test, results[0].x_test)


def test_cifar_pixel_layout_matches_raw_pickle(tmp_path):
    folder = write_synthetic_cifar(tmp_path, 10, n_train=10, n_test=3)
    raw = pickle.loads((folder / "test_batch").read_bytes(), encoding="bytes")
    ds = load_cifar10(folder)
    data = raw[b"data"]  # rows of R plane (1024), G plane, B plane, each 32x32 row-major
    for c, i, j in [(0, 0, 0), (1, 5, 7), (2, 31, 30)]:
        assert ds.x_test[2, c, i, j].item() == data[2, c * 1024 + i * 32 + j]
    assert ds.y_test.tolist() == list(raw[b"labels"])
    assert ds.inputs("test").dtype == torch.float32 and ds.inputs("test").max() <= 1.0


def test_cifar_reader_accepts_numpy1_pickles(tmp_path):
    # The official files name numpy's reconstructor under its numpy-1 module path.
    folder = write_synthetic_cifar(tmp_path, 10, n_train=10, n_test=3)
    for f in folder.iterdir():
        f.write_bytes(f.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert load_cifar10(folder).x_train.shape == (10, 3, 32, 32)


def test_cifar100_coarse_labels(tmp_path):
    folder = write_synthetic_cifar(tmp_path, 100, n_train=10, n_test=3)
    fine, coarse = load_cifar100(folder), load_cifar100(folder, label_mode="coarse")
    assert coarse.num_classes == 20 and torch.equal(coarse.y_train, fine.y_train % 20)
    with pytest.raises(ConfigError, match="coarse"):
        load_cifar100(folder, label_mode="superclass")


def test_missing_path_names_expected_files(tmp_path):
    with pytest.raises(DataError) as e:
        load_cifar10(tmp_path / "nowhere")
    for f in CIFAR10_FILES:
        assert f in str(e.value)
    with pytest.raises(DataError) as e:
        load_cifar100(tmp_path)  # exists but holds nothing
    assert "cifar-100-python.tar.gz" in str(e.value) and "train" in str(e.value)


def test_missing_batch_file(tmp_path):
    folder = write_synthetic_cifar(tmp_path, 10, n_train=10, n_test=3)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        load_cifar10(folder)


def test_truncated_pickle(tmp_path):
    folder = write_synthetic_cifar(tmp_path, 10, n_train=10, n_test=3)
    raw = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="test_batch.*truncated"):
        load_cifar10(folder)


def test_wrong_shapes(tmp_path):
    folder = write_synthetic_cifar(tmp_path, 10, n_train=10, n_test=3)
    bad = {b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]}
    (folder / "test_batch").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DataError, match=r"test_batch.*\(N, 3072\)"):
        load_cifar10(folder)
    bad = {b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1]}
    (folder / "test_batch").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DataError, match="3 integers"):
        load_cifar10(folder)
    bad = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}
    (folder / "test_batch").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DataError, match=r"\[0, 10\)"):
        load_cifar10(folder)


def test_pickle_cannot_run_code(tmp_path):
    folder = write_synthetic_cifar(tmp_path, 10, n_train=10, n_test=3)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(DataError, match="test_batch"):
        load_cifar10(folder)
    assert not marker.exists()


def test_bad_and_truncated_archives(tmp_path):
    bogus = tmp_path / "cifar-10-python.tar.gz"
    bogus.write_bytes(b"this is not a tar file" * 10)
    with pytest.raises(DataError, match="cifar-10-python.tar.gz"):
        load_cifar10(bogus)
    good = write_synthetic_cifar(tmp_path / "g", 10, n_train=10, n_test=3, archive=True)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match="cut.tar.gz"):
        load_cifar10(cut)
    # A valid archive of the wrong dataset names what is missing.
    other = tmp_path / "other.tar.gz"
    with tarfile.open(other, "w:gz") as tar:
        tar.add(write_synthetic_cifar(tmp_path / "o", 100, n_train=10, n_test=3), arcname="cifar-100-python")
    with pytest.raises(DataError, match="data_batch_1"):
        load_cifar10(other)


def test_registry_errors(tmp_path):
    with pytest.raises(ConfigError, match="cifar10.*digits"):
        load_image_dataset("imagenet")
    with pytest.raises(ConfigError, match="path"):
        load_image_dataset("cifar10")
    with pytest.raises(ConfigError, match="no path"):
        load_image_dataset("digits", tmp_path)


def test_image_dataset_validation():
    x, y = torch.zeros(4, 1, 2, 2), torch.zeros(4, dtype=torch.int64)
    with pytest.raises(DataError, match="4 images but 3 labels"):
        ImageDataset(x, y[:3], x, y, 2, "toy")
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        ImageDataset(x + 2, y, x, y, 2, "toy")
    with pytest.raises(DataError, match="labels must lie"):
        ImageDataset(x, y + 5, x, y, 2, "toy")
    ds = ImageDataset(x, y, x, y, 2, "toy").subset(n_train=2)
    assert len(ds.y_train) == 2 and ds.image_shape == (1, 2, 2)


# ----------------------------------------------------------------------------- Tiny ImageNet
def _fake_tiny_imagenet(root, wnids=("n01", "n02"), per_class=3):
    from PIL import Image

    base = root / "tiny-imagenet-200"
    rng = np.random.default_rng(0)
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    lines = []
    for k, w in enumerate(wnids):
        d = base / "train" / w / "images"
        d.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(d / f"{w}_{i}.JPEG")
        name = f"val_{k}.JPEG"
        Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(base / "val" / "images" / name)
        lines.append(f"{name}\t{w}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return base


def test_tiny_imagenet_layout_and_cache(tmp_path):
    base = _fake_tiny_imagenet(tmp_path)
    ds = load_tiny_imagenet(tmp_path)
    assert ds.x_train.shape == (6, 3, 64, 64) and ds.x_train.dtype == torch.uint8
    assert ds.y_train.tolist() == [0, 0, 0, 1, 1, 1] and ds.y_test.tolist() == [0, 1]
    assert ds.class_names == ("n01", "n02")
    cache = tmp_path / "cache" / "tiny.npz"
    first = load_tiny_imagenet(base, cache=cache, max_per_class=2)
    assert cache.is_file() and first.x_train.shape[0] == 4
    again = load_tiny_imagenet(base, cache=cache, max_per_class=2)
    assert torch.equal(first.x_train, again.x_train) and torch.equal(first.x_test, again.x_test)


def test_tiny_imagenet_errors(tmp_path):
    with pytest.raises(DataError, match="wnids.txt"):
        load_tiny_imagenet(tmp_path)
    base = _fake_tiny_imagenet(tmp_path)
    (base / "val" / "images" / "val_0.JPEG").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="val_0.JPEG"):
        load_tiny_imagenet(base)


# ----------------------------------------------------------------------------- offline datasets
def test_digits_missing_sklearn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(DataError, match="pip install scikit-learn"):
        load_digits()


def test_mnist1d_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mnist1d", None)
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(DataError, match="pip install mnist1d"):
        load_mnist1d()


def test_digits_when_available():
    pytest.importorskip("sklearn")
    ds = load_digits(seed=0)
    assert ds.x_train.shape[1:] == (1, 8, 8) and len(ds.y_train) + len(ds.y_test) == 1797
    assert 0 <= ds.x_train.min() and ds.x_train.max() <= 1
    assert torch.equal(load_digits(seed=0).y_test, ds.y_test)


def test_mnist1d_when_available():
    pytest.importorskip("mnist1d")
    state = np.random.get_state()
    ds = load_mnist1d(num_samples=200)
    assert ds.x_train.shape == (160, 1, 1, 40) and ds.num_classes == 10
    assert np.array_equal(np.random.get_state()[1], state[1])  # global RNG left alone


# ----------------------------------------------------------------------------- augmentation
def _images(n=16, dtype=torch.uint8):
    x = torch.randint(0, 256, (n, 3, 12, 10), generator=torch.Generator().manual_seed(0))
    return x.to(dtype)


def test_augmentation_is_deterministic_and_shape_preserving():
    x = _images()
    outs = [random_crop_flip(x, torch.Generator().manual_seed(s)) for s in (5, 5, 6)]
    assert outs[0].shape == x.shape and outs[0].dtype == x.dtype
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])
    assert torch.equal(random_crop_flip(x, torch.Generator(), padding=0, flip=False), x)
    assert NO_AUGMENTATION(x, torch.Generator()) is x


def test_augmentation_matches_per_image_reference():
    x = _images(dtype=torch.float32)
    g = torch.Generator().manual_seed(2)
    out = random_crop_flip(x, g, padding=3, flip=True)
    g = torch.Generator().manual_seed(2)
    off = torch.randint(0, 7, (2, len(x)), generator=g)
    flips = torch.rand(len(x), generator=g) < 0.5
    padded = torch.nn.functional.pad(x, (3, 3, 3, 3))
    for i in range(len(x)):
        ref = padded[i, :, off[0, i]:off[0, i] + 12, off[1, i]:off[1, i] + 10]
        assert torch.equal(out[i], ref.flip(2) if flips[i] else ref)


def test_flip_only_gives_image_or_its_mirror():
    x = _images()
    out = Augmentation(padding=0, flip=True)(x, torch.Generator().manual_seed(0))
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(3)).flatten(1).all(1)
    assert torch.all(same | mirrored) and same.any() and mirrored.any()


def test_bad_augmentation_settings():
    with pytest.raises(ConfigError, match="padding"):
        Augmentation(padding=-1)
    with pytest.raises(ConfigError, match="N, C, H, W"):
        random_crop_flip(torch.zeros(3, 4, 4), torch.Generator())


# ----------------------------------------------------------------------------- batch iterator
def test_batch_iterator_epochs_drop_last_and_determinism():
    x, y = _images(10), torch.arange(10)
    it = BatchIterator(x, y, 4, torch.Generator().manual_seed(0), augment=Augmentation())
    batches = list(it)
    assert len(it) == 3 and [len(b[1]) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat([b[1] for b in batches]).tolist()) == list(range(10))
    assert all(b[0].dtype == torch.float32 and b[0].shape[1:] == (3, 12, 10) for b in batches)
    assert all(0 <= b[0].min() and b[0].max() <= 1 for b in batches)
    again = list(BatchIterator(x, y, 4, torch.Generator().manual_seed(0), augment=Augmentation()))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(batches, again))
    second_epoch = list(it)
    assert not torch.equal(torch.cat([b[1] for b in second_epoch]), torch.cat([b[1] for b in batches]))
    dropped = BatchIterator(x, y, 4, torch.Generator(), drop_last=True)
    assert len(dropped) == 2 and [len(b[1]) for b in dropped] == [4, 4]
    ordered = BatchIterator(x, y, 4, torch.Generator(), shuffle=False)
    first_x, first_y = next(iter(ordered))
    assert first_y.tolist() == [0, 1, 2, 3] and torch.equal(first_x, x[:4].float() / 255)


def test_batch_iterator_rejects_bad_input():
    x, y = _images(4), torch.arange(4)
    with pytest.raises(ConfigError, match="batch_size"):
        BatchIterator(x, y, 0, torch.Generator())
    with pytest.raises(ConfigError, match="drop_last"):
        BatchIterator(x, y, 8, torch.Generator(), drop_last=True)
    with pytest.raises(ConfigError, match="labels"):
        BatchIterator(x, y[:3], 2, torch.Generator())
    with pytest.raises(ConfigError, match="generator"):
        BatchIterator(x, y, 2, 0)


def test_extracted_folder_missing_one_file_is_named(tmp_path):
    folder = write_synthetic_cifar(tmp_path, 10, n_train=10, n_test=3)
    for f in folder.iterdir():
        if f.name != "test_batch":
            f.unlink()
    with pytest.raises(DataError, match="data_batch_1"):
        load_cifar10(folder)

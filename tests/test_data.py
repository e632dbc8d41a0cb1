"""Tests of keras_slim.zoo.data. Offline by construction: every test runs with DNS and
outbound connections disabled, real data comes only from the Debian package
dataset-fashion-mnist, and format errors use small files written to tmp_path."""
import gzip
import os
import shutil
import socket
import time

import numpy as np
import pytest
import tensorflow as tf

from keras_slim.zoo import data

FMNIST = data.FASHION_MNIST_DIR

# Properties of the real Fashion-MNIST files (uint8 pixels before any scaling); a
# pipeline that drops, duplicates, reorders or rescales anything changes them.
TRAIN_PIXEL_SUM = 3_431_114_169
TEST_PIXEL_SUM = 573_469_082
TRAIN_LABEL_SUM = 270_000            # 6,000 of each class
TEST_LABEL_SUM = 45_000              # 1,000 of each class
TRAIN_LABEL_POSITIONAL_SUM = 8_087_216_427   # sum(label[i] * i): catches reordering
TEST_LABEL_POSITIONAL_SUM = 225_732_341

# On CI a missing package must fail loudly, not skip into a green run.
needs_fmnist = pytest.mark.skipif(
    not os.path.isdir(FMNIST) and not os.environ.get("CI"),
    reason=f"{FMNIST} missing: apt-get install dataset-fashion-mnist")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Make any attempt to reach the network fail at once, as on an offline machine."""
    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
                "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


def _pixel_sum(images, info):
    """Undo the normalisation and sum the original uint8 pixel values exactly."""
    mean, std = np.array(info.mean), np.array(info.std)
    return int(np.rint((images * std + mean) * 255.0).astype(np.int64).sum())


def _write_idx(path, array, magic, compress=None):
    header = magic.to_bytes(4, "big") + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + np.asarray(array, np.uint8).tobytes()
    compress = path.endswith(".gz") if compress is None else compress
    with open(path, "wb") as f:
        f.write(gzip.compress(raw) if compress else raw)
    return path


def _fake_idx_dir(directory, n_train=20, n_test=10, size=28, labels_from=None, seed=0):
    """A tiny, valid idx dataset with uncompressed names (like a hand-made MNIST copy)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        _write_idx(str(directory / f"{prefix}-images-idx3-ubyte"), images, 2051)
        _write_idx(str(directory / f"{prefix}-labels-idx1-ubyte"), labels, 2049)
    return directory


# --------------------------------------------------------------------------- registry

def test_registry_is_consistent():
    assert set(data.SUPPORTED) == {"fashion_mnist", "mnist", "cifar10", "cifar100",
                                   "svhn_cropped"}
    for name in data.SUPPORTED:
        info = data.info(name)
        channels = info.input_shape[-1]
        assert info.name == name
        assert len(info.label_names) == info.num_classes
        assert len(set(info.label_names)) == info.num_classes
        assert len(info.mean) == len(info.std) == channels
        assert {"train", "test"} <= set(info.num_examples)
    assert data.info("cifar10").label_names[:2] == ("airplane", "automobile")
    cifar100 = data.info("cifar100").label_names
    assert list(cifar100) == sorted(cifar100) and cifar100[-1] == "worm"
    assert data.info("cifar10").augmentation == ("pad_crop", "flip")
    assert data.info("svhn_cropped").augmentation == ("pad_crop",)
    assert data.info("fashion_mnist").augmentation == ()


@pytest.mark.parametrize("name", ["fashion_mnist", "mnist", "svhn_cropped"])
def test_label_names_match_tfds(name, tmp_path):
    # tfds knows these names offline (CIFAR's only after download, hence hard-coded).
    tfds = pytest.importorskip("tensorflow_datasets")
    names = tfds.builder(name, data_dir=str(tmp_path)).info.features["label"].names
    assert tuple(names) == data.info(name).label_names


def test_unknown_name():
    with pytest.raises(ValueError, match="imagenet.*fashion_mnist.*cifar10"):
        data.info("imagenet")
    with pytest.raises(ValueError, match="Supported datasets"):
        data.load("imagenet")


# --------------------------------------------------------------- real Fashion-MNIST

@pytest.fixture(scope="module")
def fmnist_train():
    """One pass over the whole train split through the public pipeline."""
    ds, info = data.load("fashion_mnist", "train", batch_size=10000, augment=False,
                         shuffle=False)
    images, labels = zip(*ds.as_numpy_iterator())
    return np.concatenate(images), np.concatenate(labels), info, ds.element_spec


@needs_fmnist
def test_fashion_mnist_train_split(fmnist_train):
    images, labels, info, spec = fmnist_train
    assert images.shape == (60000, 28, 28, 1) and labels.shape == (60000,)
    assert images.dtype == np.float32 and labels.dtype == np.int64
    assert spec[0].shape.as_list() == [None, 28, 28, 1] and spec[0].dtype == tf.float32
    assert spec[1].dtype == tf.int64
    assert labels.min() == 0 and labels.max() == 9
    np.testing.assert_array_equal(np.bincount(labels), [6000] * 10)
    assert abs(images.mean()) < 0.01
    assert abs(images.std() - 1.0) < 0.01
    assert _pixel_sum(images, info) == TRAIN_PIXEL_SUM
    assert int(labels.sum()) == TRAIN_LABEL_SUM
    assert int((labels * np.arange(60000)).sum()) == TRAIN_LABEL_POSITIONAL_SUM
    assert info.num_examples == {"train": 60000, "test": 10000}


@needs_fmnist
def test_fashion_mnist_test_split():
    x, y = data.numpy_arrays("fashion_mnist", "test")
    assert x.shape == (10000, 28, 28, 1) and y.shape == (10000,)
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert set(np.unique(y)) == set(range(10))
    assert _pixel_sum(x, data.info("fashion_mnist")) == TEST_PIXEL_SUM
    assert int(y.sum()) == TEST_LABEL_SUM
    assert int((y * np.arange(10000)).sum()) == TEST_LABEL_POSITIONAL_SUM


@needs_fmnist
def test_default_source_is_local_debian_package(monkeypatch):
    # Fashion-MNIST must not go near tfds when the Debian files exist.
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(tfds, "builder", lambda *a, **k: pytest.fail("tfds used"))
    ds, _ = data.load("fashion_mnist", take=8, batch_size=8)
    assert next(iter(ds))[0].shape == (8, 28, 28, 1)


def _count(ds):
    return sum(int(tf.shape(x)[0]) for x, _ in ds)


@needs_fmnist
def test_take_and_batches():
    ds, _ = data.load("fashion_mnist", "train", batch_size=32, take=100)
    sizes = [int(x.shape[0]) for x, _ in ds]
    assert sizes == [32, 32, 32, 4]


@needs_fmnist
@pytest.mark.parametrize("split, expected", [
    ("train[:1000]", 1000), ("train[59000:]", 1000), ("train[:10%]", 6000),
    ("train[90%:]", 6000), ("test[:5]+test[-5:]", 10), ("test[100:150]", 50)])
def test_split_slicing_counts(split, expected):
    ds, _ = data.load("fashion_mnist", split, batch_size=4096, augment=False, shuffle=False)
    assert _count(ds) == expected


@needs_fmnist
def test_split_slice_selects_the_right_examples(fmnist_train):
    images, labels, _, _ = fmnist_train
    x, y = data.numpy_arrays("fashion_mnist", "train[59000:]")
    np.testing.assert_array_equal(x, images[59000:])
    np.testing.assert_array_equal(y, labels[59000:])


@needs_fmnist
def test_train_defaults_shuffle_reproducibly():
    first = lambda seed: next(iter(data.load("fashion_mnist", take=500, batch_size=500,
                                             seed=seed)[0]))[1].numpy()
    in_order = next(iter(data.load("fashion_mnist", take=500, batch_size=500,
                                   shuffle=False)[0]))[1].numpy()
    np.testing.assert_array_equal(first(1), first(1))
    assert not np.array_equal(first(1), in_order)
    assert sorted(first(1)) == sorted(in_order)


@needs_fmnist
def test_representative_dataset():
    gen = data.representative_dataset("fashion_mnist", num_samples=7)
    for _ in range(2):   # the converter may iterate more than once
        items = list(gen())
        assert len(items) == 7
        for item in items:
            assert isinstance(item, list) and len(item) == 1
            assert item[0].shape == (1, 28, 28, 1) and item[0].dtype == np.float32
    x, _ = data.numpy_arrays("fashion_mnist", "train[:7]")
    np.testing.assert_array_equal(np.concatenate([i[0] for i in items]), x)


def test_representative_dataset_bad_num_samples():
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="num_samples"):
            data.representative_dataset("fashion_mnist", num_samples=bad)
    with pytest.raises(ValueError, match="num_samples=11 exceeds"):
        data.representative_dataset("fashion_mnist", num_samples=11, split="train[:10]")


# ------------------------------------------------------------------- tfds, offline

def test_unprepared_dataset_without_download(tmp_path):
    with pytest.raises(data.DatasetUnavailableError) as err:
        data.load("cifar10", data_dir=str(tmp_path), download=False)
    message = str(err.value)
    assert "cifar10" in message and "not available offline" in message
    assert "internet" in message and "data_dir" in message
    assert list(tmp_path.iterdir()) == []   # nothing written


def test_unprepared_dataset_download_fails_fast(tmp_path, monkeypatch):
    # Unprobed, tfds retries for ~3.5 minutes offline; the probe must stop it first.
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                        lambda *a, **k: pytest.fail("tfds download started"))
    start = time.monotonic()
    with pytest.raises(data.DatasetUnavailableError, match="cifar10.*cannot reach"):
        data.load("cifar10", data_dir=str(tmp_path), download=True)
    assert time.monotonic() - start < 30  # not tfds' minutes of retries


def test_download_failure_is_wrapped(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(data, "_probe_download", lambda name: None)

    def fail(*args, **kwargs):
        raise ConnectionError("Max retries exceeded")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", fail)
    with pytest.raises(data.DatasetUnavailableError, match="svhn_cropped") as err:
        data.load("svhn_cropped", "extra[:10]", data_dir=str(tmp_path))
    assert isinstance(err.value.__cause__, ConnectionError)


def test_mnist_unavailable_mentions_local_dir(tmp_path):
    with pytest.raises(data.DatasetUnavailableError, match="local_dir"):
        data.load("mnist", data_dir=str(tmp_path), download=False)


# ---------------------------------------------------------------------- bad arguments

@pytest.mark.parametrize("split", ["validation", "train[::2]", "train[:10", "", "Train"])
def test_bad_split(split):
    with pytest.raises(ValueError, match="Valid splits of fashion_mnist: train, test"):
        data.load("fashion_mnist", split)


def test_bad_split_checked_before_touching_tfds(tmp_path):
    with pytest.raises(ValueError, match="'validation'.*train, test, extra"):
        data.load("svhn_cropped", "validation", data_dir=str(tmp_path), download=False)


def test_empty_split():
    with pytest.raises(ValueError, match="selects no examples"):
        data.load("fashion_mnist", "train[60000:]")


@pytest.mark.parametrize("kwargs, argument", [
    ({"batch_size": 0}, "batch_size"), ({"batch_size": 1.5}, "batch_size"),
    ({"take": 0}, "take"), ({"take": True}, "take")])
def test_bad_numbers(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        data.load("fashion_mnist", **kwargs)


def test_local_dir_only_for_idx_datasets(tmp_path):
    with pytest.raises(ValueError, match="local_dir"):
        data.load("cifar10", local_dir=tmp_path)


# ------------------------------------------------------------------ local idx files

def test_local_mnist_from_small_uncompressed_files(tmp_path):
    directory = _fake_idx_dir(tmp_path / "mnist")
    ds, info = data.load("mnist", "train", batch_size=64, local_dir=directory,
                         shuffle=False)
    x, y = next(iter(ds))
    assert info.name == "mnist" and x.shape == (20, 28, 28, 1)
    np.testing.assert_array_equal(y.numpy(), np.arange(20) % 10)
    # Slices resolve against the files' real sizes.
    x, _ = data.numpy_arrays("mnist", "train[:50%]", local_dir=directory)
    assert len(x) == 10
    x, _ = data.numpy_arrays("mnist", "test", local_dir=directory)
    assert len(x) == 10


def test_missing_local_dir(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=f"{missing}.*dataset-fashion-mnist"):
        data.load("fashion_mnist", local_dir=missing)


def test_missing_local_file(tmp_path):
    directory = _fake_idx_dir(tmp_path / "d")
    os.remove(directory / "train-labels-idx1-ubyte")
    expected = os.path.join(str(directory), "train-labels-idx1-ubyte")
    with pytest.raises(FileNotFoundError) as err:
        data.load("fashion_mnist", local_dir=directory)
    assert expected in str(err.value)
    assert "apt-get install dataset-fashion-mnist" in str(err.value)
    assert "local_dir" in str(err.value)
    # The test split's files are all there.
    assert len(data.numpy_arrays("fashion_mnist", "test", local_dir=directory,
                                 verify=False)[0]) == 10


@needs_fmnist
def test_truncated_copy_of_real_file(tmp_path):
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(os.path.join(FMNIST, name), tmp_path / name)
    bad = tmp_path / "t10k-labels-idx1-ubyte.gz"
    with open(bad, "r+b") as f:
        f.truncate(os.path.getsize(bad) // 2)
    with pytest.raises(ValueError, match=f"{bad} is truncated"):
        data.load("fashion_mnist", "test", local_dir=tmp_path)


def test_truncated_uncompressed_file(tmp_path):
    directory = _fake_idx_dir(tmp_path / "d")
    bad = directory / "t10k-images-idx3-ubyte"
    with open(bad, "r+b") as f:
        f.truncate(16 + 28 * 28 * 3)        # header says 10 images, 3 remain
    with pytest.raises(ValueError, match=f"{bad} is truncated.*7840.*2352"):
        data.load("mnist", "test", local_dir=directory)


def test_random_bytes_named_gz(tmp_path):
    directory = _fake_idx_dir(tmp_path / "d")
    bad = directory / "t10k-labels-idx1-ubyte.gz"     # .gz wins over the plain name
    bad.write_bytes(np.random.default_rng(1).bytes(1000))
    with pytest.raises(ValueError, match=f"{bad} is not a valid gzip file"):
        data.load("mnist", "test", local_dir=directory)


def test_gzip_of_random_bytes(tmp_path):
    directory = _fake_idx_dir(tmp_path / "d")
    bad = directory / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x12\x34" + np.random.default_rng(2).bytes(5000)))
    with pytest.raises(ValueError, match=f"{bad} is not an idx images file: magic"):
        data.load("mnist", "test", local_dir=directory)


def test_labels_file_in_place_of_images(tmp_path):
    directory = _fake_idx_dir(tmp_path / "d")
    shutil.copy(directory / "t10k-labels-idx1-ubyte", directory / "t10k-images-idx3-ubyte")
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte is not an idx images"):
        data.load("mnist", "test", local_dir=directory)


def test_gzipped_content_under_plain_name(tmp_path):
    directory = _fake_idx_dir(tmp_path / "d")
    path = directory / "t10k-labels-idx1-ubyte"
    path.write_bytes(gzip.compress(path.read_bytes()))
    with pytest.raises(ValueError, match="looks gzip-compressed"):
        data.load("mnist", "test", local_dir=directory)


def test_inconsistent_files(tmp_path):
    directory = _fake_idx_dir(tmp_path / "d")
    _write_idx(str(directory / "t10k-labels-idx1-ubyte"), np.zeros(9, np.uint8), 2049)
    with pytest.raises(ValueError, match="10 images but .* 9 labels"):
        data.load("mnist", "test", local_dir=directory)
    directory = _fake_idx_dir(tmp_path / "e", size=32)
    with pytest.raises(ValueError, match=r"\(32, 32\) images; mnist needs \(28, 28\)"):
        data.load("mnist", "test", local_dir=directory)
    directory = _fake_idx_dir(tmp_path / "f")
    _write_idx(str(directory / "t10k-labels-idx1-ubyte"), np.full(10, 10, np.uint8), 2049)
    with pytest.raises(ValueError, match="label 10; mnist has 10 classes"):
        data.load("mnist", "test", local_dir=directory)


@needs_fmnist
def test_checksum_mismatch(tmp_path):
    os.symlink(os.path.join(FMNIST, "t10k-images-idx3-ubyte.gz"),
               tmp_path / "t10k-images-idx3-ubyte.gz")
    with gzip.open(os.path.join(FMNIST, "t10k-labels-idx1-ubyte.gz")) as f:
        raw = bytearray(f.read())
    raw[8] = (raw[8] + 1) % 10               # first label: still a valid class
    bad = tmp_path / "t10k-labels-idx1-ubyte"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=f"{bad} does not match the original.*SHA-256"):
        data.load("fashion_mnist", "test", local_dir=tmp_path)
    _, y = data.numpy_arrays("fashion_mnist", "test", local_dir=tmp_path, verify=False)
    assert len(y) == 10000 and y[0] == raw[8]


# --------------------------------------------------------------------- augmentation

def _windows(padded, size):
    return [padded[i:i + size, j:j + size] for i in range(padded.shape[0] - size + 1)
            for j in range(padded.shape[1] - size + 1)]


def _classify(out, image, pad=4):
    """'plain' / 'flipped' if `out` is a crop of the padded image / of its mirror."""
    padded = np.pad(image, [(pad, pad), (pad, pad), (0, 0)])
    for kind, source in (("plain", padded), ("flipped", padded[:, ::-1])):
        if any(np.array_equal(out, w) for w in _windows(source, image.shape[0])):
            return kind
    return None


@pytest.mark.parametrize("name, kinds", [("cifar10", {"plain", "flipped"}),
                                         ("cifar100", {"plain", "flipped"}),
                                         ("svhn_cropped", {"plain"})])
def test_augmentation_crops_and_flips(name, kinds):
    augment = data.augmentation(name)
    image = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    outs = [augment(tf.constant(image), tf.constant([s, 7])).numpy() for s in range(40)]
    assert all(o.shape == (32, 32, 3) and o.dtype == np.float32 for o in outs)
    assert {_classify(o, image) for o in outs} == kinds   # SVHN never mirrors digits
    assert sum(not np.array_equal(o, image) for o in outs) > 30
    same = augment(tf.constant(image), tf.constant([3, 7])).numpy()
    np.testing.assert_array_equal(same, outs[3])          # stateless: seed decides


def test_no_augmentation_for_mnists():
    assert data.augmentation("mnist") is None
    assert data.augmentation("fashion_mnist") is None


def test_augmenting_pipeline_on_synthetic_cifar():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(16, dtype=np.uint8) % 10
    info = data.info("cifar10")

    def run(augment, seed):
        ds = tf.data.Dataset.from_tensor_slices((images, labels))
        ds = data._pipeline(ds, info, batch_size=16, augment=augment, shuffle=False,
                            take=None, seed=seed, num_examples=16)
        return next(iter(ds))

    plain_x, plain_y = run(False, None)
    aug_x, aug_y = run(True, 5)
    assert aug_x.shape == plain_x.shape == (16, 32, 32, 3)
    assert aug_x.dtype == tf.float32 and aug_y.dtype == tf.int64
    np.testing.assert_array_equal(aug_y, plain_y)
    assert not np.allclose(aug_x, plain_x)
    np.testing.assert_array_equal(run(True, 5)[0], aug_x)   # reproducible with a seed
    # Padding is black before normalisation, as in the paper's torchvision transform.
    black = (0.0 - np.array(info.mean)) / np.array(info.std)
    padded = np.isclose(aug_x.numpy(), black.astype(np.float32)).all(axis=-1)
    assert padded.any()
    expected = (images / 255.0 - np.array(info.mean)) / np.array(info.std)
    np.testing.assert_allclose(plain_x, expected, atol=1e-5)

"""Datasets for the Network Slimming experiments as ready-to-train `tf.data` pipelines.

    ds, info = load("fashion_mnist", split="train", batch_size=128)
    model.fit(ds, epochs=..., validation_data=load("fashion_mnist", "test")[0])

Every dataset yields batches of (image float32 normalised per channel, label int64).
Two sources feed the same pipeline:

* the original idx files of Fashion-MNIST / MNIST in a local directory. Fashion-MNIST
  uses the Debian package `dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist)
  by default when it is installed, so the most common dataset never touches the network;
* TensorFlow Datasets (`tensorflow_datasets`) for everything else, prepared in `data_dir`
  (default ~/tensorflow_datasets), downloading once when the network allows it.

Failures to get data become one clear error: `DatasetUnavailableError` (tfds source),
`FileNotFoundError` / `ValueError` (local files), naming the dataset or file at fault.
"""
import dataclasses
import functools
import gzip
import hashlib
import os
import re
import socket
import zlib
from urllib.parse import urlsplit

import numpy as np
import tensorflow as tf

__all__ = [
    "DatasetInfo", "DatasetUnavailableError", "SUPPORTED", "FASHION_MNIST_DIR",
    "info", "load", "augmentation", "representative_dataset", "numpy_arrays",
]

# Where the Debian package dataset-fashion-mnist puts the original gzipped idx files.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


class DatasetUnavailableError(RuntimeError):
    """The dataset is neither prepared locally nor downloadable right now."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset, without loading it."""
    name: str
    input_shape: tuple          # (H, W, C)
    num_classes: int
    label_names: tuple
    mean: tuple                 # per channel, on the [0, 1] pixel scale
    std: tuple
    num_examples: dict          # split name -> number of examples
    # Train-time augmentation: subset of ("pad_crop", "flip"), in that order.
    augmentation: tuple = ()
    pad: int = 0                # padding before the random crop


_DIGITS = tuple(str(i) for i in range(10))

_CIFAR100_LABELS = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest",
    "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower",
    "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear",
    "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine", "possum", "rabbit",
    "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk",
    "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar", "sunflower",
    "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor", "train",
    "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)

# Label names are hard-coded: offline, tfds only knows them for the MNISTs and SVHN;
# CIFAR's come from the downloaded archive (tfds reports "0".."9" before that).
# Augmentation follows the Network Slimming paper's code for CIFAR (pad 4, random 32x32
# crop, horizontal flip). SVHN gets the crop but no flip: a mirrored digit is a
# different glyph (or none), so flipping would teach wrong labels. The MNISTs are
# centred and small; the paper-style baselines train them without augmentation.
_REGISTRY = {
    "fashion_mnist": DatasetInfo(
        "fashion_mnist", (28, 28, 1), 10,
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        (0.2860,), (0.3530,), {"train": 60000, "test": 10000}),
    "mnist": DatasetInfo(
        "mnist", (28, 28, 1), 10, _DIGITS,
        (0.1307,), (0.3081,), {"train": 60000, "test": 10000}),
    "cifar10": DatasetInfo(
        "cifar10", (32, 32, 3), 10,
        ("airplane", "automobile", "bird", "cat", "deer",
         "dog", "frog", "horse", "ship", "truck"),
        (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
        {"train": 50000, "test": 10000}, ("pad_crop", "flip"), 4),
    "cifar100": DatasetInfo(
        "cifar100", (32, 32, 3), 100, _CIFAR100_LABELS,
        (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
        {"train": 50000, "test": 10000}, ("pad_crop", "flip"), 4),
    "svhn_cropped": DatasetInfo(
        "svhn_cropped", (32, 32, 3), 10, _DIGITS,
        (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970),
        {"train": 73257, "test": 26032, "extra": 531131}, ("pad_crop",), 4),
}
SUPPORTED = tuple(_REGISTRY)

# Where tfds downloads each dataset from; probed before a download (see _probe_download).
_DOWNLOAD_URLS = {
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "mnist": "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
    "svhn_cropped": "http://ufldl.stanford.edu/housenumbers/",
}

# Datasets stored in the idx format of the original MNIST files; split -> file prefix.
_IDX_DATASETS = ("fashion_mnist", "mnist")
_IDX_PREFIX = {"train": "train", "test": "t10k"}
_IDX_MAGIC = {"images": 2051, "labels": 2049}   # ubyte data, 3 resp. 1 dimensions

# SHA-256 of the decompressed original files (header included).
_IDX_SHA256 = {
    "fashion_mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}

# Shuffling the whole split is what the paper's PyTorch loader does; cap the buffer so
# SVHN "extra" (531k images) does not hold 1.6 GB in memory.
_MAX_SHUFFLE_BUFFER = 50_000


def info(name, **source_kwargs):
    """DatasetInfo of a dataset, without loading images. Besides the built-in names
    (SUPPORTED): folder:PATH, tfrecord:GLOB and any tfds name (keras_slim.zoo.sources;
    source_kwargs: image_size, channels, validation_split, data_dir)."""
    if isinstance(name, DatasetInfo):
        return name
    if name in _REGISTRY and not source_kwargs.get("image_size"):
        return _REGISTRY[name]
    if name in _REGISTRY:
        raise ValueError(f"image_size applies to folder:, tfrecord: and tfds datasets; "
                         f"{name} has {_REGISTRY[name].input_shape[:2]}. "
                         f"Received: image_size={source_kwargs['image_size']!r}")
    from keras_slim.zoo import sources

    return sources.info(name, **{k: v for k, v in source_kwargs.items() if v is not None})


_SOURCE_INFO_ARGS = ("image_size", "channels", "validation_split", "data_dir")
_SOURCE_LOAD_ARGS = ("validation_split", "split_seed")


def _spec(name):
    if isinstance(name, DatasetInfo):
        return name
    if name not in _REGISTRY:
        raise ValueError(
            f"Unknown dataset {name!r}. Supported datasets: {', '.join(SUPPORTED)}.")
    return _REGISTRY[name]


# ---------------------------------------------------------------------------- splits

_SPLIT_RE = re.compile(r"^(\w+)(?:\[(-?\d+%?)?:(-?\d+%?)?\])?$")


def _parse_split(split, spec):
    """Parse 'train', 'test[:10%]', 'train[59000:]', 'train[:50%]+test' into a list of
    (split name, start bound, stop bound); a bound is None, int or 'P%'. Same grammar
    and rounding as tfds, so both sources select the same examples."""
    valid = tuple(spec.num_examples)
    hint = (f"Valid splits of {spec.name}: {', '.join(valid)}, optionally sliced like "
            f"'train[:5000]', 'train[5000:]', 'train[:10%]', 'train[90%:]', joined with '+'.")
    if not isinstance(split, str) or not split.strip():
        raise ValueError(f"Invalid split {split!r}. {hint}")
    parts = []
    for part in split.replace(" ", "").split("+"):
        match = _SPLIT_RE.match(part)
        if not match or match.group(1) not in valid:
            raise ValueError(f"Invalid split {split!r} for dataset {spec.name}. {hint}")
        parts.append(match.groups())
    return parts


def _bound(text, n):
    if text is None:
        return None
    if text.endswith("%"):
        pct = int(text[:-1])
        if not -100 <= pct <= 100:
            raise ValueError(f"Split percentage {text} is outside [-100%, 100%].")
        # tfds's default "closest" rounding.
        return int(round(pct * n / 100.0))
    return int(text)


def _split_ranges(split, spec, sizes=None):
    """[(split name, start, stop)] with absolute indices, python-slice clamped.
    sizes: actual split sizes when they differ from the registry (local files)."""
    sizes = sizes or spec.num_examples
    ranges = []
    for base, lo, hi in _parse_split(split, spec):
        n = sizes[base]
        start, stop, _ = slice(_bound(lo, n), _bound(hi, n)).indices(n)
        ranges.append((base, start, max(start, stop)))
    if sum(stop - start for _, start, stop in ranges) == 0:
        raise ValueError(f"Split {split!r} of {spec.name} selects no examples.")
    return ranges


def _split_size(split, spec):
    return sum(stop - start for _, start, stop in _split_ranges(split, spec))


# ------------------------------------------------------------------- local idx files

def _idx_path(directory, stem):
    for candidate in (stem + ".gz", stem):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    return None


def _read_idx(path, kind, expected_sha256):
    """Parse one idx file (gzipped or not) into a uint8 array, validating everything."""
    with open(path, "rb") as f:
        raw = f.read()
    if path.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except EOFError as e:
            raise ValueError(f"{path} is truncated (gzip stream ends early).") from e
        except (OSError, zlib.error) as e:
            raise ValueError(f"{path} is not a valid gzip file: {e}.") from e
    magic = _IDX_MAGIC[kind]
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path} is not an idx {kind} file: only {len(raw)} bytes.")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        hint = " (it looks gzip-compressed: name it *.gz)" if raw[:2] == b"\x1f\x8b" else ""
        raise ValueError(
            f"{path} is not an idx {kind} file: magic number {found}, expected {magic}{hint}.")
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(dims))
    if len(raw) - header != size:
        what = "truncated" if len(raw) - header < size else "longer than its header says"
        raise ValueError(
            f"{path} is {what}: header {dims} needs {size} data bytes, "
            f"found {len(raw) - header}.")
    # Check the format first so broken files get the precise message above.
    if expected_sha256 is not None:
        digest = hashlib.sha256(raw).hexdigest()
        if digest != expected_sha256:
            raise ValueError(
                f"{path} does not match the original file: SHA-256 {digest}, expected "
                f"{expected_sha256}. Reinstall the data or pass verify=False.")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


@functools.lru_cache(maxsize=8)
def _read_idx_split_cached(name, images_path, labels_path, verify, _stamp):
    spec = _REGISTRY[name]
    hashes = _IDX_SHA256.get(name, {}) if verify else {}

    def stem(path):
        return os.path.basename(path).removesuffix(".gz")

    images = _read_idx(images_path, "images", hashes.get(stem(images_path)))
    labels = _read_idx(labels_path, "labels", hashes.get(stem(labels_path)))
    if images.shape[1:] != spec.input_shape[:2]:
        raise ValueError(
            f"{images_path} holds {images.shape[1:]} images; {name} needs "
            f"{spec.input_shape[:2]}.")
    if len(images) != len(labels):
        raise ValueError(
            f"{images_path} has {len(images)} images but {labels_path} has "
            f"{len(labels)} labels.")
    if labels.size and labels.max() >= spec.num_classes:
        raise ValueError(
            f"{labels_path} has label {labels.max()}; {name} has {spec.num_classes} classes.")
    images = images[..., np.newaxis]
    labels = labels.astype(np.int64)
    # Shared between calls: make accidental in-place edits fail instead of corrupting.
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def _read_idx_split(name, directory, split, verify=True):
    """(images uint8 (N, H, W, 1), labels int64 (N,)) of one whole split, cached."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"Local data directory {directory} does not exist. "
            + _install_hint(name))
    paths = []
    for kind, stem in (("images", "idx3"), ("labels", "idx1")):
        base = f"{_IDX_PREFIX[split]}-{kind}-{stem}-ubyte"
        path = _idx_path(directory, base)
        if path is None:
            raise FileNotFoundError(
                f"Missing {os.path.join(directory, base)}.gz (or uncompressed "
                f"{base}) for {name} split {split!r}. " + _install_hint(name))
        paths.append(os.path.abspath(path))
    # Size and mtime in the cache key, so a replaced file is re-read.
    stamp = tuple((os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths)
    return _read_idx_split_cached(name, paths[0], paths[1], bool(verify), stamp)


def _install_hint(name):
    if name == "fashion_mnist":
        return ("Install the files with `apt-get install dataset-fashion-mnist` "
                f"(into {FASHION_MNIST_DIR}) or pass local_dir= pointing at the four "
                "original idx files.")
    return f"Pass local_dir= pointing at the four original {name} idx files."


def _local_arrays(name, split, directory, verify):
    spec = _REGISTRY[name]
    bases = {base for base, _, _ in _parse_split(split, spec)}
    arrays = {base: _read_idx_split(name, directory, base, verify) for base in sorted(bases)}
    # Resolve slices against the files' actual sizes (they may be a subset).
    sizes = {base: len(x) for base, (x, _) in arrays.items()}
    images, labels = [], []
    for base, start, stop in _split_ranges(split, spec, sizes):
        images.append(arrays[base][0][start:stop])
        labels.append(arrays[base][1][start:stop])
    if len(images) == 1:
        return images[0], labels[0]
    return np.concatenate(images), np.concatenate(labels)


# --------------------------------------------------------------------------- tfds

def _probe_download(name, timeout=5.0):
    """Fail fast when the download host is unreachable.

    Offline, tfds does not give up quickly: urllib3 retries with backoff, about 3.5
    minutes for CIFAR-10 before a ConnectionError. One DNS lookup + TCP connect tells
    the same in milliseconds (or `timeout` seconds on a firewalled network).
    """
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY",
                                       "http_proxy", "ALL_PROXY", "all_proxy")):
        return  # Direct connections may be blocked while the proxy works; let tfds try.
    # Other tfds datasets come from many hosts; tfds' own mirror stands in for them.
    url = urlsplit(_DOWNLOAD_URLS.get(name, "https://storage.googleapis.com/"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as e:
        raise DatasetUnavailableError(
            _unavailable_message(name, f"cannot reach {url.hostname} to download it ({e})")
        ) from e


def _unavailable_message(name, reason):
    local = ""
    if name in _IDX_DATASETS:
        local = (" or pass local_dir= pointing at the original idx files"
                 + (" (`apt-get install dataset-fashion-mnist` provides them)"
                    if name == "fashion_mnist" else ""))
    return (f"Dataset {name} is not available offline: {reason}. To get it, run once "
            f"with internet access (download=True) so tensorflow_datasets prepares it, or "
            f"pass data_dir= pointing at a directory where tfds already prepared {name}"
            f"{local}.")


def _tfds_dataset(name, split, data_dir, download, shuffle_files, seed):
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DatasetUnavailableError(
            f"Dataset {name} needs tensorflow_datasets: pip install tensorflow-datasets."
        ) from e
    # The steps of tfds.load, separated so that each failure gets a clear message and
    # a missing dataset never starts tfds's slow, retrying download when offline.
    where = data_dir or "~/tensorflow_datasets"
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        prepared = builder.is_prepared()
    except Exception as e:  # noqa: BLE001 - any tfds failure means "not available"
        raise DatasetUnavailableError(
            _unavailable_message(name, f"tfds cannot open it in {where} ({e})")) from e
    if not prepared:
        if not download:
            raise DatasetUnavailableError(
                _unavailable_message(name, f"it is not prepared in {where} and "
                                           "download=False"))
        _probe_download(name)
        try:
            builder.download_and_prepare()
        except Exception as e:  # noqa: BLE001
            raise DatasetUnavailableError(
                _unavailable_message(name, f"downloading it failed ({type(e).__name__})")
            ) from e
    read_config = tfds.ReadConfig(shuffle_seed=seed)
    try:
        return builder.as_dataset(split=split, as_supervised=True,
                                  shuffle_files=shuffle_files, read_config=read_config)
    except Exception as e:  # noqa: BLE001
        raise DatasetUnavailableError(
            _unavailable_message(name, f"reading it from {where} failed ({e})")) from e


# ----------------------------------------------------------------------- pipeline

def augmentation(name):
    """Train-time augmentation of `name` as fn(image, seed) -> image, or None.

    image: one (H, W, C) float image on the [0, 1] scale (before normalisation, so the
    padding is black as in the paper's torchvision code); seed: int tensor of shape (2,)
    for the stateless random ops, which keeps a seeded pipeline reproducible even with
    parallel map calls.
    """
    spec = _spec(name)   # a name or a DatasetInfo
    if not spec.augmentation:
        return None
    height, width, channels = spec.input_shape
    pad, ops = spec.pad, spec.augmentation

    def augment(image, seed):
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        if "pad_crop" in ops:
            image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
            image = tf.image.stateless_random_crop(
                image, (height, width, channels), seed=crop_seed)
        if "flip" in ops:
            image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
        return image

    return augment


def _pipeline(ds, spec, *, batch_size, augment, shuffle, take, seed, num_examples):
    """uint8 (H, W, C) image / integer label pairs -> batched, normalised, prefetched."""
    autotune = tf.data.AUTOTUNE
    if take is not None:
        ds = ds.take(take)
        num_examples = min(num_examples, take)
    if shuffle:
        # Shuffle the uint8 images: a quarter of the memory of float32 ones.
        ds = ds.shuffle(min(num_examples, _MAX_SHUFFLE_BUFFER), seed=seed,
                        reshuffle_each_iteration=True)
    augment_fn = augmentation(spec) if augment else None
    if augment_fn is not None:
        # One (2,)-seed per example; new seeds every epoch, reproducible given `seed`.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

        def per_example(example, seed_pair):
            image, label = example
            return augment_fn(tf.cast(image, tf.float32) / 255.0, seed_pair), label

        ds = tf.data.Dataset.zip((ds, seeds)).map(per_example, num_parallel_calls=autotune)
    ds = ds.batch(batch_size)
    mean = tf.constant(spec.mean, tf.float32)
    std = tf.constant(spec.std, tf.float32)
    scaled = augment_fn is not None

    def normalise(images, labels):
        # Vectorised per batch: much faster than per example when nothing is augmented.
        images = tf.cast(images, tf.float32)
        if not scaled:
            images = images / 255.0
        return (images - mean) / std, tf.cast(labels, tf.int64)

    return ds.map(normalise, num_parallel_calls=autotune).prefetch(autotune)


def _check_positive_int(value, argument, allow_none=False):
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{argument} must be a positive integer, got {value!r}.")


def _use_local(name, data_dir, local_dir):
    if local_dir is not None:
        if name not in _IDX_DATASETS:
            raise ValueError(
                f"local_dir= is only supported for {', '.join(_IDX_DATASETS)} (idx files); "
                f"use data_dir= with a prepared tfds directory for {name}.")
        return os.fspath(local_dir)
    if name == "fashion_mnist" and data_dir is None and os.path.isdir(FASHION_MNIST_DIR):
        return FASHION_MNIST_DIR
    return None


def load(name, split="train", batch_size=128, augment=None, shuffle=None, data_dir=None,
         local_dir=None, take=None, seed=None, download=True, verify=True,
         **source_kwargs):
    """Load a dataset as a batched, prefetched tf.data.Dataset; returns (dataset, info).

    Elements are (images float32 (B, H, W, C) normalised with info.mean / info.std,
    labels int64 (B,)).

    name: one of SUPPORTED.
    split: "train", "test" (SVHN also "extra"), tfds slicing like "train[:5000]",
        "train[5000:]", "train[:10%]", "train[90%:]", or such parts joined with "+".
    augment, shuffle: default True for the plain "train" split (slices too), else False.
    data_dir: tfds data directory (default ~/tensorflow_datasets).
    local_dir: directory with the original idx files (train-images-idx3-ubyte[.gz],
        train-labels-idx1-ubyte[.gz], t10k-...) of fashion_mnist or mnist; read with
        numpy instead of tfds. Fashion-MNIST uses the Debian package's directory
        (FASHION_MNIST_DIR) by default when it exists and data_dir is not given, so
        nothing tries the network; pass data_dir to use tfds instead.
    take: use only the first `take` examples of the split (tests, quick runs).
    seed: makes shuffling and augmentation reproducible.
    download: let tfds download a dataset it has not prepared yet. Offline this fails
        within seconds with DatasetUnavailableError (the host is probed first).
    verify: check the local files' SHA-256 against the original release (known for
        fashion_mnist; other local datasets get the format checks only).

    source_kwargs: for folder:PATH, tfrecord:GLOB and other tfds names
        (keras_slim.zoo.sources): image_size, channels, validation_split, split_seed.

    Raises ValueError for a bad name, split or argument, or a corrupt local file;
    FileNotFoundError for a missing local file; DatasetUnavailableError when tfds
    cannot provide the dataset.
    """
    _check_positive_int(batch_size, "batch_size")
    _check_positive_int(take, "take", allow_none=True)
    if isinstance(name, DatasetInfo) or name not in _REGISTRY or source_kwargs.get("image_size"):
        return _load_source(name, split, batch_size, augment, shuffle, data_dir, take, seed,
                            download, source_kwargs)
    spec = _spec(name)
    num_examples = _split_size(split, spec)   # validates the split for both sources
    training = _parse_split(split, spec)[0][0] == "train" and "+" not in split
    augment = training if augment is None else bool(augment)
    shuffle = training if shuffle is None else bool(shuffle)

    directory = _use_local(name, data_dir, local_dir)
    if directory is not None:
        images, labels = _local_arrays(name, split, directory, verify)
        num_examples = len(images)
        if take is not None:
            # Slice before from_tensor_slices: no need to copy the rest into TF.
            images, labels = images[:take], labels[:take]
        ds = tf.data.Dataset.from_tensor_slices((images, labels))
    else:
        ds = _tfds_dataset(name, split, data_dir, download, shuffle_files=shuffle, seed=seed)
    ds = _pipeline(ds, spec, batch_size=batch_size, augment=augment, shuffle=shuffle,
                   take=take, seed=seed, num_examples=num_examples)
    return ds, spec


def _load_source(name, split, batch_size, augment, shuffle, data_dir, take, seed, download,
                 source_kwargs):
    from keras_slim.zoo import sources

    unknown = set(source_kwargs) - set(_SOURCE_INFO_ARGS) - set(_SOURCE_LOAD_ARGS)
    if unknown:
        raise TypeError(f"load() got unexpected arguments {sorted(unknown)}.")
    spec = info(name, data_dir=data_dir,
                **{k: v for k, v in source_kwargs.items() if k in _SOURCE_INFO_ARGS})
    training = split == "train"
    augment = training if augment is None else bool(augment)
    shuffle = training if shuffle is None else bool(shuffle)
    ds = sources.dataset(spec, split, seed=seed, data_dir=data_dir, download=download,
                         shuffle_files=shuffle,
                         **{k: v for k, v in source_kwargs.items()
                            if k in _SOURCE_LOAD_ARGS and v is not None})
    num_examples = spec.num_examples.get(split if split in spec.num_examples else "test", 1)
    ds = _pipeline(ds, spec, batch_size=batch_size, augment=augment, shuffle=shuffle,
                   take=take, seed=seed, num_examples=max(num_examples, 1))
    return ds, spec


def representative_dataset(name, num_samples=200, **load_kwargs):
    """Calibration data for tf.lite.TFLiteConverter.representative_dataset.

    Returns a zero-argument callable; each call yields `num_samples` lists `[x]` with x
    float32 of shape (1, H, W, C), normalised like training and not augmented, from the
    start of the train split (override with split=..., or shuffle=True with a seed).
    The data is opened now, so a missing dataset fails here, not inside the converter.
    """
    _check_positive_int(num_samples, "num_samples")
    fixed = {"batch_size", "augment", "take"} & set(load_kwargs)
    if fixed:
        raise TypeError(f"representative_dataset sets {', '.join(sorted(fixed))} itself.")
    load_kwargs.setdefault("split", "train")
    load_kwargs.setdefault("shuffle", False)
    spec = info(name, **{k: load_kwargs.get(k) for k in _SOURCE_INFO_ARGS
                         if load_kwargs.get(k) is not None})
    available = (spec.num_examples.get(load_kwargs["split"], 0)
                 if spec.name not in _REGISTRY else _split_size(load_kwargs["split"], spec))
    if num_samples > available:
        raise ValueError(
            f"num_samples={num_samples} exceeds the {available} examples of "
            f"{name} split {load_kwargs['split']!r}.")
    ds, _ = load(name, batch_size=1, augment=False, take=num_samples, **load_kwargs)

    def generator():
        for images, _labels in ds.as_numpy_iterator():
            yield [images]

    return generator


def numpy_arrays(name, split="test", take=None, **load_kwargs):
    """(x float32 (N, H, W, C) normalised, y int64 (N,)) numpy arrays, not augmented,
    in split order; handy for evaluation. Other arguments as for load()."""
    load_kwargs.setdefault("batch_size", 4096)
    ds, _ = load(name, split, augment=False, shuffle=False, take=take, **load_kwargs)
    xs, ys = [], []
    for x, y in ds.as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)

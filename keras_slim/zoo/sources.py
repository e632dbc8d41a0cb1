"""Datasets from where users keep them: an image folder, TFRecord files, any tfds name.

`keras_slim.zoo.data.load` / `info` hand these names here:

* ``folder:PATH`` — one sub-folder of PATH per class (class names: the sub-folders'
  names, sorted), images as .jpg/.jpeg/.png/.bmp/.gif, read and resized to
  ``image_size`` by `keras.utils.image_dataset_from_directory`. A seeded random
  ``validation_split`` of the files is the "test" (= "validation") split.
* ``tfrecord:GLOB`` — TFRecord files of `tf.train.Example`s with the features of
  `TFRECORD_FEATURES`: ``image`` (bytes: one encoded JPEG/PNG/BMP/GIF image) and
  ``label`` (int64 class index). Class names come from a ``labels.txt`` (one name a
  line, in class order) next to the first file, else "0".."N-1". Every k-th example
  (k = round(1 / validation_split)) is the "test" split.
* any other name — a TensorFlow Datasets name with (image, label) supervised keys;
  images resized to ``image_size`` when the dataset has no fixed size or a different
  one.

Images are normalised as ``(pixel / 255 - 0.5) / 0.5`` (to [-1, 1], what
keras.applications' MobileNets expect); the mean and std travel in DatasetInfo and from
there into the .tflite metadata.
"""
import glob
import os

import tensorflow as tf

__all__ = ["FOLDER", "TFRECORD", "TFRECORD_FEATURES", "IMAGE_EXTENSIONS", "is_source",
           "info", "dataset", "DEFAULT_IMAGE_SIZE"]

FOLDER, TFRECORD = "folder:", "tfrecord:"
TFRECORD_FEATURES = {"image": tf.io.FixedLenFeature([], tf.string),
                     "label": tf.io.FixedLenFeature([], tf.int64)}
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # what Keras' reader lists
DEFAULT_IMAGE_SIZE = 224
_MEAN, _STD = 0.5, 0.5
_SPLITS = {"train": "training", "test": "validation", "validation": "validation"}
# File signatures of the formats tf.io.decode_image reads.
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


def is_source(name):
    """True for folder:/tfrecord: names (not the built-in registry, not tfds)."""
    return isinstance(name, str) and name.startswith((FOLDER, TFRECORD))


def _size(image_size):
    size = DEFAULT_IMAGE_SIZE if image_size is None else image_size
    if isinstance(size, int):
        size = (size, size)
    if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1
                             for s in size):
        raise ValueError(f"image_size must be a positive int or (height, width). "
                         f"Received: {image_size!r}")
    return tuple(size)


def _check_split(split, name):
    if split not in _SPLITS:
        raise ValueError(f"Invalid split {split!r} for {name}: use 'train' or 'test' "
                         f"('validation'); the split comes from validation_split.")
    return _SPLITS[split]


def _check_fraction(validation_split):
    if not 0.0 < validation_split < 1.0:
        raise ValueError(f"validation_split must be in (0, 1). Received: {validation_split!r}")


# ------------------------------------------------------------------------ folder

def _scan_folder(root):
    """{class name: [image paths]} of an image folder, checked: ≥ 2 classes, none empty,
    every image file starts like an image."""
    if not os.path.isdir(root):
        raise ValueError(f"{FOLDER}{root}: no such directory.")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if len(classes) < 2:
        raise ValueError(f"{FOLDER}{root} has {len(classes)} class sub-folder(s) "
                         f"({', '.join(classes) or 'none'}); a classifier needs one "
                         f"sub-folder per class and at least 2 classes.")
    files = {}
    for name in classes:
        folder = os.path.join(root, name)
        paths = sorted(os.path.join(dirpath, f) for dirpath, _, names in os.walk(folder)
                       for f in names if f.lower().endswith(IMAGE_EXTENSIONS))
        if not paths:
            raise ValueError(f"class folder {folder} holds no images "
                             f"({', '.join(IMAGE_EXTENSIONS)}).")
        for path in paths:
            with open(path, "rb") as f:
                head = f.read(8)
            if not head.startswith(_MAGIC):
                raise ValueError(f"{path} is not a readable image (not JPEG, PNG, GIF or "
                                 f"BMP data); remove or replace it.")
        files[name] = paths
    return files


def _folder_info(name, root, image_size, channels, validation_split):
    from keras_slim.zoo.data import DatasetInfo

    files = _scan_folder(root)
    total = sum(len(p) for p in files.values())
    validation = int(validation_split * total)  # Keras' own rounding
    return DatasetInfo(name, _size(image_size) + (channels,), len(files), tuple(files),
                       (_MEAN,) * channels, (_STD,) * channels,
                       {"train": total - validation, "test": validation},
                       augmentation=("flip",))


def _folder_dataset(spec, root, split, seed):
    from keras_slim.compat import keras

    subset = _check_split(split, spec.name)
    fraction = spec.num_examples["test"] / (spec.num_examples["train"]
                                            + spec.num_examples["test"])
    # Keras splits the file list after shuffling it with `seed`: the same seed gives the
    # same, disjoint train and validation files in every call.
    return keras.utils.image_dataset_from_directory(
        root, labels="inferred", label_mode="int", class_names=list(spec.label_names),
        color_mode="grayscale" if spec.input_shape[-1] == 1 else "rgb",
        batch_size=None, image_size=spec.input_shape[:2], shuffle=True, seed=seed,
        validation_split=fraction if fraction > 0 else None,
        subset=subset if fraction > 0 else None)


# ---------------------------------------------------------------------- tfrecord

def _tfrecord_files(pattern):
    files = sorted(glob.glob(pattern))
    if not files:
        raise ValueError(f"{TFRECORD}{pattern} matches no file.")
    return files


def _parse_example(channels, size):
    def parse(record):
        example = tf.io.parse_single_example(record, TFRECORD_FEATURES)
        image = tf.io.decode_image(example["image"], channels=channels,
                                   expand_animations=False)
        image = tf.image.resize(image, size)
        return image, example["label"]
    return parse


def _tfrecord_info(name, pattern, image_size, channels, validation_split):
    from keras_slim.zoo.data import DatasetInfo

    files = _tfrecord_files(pattern)
    try:
        labels = [int(example["label"]) for example in tf.data.TFRecordDataset(files).map(
            lambda r: tf.io.parse_single_example(r, {"label": TFRECORD_FEATURES["label"]}))]
    except tf.errors.OpError as e:
        raise ValueError(f"{TFRECORD}{pattern}: cannot read the (image, label) examples "
                         f"({e.message.splitlines()[0]}); each needs the features "
                         f"{sorted(TFRECORD_FEATURES)} (keras_slim.zoo.sources."
                         f"TFRECORD_FEATURES).") from None
    if not labels:
        raise ValueError(f"{TFRECORD}{pattern} holds no examples.")
    labels_txt = os.path.join(os.path.dirname(files[0]), "labels.txt")
    if os.path.isfile(labels_txt):
        with open(labels_txt) as f:
            names = tuple(line.strip() for line in f if line.strip())
    else:
        names = tuple(str(i) for i in range(max(labels) + 1))
    if min(labels) < 0 or max(labels) >= len(names):
        raise ValueError(f"{TFRECORD}{pattern} has labels {min(labels)}..{max(labels)} but "
                         f"{len(names)} class names ({labels_txt}).")
    every = max(2, round(1 / validation_split))
    test = len(range(0, len(labels), every))
    return DatasetInfo(name, _size(image_size) + (channels,), len(names), names,
                       (_MEAN,) * channels, (_STD,) * channels,
                       {"train": len(labels) - test, "test": test}, augmentation=("flip",))


def _tfrecord_dataset(spec, pattern, split, validation_split):
    subset = _check_split(split, spec.name)
    every = max(2, round(1 / validation_split))
    ds = tf.data.TFRecordDataset(_tfrecord_files(pattern)).enumerate()
    keep = (lambda i, _: i % every == 0) if subset == "validation" \
        else (lambda i, _: i % every != 0)
    ds = ds.filter(keep).map(lambda _, record: record)
    return ds.map(_parse_example(spec.input_shape[-1], spec.input_shape[:2]),
                  num_parallel_calls=tf.data.AUTOTUNE)


# -------------------------------------------------------------------------- tfds

def _tfds_info(name, image_size, data_dir=None):
    from keras_slim.zoo.data import SUPPORTED, DatasetInfo

    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # noqa: BLE001 - tfds raises several kinds for unknown names
        raise ValueError(f"Unknown dataset {name!r}: not a tensorflow_datasets name "
                         f"({type(e).__name__}), nor {FOLDER}PATH or {TFRECORD}GLOB. "
                         f"Supported datasets: {', '.join(SUPPORTED)}, any tfds image "
                         f"classification name, {FOLDER}PATH, {TFRECORD}GLOB.") from None
    keys = builder.info.supervised_keys
    if not keys or len(keys) != 2:
        raise ValueError(f"tfds dataset {name!r} has no (image, label) supervised keys.")
    image, label = (builder.info.features[k] for k in keys)
    shape = tuple(image.shape)
    if image_size is not None or None in shape[:2]:
        shape = _size(image_size) + shape[2:]
    names = tuple(label.names) if getattr(label, "names", None) else \
        tuple(str(i) for i in range(label.num_classes))
    splits = {k: v.num_examples for k, v in builder.info.splits.items()}
    return DatasetInfo(name, shape, label.num_classes, names, (_MEAN,) * shape[-1],
                       (_STD,) * shape[-1], splits)


# ------------------------------------------------------------------------ public

def info(name, image_size=None, channels=3, validation_split=0.2, data_dir=None):
    """DatasetInfo of a folder:, tfrecord: or tfds name (reads the folder listing / the
    TFRecord labels; no images)."""
    if name.startswith(FOLDER):
        _check_fraction(validation_split)
        return _folder_info(name, name[len(FOLDER):], image_size, channels,
                            validation_split)
    if name.startswith(TFRECORD):
        _check_fraction(validation_split)
        return _tfrecord_info(name, name[len(TFRECORD):], image_size, channels,
                              validation_split)
    return _tfds_info(name, image_size, data_dir)


def dataset(spec, split, seed=None, validation_split=0.2, split_seed=0, data_dir=None,
            download=True, shuffle_files=False):
    """Unbatched (image float/uint8 (H, W, C) on the 0..255 scale, int label) pairs of
    `split`, sized to spec.input_shape, for keras_slim.zoo.data's pipeline. split_seed
    picks the folder's validation files: the same in the train and test calls."""
    name = spec.name
    if name.startswith(FOLDER):
        return _folder_dataset(spec, name[len(FOLDER):], split, split_seed)
    if name.startswith(TFRECORD):
        return _tfrecord_dataset(spec, name[len(TFRECORD):], split, validation_split)
    from keras_slim.zoo.data import _tfds_dataset

    ds = _tfds_dataset(name, split, data_dir, download, shuffle_files, seed)
    size = spec.input_shape[:2]
    return ds.map(lambda x, y: (tf.image.resize(x, size), y),
                  num_parallel_calls=tf.data.AUTOTUNE)

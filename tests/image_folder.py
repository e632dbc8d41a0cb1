"""A small labelled image folder written as real PNG/JPEG files (tests of folder:PATH,
tfrecord:GLOB and the tutorial): each class is a colour and a shape, easy to learn."""
import os

import numpy as np
import tensorflow as tf

CLASSES = ("red_square", "green_disc", "blue_bar")


def _image(kind, size, rng):
    yy, xx = np.mgrid[:size, :size] / size
    cy, cx = rng.uniform(0.35, 0.65, 2)
    if kind == 0:
        mask = (abs(yy - cy) < 0.25) & (abs(xx - cx) < 0.25)
    elif kind == 1:
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < 0.3 ** 2
    else:
        mask = abs(xx - cx) < 0.1
    image = rng.integers(0, 60, (size, size, 3))          # dark noisy background
    image[mask] = np.clip(rng.integers(140, 256, 3) * (np.arange(3) == kind)
                          + rng.integers(0, 60, 3), 0, 255)
    return image.astype(np.uint8)


def write_image_folder(root, per_class=20, size=40, classes=CLASSES, seed=0):
    """root/<class>/<i>.png|jpg, alternating formats; returns root."""
    rng = np.random.default_rng(seed)
    for kind, name in enumerate(classes):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(per_class):
            image = _image(kind % 3, size, rng)
            if i % 2:
                data, ext = tf.io.encode_jpeg(image, quality=95), "jpg"
            else:
                data, ext = tf.io.encode_png(image), "png"
            with open(os.path.join(root, name, f"{i}.{ext}"), "wb") as f:
                f.write(data.numpy())
    return str(root)


def write_tfrecord(path, per_class=10, size=24, seed=0):
    """The same task as TFRecord examples with the keras_slim.zoo.sources feature spec."""
    rng = np.random.default_rng(seed)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(per_class * len(CLASSES)):
            kind = i % len(CLASSES)
            png = tf.io.encode_png(_image(kind, size, rng)).numpy()
            example = tf.train.Example(features=tf.train.Features(feature={
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[kind]))}))
            writer.write(example.SerializeToString())
    return str(path)

"""TensorBoard active-channel maps of DCE."""
import glob

import numpy as np
import pytest
import tensorflow as tf

from keras_slim.compat import keras
from keras_slim.dce.callback import CUCBCallback
from keras_slim.dce.tensorboard import ActiveChannelLogger
from keras_slim.dce.gates import gate_model

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def net():
    i = keras.Input((6, 6, 3))
    x = keras.layers.ReLU(name="r1")(keras.layers.Conv2D(8, 3, padding="same", name="c1")(i))
    x = keras.layers.ReLU(name="r2")(keras.layers.Conv2D(4, 3, padding="same", name="c2")(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(i, keras.layers.Dense(2)(x))


def events(log_dir):
    """{tag: [(step, tensor)]} from the event files."""
    out = {}
    for path in glob.glob(f"{log_dir}/events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                out.setdefault(value.tag, []).append(
                    (event.step, tf.make_ndarray(value.tensor)))
    return out


def test_active_share_image_matches_the_bandit_counts(tmp_path):
    gated = gate_model(net(), 0.5)
    gated.compile(optimizer="sgd", loss=LOSS)
    cucb = CUCBCallback(warmup_steps=2, seed=1)
    logger = ActiveChannelLogger(cucb, tmp_path, every_steps=2, cell=3)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6, 6, 3)).astype("float32")
    gated.fit(x, rng.integers(0, 2, 40), batch_size=8, epochs=1, verbose=0,
              callbacks=[cucb, logger])
    found = events(tmp_path)
    assert {"dce/active_share", "dce/current_mask", "dce/mean_saliency/c1",
            "dce/mean_saliency/c2"} <= set(found)
    assert [step for step, _ in found["dce/active_share"]] == [2, 4, 5]  # every 2 + epoch end
    png = found["dce/active_share"][-1][1][2]  # image summaries: [width, height, png...]
    image = tf.io.decode_png(png).numpy()[..., 0].astype(np.float64)
    assert image.shape == (2 * 3, 8 * 3)  # 2 groups x 8 channels (c2 padded), 3 px cells
    cells = image[::3, ::3] / 255
    bandits = cucb.bandits
    np.testing.assert_allclose(cells[0], bandits["c1"].T / 5, atol=1 / 255)
    np.testing.assert_allclose(cells[1, :4], bandits["c2"].T / 5, atol=1 / 255)
    assert (cells[1, 4:] == 0).all()
    mask = tf.io.decode_png(found["dce/current_mask"][-1][1][2]).numpy()[::3, ::3, 0] / 255
    assert mask[0].sum() == 4 and mask[1, :4].sum() == 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="every_steps"):
        ActiveChannelLogger(CUCBCallback(), "/tmp/x", every_steps=0)
    with pytest.raises(ValueError, match="no bandit yet"):
        ActiveChannelLogger(CUCBCallback(), "/tmp/x").images()

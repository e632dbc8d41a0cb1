"""Compact execution: a compact-gated model computes exactly what the masked one does,
on the active channels only."""
import numpy as np
import pytest
import tensorflow as tf

from keras_slim.compat import keras
from keras_slim.dce.callback import CUCBCallback
from keras_slim.dce.compact import ChannelExpand, GatedBatchNormalization, GatedConv2D
from keras_slim.dce.gates import (ChannelGate, compact_summary, gate_model, gates_of,
                                  strip_gates)
from keras_slim.serialization import load_model
from keras_slim.zoo import models

B, S, W = 8, 8, 8
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def vgg_chain():
    """conv-BN-ReLU, pool, conv-BN-ReLU (bias), conv with fused relu: a plain chain."""
    i = keras.Input((S, S, 3))
    x = keras.layers.Conv2D(W, 3, padding="same", use_bias=False, name="c1")(i)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="r1")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Conv2D(W, 3, padding="same", name="c2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.Activation("relu", name="r2")(x)
    x = keras.layers.Conv2D(W, 3, padding="same", activation="relu", name="c3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(i, keras.layers.Dense(3, name="out")(x), name="chain")


def residual():
    i = keras.Input((S, S, 3))
    x = keras.layers.Conv2D(W, 3, padding="same", name="stem")(i)
    x = keras.layers.ReLU(name="stem_relu")(keras.layers.BatchNormalization(name="stem_bn")(x))
    y = keras.layers.Conv2D(W, 3, padding="same", name="b1")(x)
    y = keras.layers.ReLU(name="b1_relu")(keras.layers.BatchNormalization(name="b1_bn")(y))
    y = keras.layers.Conv2D(W, 3, padding="same", name="b2")(y)
    y = keras.layers.BatchNormalization(name="b2_bn")(y)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(i, keras.layers.Dense(3, name="out")(x), name="residual")


def resnet_a():
    """Zoo CIFAR ResNet, option A (ChannelZeroPad shortcuts): the stream is one group of
    16 + 16 + 32 channels held by 16-, 32- and 64-channel tensors."""
    return models.resnet(depth=8, input_shape=(S, S, 3), num_classes=3, shortcut="A")


def resnet_b():
    """Zoo CIFAR ResNet, option B (1x1 conv + BN projection shortcuts)."""
    return models.resnet(depth=8, input_shape=(S, S, 3), num_classes=3, shortcut="B")


def se_block():
    """conv-BN-ReLU, squeeze-excite with 1x1 convs on a (B, 1, 1, C) map, conv."""
    i = keras.Input((S, S, 3))
    x = keras.layers.Conv2D(W, 3, padding="same", use_bias=False, name="c1")(i)
    x = keras.layers.ReLU(name="r1")(keras.layers.BatchNormalization(name="bn1")(x))
    s = keras.layers.GlobalAveragePooling2D(keepdims=True, name="squeeze")(x)
    s = keras.layers.Conv2D(4, 1, activation="relu", name="se_reduce")(s)
    s = keras.layers.Conv2D(W, 1, name="se_expand")(s)
    s = keras.layers.Activation("sigmoid", name="se_sigmoid")(s)
    x = keras.layers.Multiply(name="excite")([x, s])
    x = keras.layers.Conv2D(W, 3, padding="same", name="c2")(x)
    x = keras.layers.ReLU(name="r2")(keras.layers.BatchNormalization(name="bn2")(x))
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(i, keras.layers.Dense(3, name="out")(x), name="se")


def inverted_residual(depth_multiplier=1):
    """MobileNetV2 inverted residuals as in the zoo: 1x1 expand-BN-ReLU6, 3x3 depthwise-
    BN-ReLU6, 1x1 project-BN, added to the input."""
    i = keras.Input((S, S, 3))
    x = keras.layers.Conv2D(W, 3, padding="same", use_bias=False, name="stem")(i)
    x = keras.layers.ReLU(6.0, name="stem_relu")(
        keras.layers.BatchNormalization(name="stem_bn")(x))
    for b in (1, 2):
        y = keras.layers.Conv2D(2 * W, 1, use_bias=False, name=f"b{b}_expand")(x)
        y = keras.layers.ReLU(6.0, name=f"b{b}_expand_relu")(
            keras.layers.BatchNormalization(name=f"b{b}_expand_bn")(y))
        y = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False,
                                         depth_multiplier=depth_multiplier,
                                         name=f"b{b}_dw")(y)
        y = keras.layers.ReLU(6.0, name=f"b{b}_dw_relu")(
            keras.layers.BatchNormalization(name=f"b{b}_dw_bn")(y))
        y = keras.layers.Conv2D(W, 1, use_bias=False, name=f"b{b}_project")(y)
        y = keras.layers.BatchNormalization(name=f"b{b}_project_bn")(y)
        x = keras.layers.Add(name=f"b{b}_add")([x, y])
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(i, keras.layers.Dense(3, name="out")(x), name="inverted_residual")


def frozen_bn_chain():
    """vgg_chain with a frozen BN: it normalises with its moving statistics in training."""
    model = vgg_chain()
    model.get_layer("bn1").trainable = False
    return model


def batch(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, S, S, 3)).astype("float32")
    return x, rng.integers(0, 3, B)


def pair(model, fraction, seed=3):
    """The compact and the masked gated copies of `model`, with the same active sets."""
    out = []
    for compact in (True, False):
        gated = gate_model(model, fraction, compact=compact)
        callback = CUCBCallback(warmup_steps=5, seed=seed)
        callback.attach(gated)
        callback.begin_step()
        out.append((gated, callback))
    assert {n: list(a) for n, a in out[0][1].active.items()} == \
        {n: list(a) for n, a in out[1][1].active.items()}
    return out


def sgd_step(model):
    """One SGD training step on batch(); returns the loss."""
    x, y = batch()
    weights = model.trainable_weights
    with tf.GradientTape() as tape:
        loss = LOSS(y, model(x, training=True))
    grads = tape.gradient(loss, weights)
    keras.optimizers.SGD(0.1).apply_gradients(zip(grads, weights))
    return float(loss)


def test_plain_chain_layers_go_compact():
    model = vgg_chain()
    gated = gate_model(model, 0.5)
    kinds = {layer.name: type(layer) for layer in gated.layers}
    assert kinds["c1"] is GatedConv2D and kinds["c2"] is GatedConv2D
    assert kinds["c3"] is GatedConv2D and kinds["bn1"] is GatedBatchNormalization
    assert set(gated.get_layer("c1").indices) == {"out_index"}  # reads the image
    assert gated.get_layer("c2").indices["in_index"][:2] == ["c1", 4]  # via the max-pool
    assert gated.get_layer("c3").indices["in_index"][:2] == ["c2", 4]
    # only the Dense head's edge is expanded back to full width
    assert kinds["out_expand"] is ChannelExpand
    assert [layer.name for layer in gated.layers][-3:] == ["gap", "out_expand", "out"]
    assert all(g.active == 4 and not g.expand for g in gates_of(gated))
    assert type(model.get_layer("c1")) is keras.layers.Conv2D  # user model untouched
    # at p = 1 nothing is saved: masking only
    assert not any(isinstance(layer, GatedConv2D) for layer in gate_model(model, 1.0).layers)
    assert set(compact_summary(model, 1.0).values()) == {
        "every channel is active at this fraction (nothing to save)"}


def test_coupled_groups_run_compact():
    gated = gate_model(residual(), 0.5)
    kinds = {layer.name: type(layer).__name__ for layer in gated.layers}
    assert kinds["stem"] == kinds["b1"] == kinds["b2"] == "GatedConv2D"  # Add group too
    assert kinds["b2_bn"] == "GatedBatchNormalization"
    assert kinds["add"] == "Add" and kinds["out_expand"] == "ChannelExpand"
    assert all(g.active == 4 for g in gates_of(gated))
    assert compact_summary(gated) == {"stem": None, "b1": None}
    # option A: the 64-channel stream plays 8 + 8 + 16 channels in three segments, so
    # the 16-, 32- and 64-channel tensors each have half their channels active
    gated = gate_model(resnet_a(), 0.5)
    callback = CUCBCallback()
    callback.attach(gated)
    stream = callback.bandits["stem_conv"]
    assert [(len(arms), k) for arms, k in stream.segment_counts()] == [(16, 8), (16, 8),
                                                                       (32, 16)]
    pad = gated.get_layer("stage2_block1_shortcut_pad")
    assert type(pad).__name__ == "GatedChannelZeroPad" and pad.out_index.shape[0] == 16
    assert gated.get_layer("stage3_block1_conv2").out_index.shape[0] == 32
    restored = CUCBCallback().set_state(callback.get_state())
    assert [len(a) for a, _ in restored.bandits["stem_conv"].segment_counts()] == [16, 16,
                                                                                   32]
    restored.attach(gated)  # the same model: its segments match
    state = callback.get_state()  # as if saved for a model that splits the stream in two
    state["bandits"]["stem_conv"]["segments"] = [[list(range(32)), 16],
                                                 [list(range(32, 64)), 16]]
    with pytest.raises(ValueError, match=r"group 'stem_conv' splits its 64 channels into "
                                         r"segments \[32, 32\], the model's gates into "
                                         r"\[16, 16, 32\]"):
        CUCBCallback().set_state(state).attach(gated)
    state["bandits"]["stem_conv"]["segments"] = None  # saved with one segment
    with pytest.raises(ValueError, match=r"segments \[64\], the model's gates into"):
        CUCBCallback().set_state(state).attach(gated)
    del state["bandits"]["stem_conv"]["segments"]  # saved before segments: re-segmented
    legacy = CUCBCallback().set_state(state)
    legacy.attach(gated)
    assert [len(a) for a, _ in legacy.bandits["stem_conv"].segment_counts()] == [16, 16, 32]
    for _ in range(3):
        callback.begin_step()
        active = callback.active["stem_conv"]
        assert [len(np.intersect1d(active, arms)) for arms, _ in stream.segment_counts()] \
            == [8, 8, 16]


@pytest.mark.parametrize("build", [vgg_chain, frozen_bn_chain, residual, resnet_a,
                                   resnet_b, se_block, inverted_residual])
def test_compact_step_equals_masked_step(build):
    """Loss, updated weights, BN statistics of the active channels and saliency of one
    SGD step are those of the masked step, on the same batch and active set."""
    model = build()
    (compact, _), (masked, _) = pair(model, 0.5)
    assert all(v is None for v in compact_summary(compact).values())
    assert any(isinstance(layer, GatedConv2D) and "in_index" in layer.indices
               for layer in compact.layers)
    if build is frozen_bn_chain:
        assert not compact.get_layer("bn1").trainable and not masked.get_layer("bn1").trainable
    losses = [sgd_step(gated) for gated in (compact, masked)]
    assert abs(losses[0] - losses[1]) <= 1e-5
    weights = [w.numpy() for w in compact.trainable_weights]
    for w, twin in zip(weights, [w.numpy() for w in masked.trainable_weights]):
        np.testing.assert_allclose(w, twin, rtol=1e-5, atol=1e-5)
    for layer in compact.layers:
        if not isinstance(layer, (GatedBatchNormalization, ChannelGate)):
            continue
        twin = masked.get_layer(layer.name)
        if isinstance(layer, GatedBatchNormalization):
            on = layer.index.numpy()
            for stat in ("moving_mean", "moving_variance"):
                np.testing.assert_allclose(getattr(layer, stat).numpy()[on],
                                           getattr(twin, stat).numpy()[on],
                                           rtol=1e-5, atol=1e-6, err_msg=layer.name)
        if isinstance(layer, ChannelGate):
            on = layer.index.numpy()
            assert (layer.saliency.numpy()[on] > 0).any()
            np.testing.assert_allclose(layer.saliency.numpy()[on],
                                       twin.saliency.numpy()[on], rtol=1e-4, atol=1e-9,
                                       err_msg=layer.name)
            off = np.setdiff1d(np.arange(layer.saliency.shape[0]), on)
            assert (layer.saliency.numpy()[off] == 0).all()  # not computed


def test_masked_gates_behind_a_depthwise_bn_keep_switched_off_channels_zero():
    """Without the gate behind b1_dw_relu, BN's β would switch the expand group's off
    channels on again before the projection conv (masked and compact would differ)."""
    gated = gate_model(inverted_residual(), 0.5, compact=False)
    gate = gated.get_layer("b1_dw_relu_gate")
    assert gate.group == "b1_expand"
    callback = CUCBCallback(warmup_steps=5)
    callback.attach(gated)
    callback.begin_step()
    probe = keras.Model(gated.input, gated.get_layer("b1_project").input)
    x, _ = batch()
    reaching = probe(x, training=True).numpy()
    off = np.setdiff1d(np.arange(2 * W), callback.active["b1_expand"])
    assert (reaching[..., off] == 0).all() and (reaching[..., callback.active[
        "b1_expand"]] != 0).any()


def test_compact_summary_names_the_groups_that_mask():
    i = keras.Input((S, S, 3))
    a = keras.layers.Conv2D(W, 3, padding="same", name="a")(i)
    b = keras.layers.Conv2D(W, 3, padding="same", name="b")(a)
    x = keras.layers.Concatenate(name="concat_3")([a, b])
    x = keras.layers.Conv2D(W, 3, padding="same", name="c")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(i, keras.layers.Dense(3, name="out")(x))
    assert compact_summary(model, 0.5) == {
        "a": "Concatenate 'concat_3' mixes groups",
        "b": "Concatenate 'concat_3' mixes groups", "c": None}
    gated = gate_model(model, 0.5)
    assert type(gated.get_layer("a")).__name__ == "Conv2D"
    assert type(gated.get_layer("c")).__name__ == "GatedConv2D"
    summary = compact_summary(inverted_residual(depth_multiplier=2), 0.5)
    assert summary["b1_expand"] == "DepthwiseConv2D 'b1_dw' depth_multiplier=2"
    with pytest.raises(ValueError, match="pass the fraction"):
        compact_summary(model)
    masked = compact_summary(gate_model(model, 0.5, compact=False))
    assert set(masked.values()) == {"compact=False: masked"}


def _chain_with(layer):
    i = keras.Input((S, S, 3))
    x = keras.layers.Conv2D(W, 3, padding="same", name="c1")(i)
    x = layer(x)
    x = keras.layers.Conv2D(W, 3, padding="same", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(i, keras.layers.Dense(3, name="out")(x))


def test_settings_without_a_compact_form_mask_and_say_why():
    noisy = _chain_with(keras.layers.Dropout(0.5, noise_shape=(None, 1, 1, W), name="drop"))
    assert compact_summary(noisy, 0.5)["c1"] == \
        f"Dropout 'drop' noise_shape={noisy.get_layer('drop').get_config()['noise_shape']}"
    (compact, _), (masked, _) = pair(noisy, 0.5)
    assert sgd_step(compact) > 0  # trains (masked), no shape error
    if "renorm" in keras.layers.BatchNormalization().get_config():  # tf_keras only
        renorm = _chain_with(keras.layers.BatchNormalization(renorm=True, name="bn"))
        assert compact_summary(renorm, 0.5)["c1"] == "BatchNormalization 'bn' renorm=True"


def test_an_operation_node_on_a_leaking_path_gets_no_gate_and_steps_agree():
    """x * 2.0 after global pooling is a Keras 3 operation node (a TFOpLambda layer in
    tf_keras): gate_model must not try to insert a gate behind it."""
    i = keras.Input((S, S, 3))
    x = keras.layers.Conv2D(W, 3, padding="same", name="c1")(i)
    x = keras.layers.ReLU(name="r1")(x)
    x = keras.layers.Conv2D(W, 3, padding="same", name="c2")(x)
    x = keras.layers.ReLU(name="r2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(i, keras.layers.Dense(3, name="out")(x * 2.0))
    (compact, _), (masked, _) = pair(model, 0.5)
    assert abs(sgd_step(compact) - sgd_step(masked)) <= 1e-5


def test_a_gated_layer_saved_by_the_old_format_is_a_clear_error():
    config = keras.layers.Conv2D(W, 3, name="old").get_config()
    config.update(group="old", active=4, input_group=None, input_active=None)
    with pytest.raises((TypeError, ValueError), match="'old' was saved by an older keras-slim"):
        GatedConv2D.from_config(config)  # Keras wraps it in a TypeError naming the class


def test_fit_on_a_gated_resnet_strips_to_the_plain_architecture(tmp_path):
    model = resnet_a()
    gated = gate_model(model, 0.5)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3 * B, S, S, 3)).astype("float32")
    y = rng.integers(0, 3, len(x))
    gated.compile(optimizer="sgd", loss=LOSS)
    gated.fit(x, y, batch_size=B, epochs=1, callbacks=[CUCBCallback(warmup_steps=1)],
              verbose=0)
    path = str(tmp_path / "gated.keras")
    gated.save(path)
    loaded = load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), gated.predict(x, verbose=0),
                               atol=1e-5)
    plain = strip_gates(gated)
    assert [(type(a).__name__, a.name) for a in plain.layers] == \
        [(type(a).__name__, a.name) for a in model.layers]
    np.testing.assert_allclose(plain.predict(x, verbose=0), gated.predict(x, verbose=0),
                               atol=1e-5)


def test_inactive_filters_get_zero_gradient_and_keep_moving_stats():
    (compact, callback), _ = pair(vgg_chain(), 0.5)
    x, y = batch()
    c2, bn2 = compact.get_layer("c2"), compact.get_layer("bn2")
    moving = bn2.moving_mean.numpy().copy()
    with tf.GradientTape() as tape:
        loss = LOSS(y, compact(x, training=True))
    kernel = tf.convert_to_tensor(tape.gradient(loss, c2.kernel)).numpy()
    on = callback.active["c2"]
    off = np.setdiff1d(np.arange(W), on)
    assert (kernel[..., off] == 0).all() and (np.abs(kernel[..., on]) > 0).any()
    off_in = np.setdiff1d(np.arange(W), callback.active["c1"])  # inactive input channels
    assert (kernel[:, :, off_in, :] == 0).all()
    after = bn2.moving_mean.numpy()
    assert (after[off] == moving[off]).all() and (after[on] != moving[on]).all()


def test_fit_changes_active_sets_and_strips_to_the_plain_model(tmp_path):
    model = vgg_chain()
    gated = gate_model(model, 0.5)
    callback = CUCBCallback(warmup_steps=1, seed=0)
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(self.model.get_layer("c2").out_index.numpy().tolist())

    rng = np.random.default_rng(1)
    x = rng.normal(size=(6 * B, S, S, 3)).astype("float32")
    y = rng.integers(0, 3, len(x))
    gated.compile(optimizer="adam", loss=LOSS)
    gated.fit(x, y, batch_size=B, epochs=2, callbacks=[callback, Record()], verbose=0)
    assert len(seen) == 12 and len({tuple(s) for s in seen}) > 1
    assert int(callback.bandits["c2"].T.sum()) == 12 * 4  # 4 of 8 channels each step
    path = str(tmp_path / "gated.keras")
    gated.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), gated.predict(x, verbose=0),
                               atol=1e-5)
    plain = strip_gates(gated)
    assert {type(layer).__name__ for layer in plain.layers} >= {"Conv2D",
                                                                "BatchNormalization"}
    assert not any(isinstance(layer, (GatedConv2D, GatedBatchNormalization, ChannelGate))
                   for layer in plain.layers)
    np.testing.assert_allclose(plain.predict(x, verbose=0), gated.predict(x, verbose=0),
                               atol=1e-5)


def test_callback_fraction_must_match_compact_gates():
    gated = gate_model(vgg_chain(), 0.5)
    with pytest.raises(ValueError, match=r"layer 'c1'.*compact execution.*4 active.*plays 2"):
        CUCBCallback(fraction=0.25).attach(gated)


def test_fraction_one_skips_the_mask_but_still_records_saliency():
    gated = gate_model(vgg_chain(), 1.0)
    x, y = batch()
    with tf.GradientTape() as tape:
        loss = LOSS(y, gated(x, training=True))
    tape.gradient(loss, gated.trainable_weights)
    assert all((g.saliency.numpy() > 0).all() for g in gates_of(gated))
    with pytest.raises(ValueError, match=r"fraction 1 .*plays 4 of 8"):
        CUCBCallback(fraction=0.5).attach(gated)

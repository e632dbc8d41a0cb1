"""Compact execution: a compact-gated model computes exactly what the masked one does,
on the active channels only."""
import numpy as np
import pytest
import tensorflow as tf

from keras_slim.dce.compact import GatedBatchNormalization, GatedConv2D
from keras_slim.compat import keras
from keras_slim.dce.callback import CUCBCallback
from keras_slim.dce.gates import ChannelGate, gate_model, gates_of, strip_gates

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


def test_plain_chain_layers_go_compact_and_the_last_gate_expands():
    model = vgg_chain()
    gated = gate_model(model, 0.5)
    kinds = {layer.name: type(layer) for layer in gated.layers}
    assert kinds["c1"] is GatedConv2D and kinds["c2"] is GatedConv2D
    assert kinds["c3"] is GatedConv2D and kinds["bn1"] is GatedBatchNormalization
    assert gated.get_layer("c1").input_group is None  # reads the image
    assert gated.get_layer("c2").input_group == "c1"  # through the max-pool, compact
    assert gated.get_layer("c3").input_group == "c2"
    expand = {g.name: g.expand for g in gates_of(gated)}
    assert expand == {"c1_gate": False, "r2_gate": False, "c3_gate": True} or \
        expand == {"c1_gate": False, "c2_gate": False, "c3_gate": True}
    assert all(g.active == 4 for g in gates_of(gated))
    assert type(model.get_layer("c1")) is keras.layers.Conv2D  # user model untouched
    # at p = 1 nothing is saved: masking only
    assert not any(isinstance(layer, GatedConv2D) for layer in gate_model(model, 1.0).layers)


def test_coupled_groups_fall_back_to_masking():
    gated = gate_model(residual(), 0.5)
    kinds = {layer.name: type(layer).__name__ for layer in gated.layers}
    assert kinds["stem"] == "Conv2D" and kinds["b2"] == "Conv2D"  # the Add group: masked
    assert kinds["b1"] == "GatedConv2D"                            # plain inner conv
    b1_gate = next(g for g in gates_of(gated) if g.group == "b1")
    assert b1_gate.active == 4 and b1_gate.expand  # b2 is masked: it needs full width
    stem_gates = [g for g in gates_of(gated) if g.group != "b1"]
    assert stem_gates and all(g.active is None for g in stem_gates)


@pytest.mark.parametrize("build", [vgg_chain, residual])
def test_compact_step_equals_masked_step(build):
    model = build()
    (compact, c_cb), (masked, m_cb) = pair(model, 0.5)
    x, y = batch()
    results = []
    for gated in (compact, masked):
        weights = gated.trainable_weights
        with tf.GradientTape() as tape:
            logits = gated(x, training=True)
            loss = LOSS(y, logits)
        grads = {w.path if hasattr(w, "path") else w.name: g
                 for w, g in zip(weights, tape.gradient(loss, weights))}
        results.append((logits.numpy(), grads))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-4, atol=1e-5)
    assert results[0][1].keys() == results[1][1].keys()
    for name, grad in results[0][1].items():
        np.testing.assert_allclose(tf.convert_to_tensor(grad), tf.convert_to_tensor(
            results[1][1][name]), rtol=1e-3, atol=1e-5, err_msg=name)
    # Saliency of the active channels is the same; compact leaves the others at 0.
    for gate in gates_of(compact):
        twin = masked.get_layer(gate.name)
        active = c_cb.active[gate.group]
        if gate.channel_index is not None:
            continue
        np.testing.assert_allclose(gate.saliency.numpy()[active],
                                   twin.saliency.numpy()[active], rtol=1e-4, atol=1e-9)
        if gate.active is not None:
            off = np.setdiff1d(np.arange(W), active)
            assert (gate.saliency.numpy()[off] == 0).all()


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

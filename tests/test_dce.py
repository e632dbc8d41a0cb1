"""Dynamic Channel Execution: gates, saliency, the CUCB callback, plan and pipeline."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_slim.compat import count_params, keras
from keras_slim.dce import CUCBCallback, dce_plan, run_dce
from keras_slim.dce.gates import ChannelGate, gate_model, gates_of, strip_gates

B, S = 8, 6  # batch and spatial size: tiny, for speed
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def chain_net(width=8):
    i = keras.Input((S, S, 3))
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="c1")(i)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="r1")(x)
    x = keras.layers.Conv2D(width, 3, padding="same", name="c2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.Activation("relu", name="r2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(i, keras.layers.Dense(3, name="out")(x), name="chain")


def residual_net(width=8):
    i = keras.Input((S, S, 3))
    x = keras.layers.Conv2D(width, 3, padding="same", name="stem")(i)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    y = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="b1")(x)
    y = keras.layers.Conv2D(width, 3, padding="same", name="b2")(y)
    y = keras.layers.BatchNormalization(name="b2_bn")(y)
    x = keras.layers.ReLU(name="res_relu")(keras.layers.Add(name="add")([x, y]))
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(i, keras.layers.Dense(3, name="out")(x), name="resnet")


def data(n=2 * B, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, S, S, 3)).astype("float32")
    y = (x[..., 0].mean(axis=(1, 2)) > 0).astype("int32") + (x[..., 1].mean(axis=(1, 2))
                                                              > 0).astype("int32")
    return x, y


def gate_named(model, prefix):
    return next(g for g in gates_of(model) if g.name.startswith(prefix))


class MaskRecorder(keras.callbacks.Callback):
    """Listed after CUCBCallback: sees the masks it set for each batch."""

    def __init__(self):
        super().__init__()
        self.masks = []

    def on_train_batch_begin(self, batch, logs=None):
        self.masks.append({g.name: g.mask.numpy().copy() for g in gates_of(self.model)})


# --- gates ----------------------------------------------------------------------------
def test_gate_placement_and_user_model_untouched():
    model = chain_net()
    names = [layer.name for layer in model.layers]
    gated = gate_model(model, 0.5)
    assert [layer.name for layer in model.layers] == names
    order = [layer.name for layer in gated.layers]
    # On h: after conv + BN + activation.
    assert order.index("c1_gate") == order.index("r1") + 1
    assert order.index("c2_gate") == order.index("r2") + 1
    assert all(g.fraction == 0.5 for g in gates_of(gated))
    x, _ = data()
    np.testing.assert_allclose(gated(x), model(x), atol=1e-6)


def test_inactive_channels_exactly_zero_output_and_gradient():
    gated = gate_model(chain_net(), 0.5, compact=False)  # masks set by hand below
    gate = gated.get_layer("c1_gate")
    mask = np.array([0, 1, 1, 0, 1, 0, 1, 1], np.float32)
    gate.mask.assign(mask)
    probe = keras.Model(gated.input, gate.output)
    x, y = data()
    h = probe(x, training=True).numpy()
    assert (h[..., mask == 0] == 0).all() and (np.abs(h[..., mask == 1]) > 0).any()
    c1, bn1 = gated.get_layer("c1"), gated.get_layer("bn1")
    variables = [c1.kernel, bn1.gamma, bn1.beta]
    with tf.GradientTape() as tape:
        loss = LOSS(y, gated(x, training=True))
    kernel, gamma, beta = tape.gradient(loss, variables)
    off = mask == 0
    assert (kernel.numpy()[..., off] == 0).all()
    assert (gamma.numpy()[off] == 0).all() and (beta.numpy()[off] == 0).all()
    assert (np.abs(kernel.numpy()[..., ~off]) > 0).any()


def test_saliency_matches_brute_force_eager_and_in_fit():
    gated = gate_model(chain_net(), 0.5, layers=["c1"], compact=False)
    assert [g.name for g in gates_of(gated)] == ["c1_gate"]
    gate = gated.get_layer("c1_gate")
    mask = np.array([1, 1, 0, 1, 1, 1, 0, 1], np.float32)
    gate.mask.assign(mask)
    x, y = data()
    # Reference: h and dL/d(h * mask) from a separate tape on the split model.
    head = keras.Model(gated.input, gate.input)
    tail_in = keras.Input(gate.output.shape[1:])
    z = tail_in
    for name in ("c2", "bn2", "r2", "gap", "out"):
        z = gated.get_layer(name)(z)
    tail = keras.Model(tail_in, z)
    h = head(x, training=True)
    gated_h = h * mask
    with tf.GradientTape() as tape:
        tape.watch(gated_h)
        loss = LOSS(y, tail(gated_h, training=True))
    dy = tape.gradient(loss, gated_h).numpy()
    reference = np.abs((dy * h.numpy()).mean(axis=(1, 2))).mean(axis=0)
    assert (reference > 0).all()

    with tf.GradientTape() as tape:  # eager: one forward/backward of the whole model
        loss = LOSS(y, gated(x, training=True))
    tape.gradient(loss, gated.trainable_weights)
    np.testing.assert_allclose(gate.saliency.numpy(), reference, rtol=1e-5, atol=1e-9)

    # Inside model.fit's compiled train step (lr 0: weights and training-mode outputs
    # stay; BN moving statistics do not matter in training mode).
    gate.saliency.assign(np.zeros(8, np.float32))
    gated.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss=LOSS)
    gated.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(gate.saliency.numpy(), reference, rtol=1e-5, atol=1e-9)


def test_coupled_channels_share_one_gate_state():
    gated = gate_model(residual_net(), 0.5)
    groups = {}
    for g in gates_of(gated):
        groups.setdefault(g.group, []).append(g.name)
    # stem and b2 feed the Add: one group, gates on both; b1 is its own group.
    assert sorted(groups["stem"]) == ["b2_gate", "stem_gate"]
    assert groups["b1"] == ["b1_gate"]
    order = [layer.name for layer in gated.layers]
    assert order.index("b2_gate") == order.index("b2_bn") + 1
    assert order.index("b1_gate") == order.index("b1") + 1  # conv has its activation
    callback = CUCBCallback(warmup_steps=2, seed=1)
    recorder = MaskRecorder()
    gated.compile(optimizer="sgd", loss=LOSS)
    x, y = data(4 * B)
    gated.fit(x, y, batch_size=B, epochs=1, verbose=0, callbacks=[callback, recorder])
    assert set(callback.bandits) == {"stem", "b1"}
    for masks in recorder.masks:
        np.testing.assert_array_equal(masks["stem_gate"], masks["b2_gate"])
        assert masks["stem_gate"].sum() == 4
    # Saliency of a coupled channel: one arm, rewards from both gates.
    assert callback.bandits["stem"].T.sum() == 4 * 4


def test_masks_change_between_batches_inside_fit():
    gated = gate_model(chain_net(), 0.5)
    gated.compile(optimizer="adam", loss=LOSS)
    callback = CUCBCallback(warmup_steps=2, seed=0)
    recorder = MaskRecorder()
    x, y = data(6 * B)
    gated.fit(x, y, batch_size=B, epochs=1, verbose=0, callbacks=[callback, recorder])
    assert len(recorder.masks) == 6
    c1 = [m["c1_gate"] for m in recorder.masks]
    assert all(set(np.unique(m)) <= {0.0, 1.0} and m.sum() == 4 for m in c1)
    assert len({tuple(m) for m in c1}) > 1
    bandit = callback.bandits["c1"]
    assert bandit.t == 6 and bandit.T.sum() == 6 * 4
    assert (bandit.mu >= 0).all() and bandit.mu.max() > 0
    # After training every channel is on again.
    assert all((g.mask.numpy() == 1).all() for g in gates_of(gated))


@pytest.mark.parametrize("compact", [True, False])
def test_fit_without_a_channel_chooser_warns_naming_the_gate(compact):
    import warnings

    x, y = data(2 * B)
    gated = gate_model(chain_net(), 0.5, compact=compact)
    gated.compile(optimizer="sgd", loss=LOSS)
    with pytest.warns(UserWarning, match=r"ChannelGate 'c1_gate' trains with fraction 0.5 "
                                         r"but nothing chooses its channels"):
        gated.fit(x, y, batch_size=B, epochs=1, verbose=0)
    chosen = gate_model(chain_net(), 0.5, compact=compact)
    chosen.compile(optimizer="sgd", loss=LOSS)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*nothing chooses its channels.*")
        chosen.fit(x, y, batch_size=B, epochs=1, verbose=0,
                   callbacks=[CUCBCallback(warmup_steps=1, seed=0)])


def test_random_and_fixed_policies():
    x, y = data(6 * B)
    for policy in ("random", "fixed"):
        gated = gate_model(chain_net(), 0.25)
        gated.compile(optimizer="sgd", loss=LOSS)
        callback = CUCBCallback(policy=policy, warmup_steps=2, seed=3)
        recorder = MaskRecorder()
        gated.fit(x, y, batch_size=B, epochs=1, verbose=0, callbacks=[callback, recorder])
        masks = [tuple(m["c2_gate"]) for m in recorder.masks]
        assert all(sum(m) == 2 for m in masks)
        assert callback.bandits["c2"].t == 6
        if policy == "random":
            assert len(set(masks)) > 1
        else:  # top-p by mean saliency, fixed after the warm-up
            assert len(set(masks[2:])) == 1
            best = callback.fixed["c2"]
            assert np.flatnonzero(masks[-1]).tolist() == best.tolist()


def test_checkpoint_resume_restores_bandits(tmp_path):
    gated = gate_model(chain_net(), 0.5)
    gated.compile(optimizer="sgd", loss=LOSS)
    checkpoint = str(tmp_path / "ckpt")
    callback = CUCBCallback(warmup_steps=1, discount=0.95, checkpoint=checkpoint)
    x, y = data(3 * B)
    gated.fit(x, y, batch_size=B, epochs=2, verbose=0, callbacks=[callback])
    path = checkpoint + ".bandit.json"
    assert os.path.exists(path)
    json.load(open(path))
    resumed = CUCBCallback(warmup_steps=1, discount=0.95).restore(checkpoint)
    for name, bandit in callback.bandits.items():
        other = resumed.bandits[name]
        assert other.t == bandit.t == 6
        np.testing.assert_array_equal(other.T, bandit.T)
        np.testing.assert_array_equal(other.mu, bandit.mu)
        np.testing.assert_array_equal(other.select(), bandit.select())  # RNG too
    gated.fit(x, y, batch_size=B, epochs=1, verbose=0, callbacks=[resumed])
    assert resumed.bandits["c1"].t == 9
    with pytest.raises(FileNotFoundError):
        CUCBCallback().restore(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="channels"):  # state of another model
        other = gate_model(chain_net(width=16), 0.5)
        CUCBCallback().restore(checkpoint).attach(other)


def test_save_freq_writes_the_bandit_state_every_n_batches(tmp_path):
    gated = gate_model(chain_net(), 0.5)
    gated.compile(optimizer="sgd", loss=LOSS)
    checkpoint = str(tmp_path / "ckpt")
    saved = []

    class Spy(keras.callbacks.Callback):  # listed after the CUCB callback
        def on_train_batch_end(self, batch, logs=None):
            path = checkpoint + ".bandit.json"
            saved.append(json.load(open(path))["bandits"]["c1"]["t"]
                          if os.path.exists(path) else None)

    callback = CUCBCallback(warmup_steps=1, checkpoint=checkpoint, save_freq=2)
    x, y = data(5 * B)
    gated.fit(x, y, batch_size=B, epochs=1, verbose=0, shuffle=False,
              callbacks=[callback, Spy()])
    assert saved == [None, 2, 2, 4, 4]
    with pytest.raises(ValueError, match="save_freq"):
        CUCBCallback(save_freq=0)


def test_strip_gates_gives_plain_model_with_identical_outputs():
    model = residual_net()
    gated = gate_model(model, 0.5)
    gated.compile(optimizer="adam", loss=LOSS)
    x, y = data(2 * B)
    gated.fit(x, y, batch_size=B, epochs=1, verbose=0,
              callbacks=[CUCBCallback(warmup_steps=1)])
    plain = strip_gates(gated)
    assert not any(isinstance(layer, ChannelGate) for layer in plain.layers)
    assert [layer.name for layer in plain.layers] == [layer.name for layer in model.layers]
    np.testing.assert_allclose(plain(x), gated(x), atol=1e-6)
    assert gates_of(gated)  # the gated model itself is unchanged
    # Serializable: the gated model round-trips through its config.
    again = keras.Model.from_config(gated.get_config())
    assert [g.group for g in gates_of(again)] == [g.group for g in gates_of(gated)]


def test_sequential_model_gates_and_strips():
    model = keras.Sequential([
        keras.Input((S, S, 3)),
        keras.layers.Conv2D(8, 3, padding="same", name="c1"),
        keras.layers.ReLU(name="r1"),
        keras.layers.GlobalAveragePooling2D(name="gap"),
        keras.layers.Dense(2, name="out")])
    gated = gate_model(model, 0.5)
    # compact: the head gets the 4 active channels back at full width, its edge only
    assert [layer.name for layer in gated.layers] == ["c1", "r1", "c1_gate", "gap",
                                                      "out_expand", "out"]
    x, y = data()
    gated.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    gated.fit(x, y % 2, epochs=1, verbose=0, callbacks=[CUCBCallback(warmup_steps=1)])
    plain = strip_gates(gated)
    assert [layer.name for layer in plain.layers] == ["c1", "r1", "gap", "out"]
    np.testing.assert_allclose(plain(x), gated(x), atol=1e-6)


def test_dce_plan_keeps_most_salient():
    gated = gate_model(chain_net(), 0.5)
    callback = CUCBCallback()
    callback.attach(gated)
    mu = np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.4, 0.6])
    for bandit in callback.bandits.values():
        bandit.update(np.arange(8), mu)
    plan = dce_plan(callback, gated, 0.5, round_to=1)
    assert {g.name: g.keep for g in plan.groups} == {"c1": [1, 3, 5, 7], "c2": [1, 3, 5, 7]}
    same = dce_plan(callback.get_state(), chain_net(), 0.5, round_to=1)
    assert same.to_dict()["groups"] == plan.to_dict()["groups"]
    with pytest.raises(ValueError, match="keep_fraction"):
        dce_plan(callback, gated, 0.0)


def test_run_dce_end_to_end():
    model = residual_net(width=16)
    x, y = data(4 * B)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(B)
    result = run_dce(model, dataset, fraction=0.5, epochs=1, finetune_epochs=1, loss=LOSS,
                     warmup_steps=2, round_to=4)
    compact = result.model
    assert count_params(compact) < count_params(model)
    assert not gates_of(compact)
    assert compact.get_layer("stem").filters == 8 and compact.get_layer("b1").filters == 8
    assert compact.predict(x, verbose=0).shape == (len(x), 3)
    assert result.callback.bandits["stem"].t == 4
    assert result.finetune_history is not None
    assert result.recalibration_batches == 4  # default 20 steps; the dataset has 4


def test_run_dce_re_estimates_bn_statistics_of_the_rebuilt_model(monkeypatch):
    from keras_slim.dce import pipeline

    events = []
    real_fit, real_recalibrate = pipeline._fit, pipeline.recalibrate_batch_norm

    def fit(model, *args):
        events.append(("fit", model))
        return real_fit(model, *args)

    def recalibrate(model, data, steps, batch_size):
        before = [np.array(w) for w in model.weights if "moving" in w.name]
        used = real_recalibrate(model, data, steps, batch_size)
        after = [np.array(w) for w in model.weights if "moving" in w.name]
        events.append(("recalibrate", model, steps, any(
            not np.allclose(a, b) for a, b in zip(before, after))))
        return used

    monkeypatch.setattr(pipeline, "_fit", fit)
    monkeypatch.setattr(pipeline, "recalibrate_batch_norm", recalibrate)
    model = residual_net(width=16)
    x, y = data(4 * B)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(B)
    result = run_dce(model, dataset, fraction=0.5, epochs=1, finetune_epochs=1, loss=LOSS,
                     warmup_steps=2, round_to=4, recalibration_steps=3)
    assert result.recalibration_batches == 3
    # DCE fit on the gated model, then the rebuilt model's statistics change, then its
    # fine-tuning.
    assert [e[0] for e in events] == ["fit", "recalibrate", "fit"]
    assert events[0][1] is result.gated_model
    assert events[1][1] is result.model and events[1][2] == 3 and events[1][3]
    assert events[2][1] is result.model
    events.clear()
    off = run_dce(model, dataset, fraction=0.5, epochs=1, finetune_epochs=0, loss=LOSS,
                  warmup_steps=2, round_to=4, recalibration_steps=0)
    assert off.recalibration_batches == 0 and [e[0] for e in events] == ["fit"]
    with pytest.raises(ValueError, match="recalibration_steps must be an int >= 0"):
        run_dce(model, dataset, recalibration_steps=-1, loss=LOSS)


# --- bad input ------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, argument", [
    (dict(fraction=0.0), "fraction"), (dict(fraction=1.2), "fraction"),
    (dict(fraction={"c1": 0.0}), "fraction"), (dict(warmup_steps=-1), "warmup_steps"),
    (dict(discount=1.0), "discount"), (dict(policy="greedy"), "policy"),
])
def test_callback_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        CUCBCallback(**kwargs)


def test_gate_model_bad_input():
    with pytest.raises(ValueError, match="fraction"):
        gate_model(chain_net(), 0.0)
    with pytest.raises(ValueError, match="fraction"):
        gate_model(chain_net(), 1.5)
    i = keras.Input((4,))
    dense = keras.Model(i, keras.layers.Dense(2)(keras.layers.Dense(4)(i)))
    with pytest.raises(ValueError, match="no gatable conv"):
        gate_model(dense, 0.5)
    i = keras.Input((S, S, 3))
    x = keras.layers.Conv2D(4, 3, name="hidden")(i)
    out = keras.layers.Conv2D(2, 3, name="head")(x)
    model = keras.Model(i, out)
    with pytest.raises(ValueError, match="'head'.*output"):
        gate_model(model, 0.5, layers=["head"])
    with pytest.raises(ValueError, match="'nope'"):
        gate_model(model, 0.5, layers=["nope"])
    assert [g.name for g in gates_of(gate_model(model, 0.5))] == ["hidden_gate"]
    with pytest.raises(ValueError, match="fraction names groups"):
        gated = gate_model(model, 0.5)
        CUCBCallback(fraction={"head": 0.5}).attach(gated)
    with pytest.raises(ValueError, match="no ChannelGate"):
        CUCBCallback().attach(model)


def test_per_group_fraction_and_manual_steps():
    # Masking gates accept any p per group; compact ones are built for one k.
    gated = gate_model(chain_net(), 0.5, compact=False)  # gates carry p = 0.5
    callback = CUCBCallback(fraction={"c1": 0.25}, warmup_steps=0, seed=0)
    callback.attach(gated)
    assert callback.bandits["c1"].k == 2 and callback.bandits["c2"].k == 4
    callback.begin_step()
    assert gated.get_layer("c1_gate").mask.numpy().sum() == 2
    assert gated.get_layer("c2_gate").mask.numpy().sum() == 4
    callback.all_on()
    assert gated.get_layer("c1_gate").mask.numpy().sum() == 8


def test_nested_models_gate_train_and_strip():
    """Convs inside a nested model are gated in place, get a bandit of their own, and
    strip back to the original model."""
    from keras_slim.core.metrics import profile
    from keras_slim.core.rebuild import rebuild
    from keras_slim.dce import CUCBCallback, dce_plan, gate_model, gates_of, strip_gates

    inner_in = keras.Input((8, 8, 8))
    y = keras.layers.Conv2D(16, 3, padding="same", name="conv")(inner_in)
    y = keras.layers.BatchNormalization(name="bn")(y)
    y = keras.layers.ReLU(name="relu")(y)
    inner = keras.Model(inner_in, y, name="block")
    inputs = keras.Input((8, 8, 3))
    x = inner(keras.layers.Conv2D(8, 1, name="stem")(inputs))
    x = keras.layers.GlobalAveragePooling2D(name="gap")(
        keras.layers.Conv2D(16, 3, name="after")(x))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))
    x_data = np.random.default_rng(0).normal(size=(16, 8, 8, 3)).astype("float32")

    gated = gate_model(model, 0.5)
    assert "conv_gate" in [g.name for g in gated.get_layer("block").layers]
    np.testing.assert_allclose(np.asarray(gated(x_data)), np.asarray(model(x_data)),
                               atol=1e-6)
    callback = CUCBCallback(0.5, warmup_steps=1)
    gated.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callback.attach(gated)
    gated.fit(x_data, np.arange(16) % 2, epochs=1, batch_size=4, callbacks=[callback],
              verbose=0)
    bandit = callback.bandits["block/conv"]
    assert bandit.T.sum() == 4 * 8 and (bandit.mu > 0).any()
    callback.all_on()
    plain = strip_gates(gated)
    assert not gates_of(plain)
    np.testing.assert_allclose(np.asarray(plain(x_data)), np.asarray(gated(x_data)),
                               atol=1e-5)
    small = rebuild(plain, dce_plan(callback, plain, 0.5))
    assert small.get_layer("block").get_layer("conv").filters == 8
    assert profile(small)["macs"] < profile(model)["macs"]

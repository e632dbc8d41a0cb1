"""GammaFade: the channels the plan removes fade linearly to γ = β = 0, the others are left
alone, and the prune after it is exact. Both flavours."""
import numpy as np
import pytest
import tensorflow as tf

from keras_slim import slimming as S
from keras_slim.compat import keras
from keras_slim.core.criteria import criterion_plan, removed_gamma_max
from keras_slim.core.graph import ChannelGraph
from keras_slim.core.rebuild import rebuild
from keras_slim.slimming.pipeline import network_slimming

RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 4, 4, 3)).astype("float32")
Y = (X[..., 0].mean(axis=(1, 2)) > 0).astype("int32")
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def residual_toy(width=16):
    """A residual pair (bn1 and bn2 share channels through the Add); every consumer of a
    BN channel is 1×1, GAP or Dense, so folding a constant channel is exact."""
    x = keras.Input((4, 4, 3))
    h = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="c1")(x)
    h = keras.layers.ReLU(name="r1")(keras.layers.BatchNormalization(name="bn1")(h))
    r = keras.layers.Conv2D(width, 1, use_bias=False, name="c2")(h)
    r = keras.layers.BatchNormalization(name="bn2")(r)
    h = keras.layers.ReLU(name="r2")(keras.layers.Add(name="add")([h, r]))
    h = keras.layers.Conv2D(width, 1, use_bias=False, name="c3")(h)
    h = keras.layers.ReLU(name="r3")(keras.layers.BatchNormalization(name="bn3")(h))
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    return keras.Model(x, keras.layers.Dense(2, name="out")(h), name="residual_toy")


def _randomise_bn(model):
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.2, 2.0, gamma.shape).astype("float32"),
                               rng.normal(0, 0.3, beta.shape).astype("float32"),
                               rng.normal(0, 0.1, mean.shape).astype("float32"),
                               rng.uniform(0.5, 1.5, var.shape).astype("float32")])


def _gammas(model, weight="gamma"):
    return {l.name: np.asarray(getattr(l, weight)).copy() for l in model.layers
            if isinstance(l, keras.layers.BatchNormalization)}


def _plan_fn(ratio=0.5):
    return lambda graph: criterion_plan(graph, "bn_gamma", ratio, round_to=1)


def test_selected_gamma_ramp_linearly_to_zero_and_the_rest_are_untouched():
    keras.utils.set_random_seed(0)
    model = residual_toy()
    _randomise_bn(model)
    start = {weight: _gammas(model, weight) for weight in ("gamma", "beta")}
    plan = _plan_fn()(ChannelGraph(model))
    graph = ChannelGraph(model)
    removed = np.array(sorted(plan.removed_roots(graph)))
    # lr 0: only the callback moves γ and β
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=LOSS)
    fade = S.GammaFade(_plan_fn(), fade_steps=4, interval=None, verbose=0)
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append({weight: _gammas(self.model, weight) for weight in ("gamma", "beta")})

    model.fit(X, Y, batch_size=8, epochs=1, shuffle=False, verbose=0,
              callbacks=[fade, Probe()])
    assert fade.plan.to_dict()["groups"] == plan.to_dict()["groups"]
    for weight, values in start.items():
        for name, value0 in values.items():
            hit = np.isin(graph.channel_roots(name), removed)
            assert hit.any() and not hit.all(), name
            for step, weights in enumerate(seen):
                expected = np.where(hit, value0 * max(4 - step - 1, 0) / 4, value0)
                np.testing.assert_allclose(weights[weight][name], expected, rtol=1e-6,
                                           atol=1e-7, err_msg=f"{name}.{weight} after {step}")
    assert removed_gamma_max(model, plan, graph) == 0.0


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_faded_channels_stay_zero_while_training_and_prune_exactly(optimizer):
    keras.utils.set_random_seed(0)
    model = residual_toy()
    _randomise_bn(model)
    model.compile(optimizer=keras.optimizers.SGD(0.05) if optimizer == "sgd"
                  else keras.optimizers.Adam(0.01), loss=LOSS)
    fade = S.GammaFade(_plan_fn(0.5), fade_share=0.5, interval=2, verbose=0)
    model.fit(X, Y, batch_size=8, epochs=4, shuffle=False, verbose=0, callbacks=[fade])
    graph = ChannelGraph(model)
    plan = _plan_fn(0.5)(graph)  # what the prune makes now: the faded channels
    assert plan.to_dict()["groups"] == fade.plan.to_dict()["groups"]
    assert removed_gamma_max(model, plan, graph) == 0.0
    removed = np.array(sorted(plan.removed_roots(graph)))
    for name, gamma in _gammas(model).items():  # zero exactly where the plan removes
        hit = np.isin(graph.channel_roots(name), removed)
        np.testing.assert_array_equal(gamma == 0, hit, err_msg=name)
    pruned = rebuild(model, plan, compensate=True, gamma_tolerance=0.0, graph=graph)
    assert pruned.count_params() < model.count_params()
    np.testing.assert_allclose(pruned.predict(X, verbose=0), model.predict(X, verbose=0),
                               atol=1e-5)


def se_toy(width=16):
    """3×3 'same' convolutions and a squeeze-and-excitation gate after the BN channels to
    prune: a removed channel's constant act(β) reaches them, which no bias can fold
    exactly (the borders see zero padding, the gate scales it per example)."""
    x = keras.Input((6, 6, 3))
    h = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="c1")(x)
    h = keras.layers.ReLU(name="r1")(keras.layers.BatchNormalization(name="bn1")(h))
    s = keras.layers.GlobalAveragePooling2D(keepdims=True, name="se_pool")(h)
    s = keras.layers.Conv2D(4, 1, activation="relu", name="se_reduce")(s)
    s = keras.layers.Conv2D(width, 1, activation="sigmoid", name="se_expand")(s)
    h = keras.layers.Multiply(name="se_gate")([h, s])
    h = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="c2")(h)
    h = keras.layers.ReLU(name="r2")(keras.layers.BatchNormalization(name="bn2")(h))
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    return keras.Model(x, keras.layers.Dense(2, name="out")(h), name="se_toy")


@pytest.mark.parametrize("fade_beta", [True, False])
def test_with_beta_faded_too_the_prune_is_exact_past_borders_and_se_gates(fade_beta):
    keras.utils.set_random_seed(0)
    model = se_toy()
    _randomise_bn(model)
    for layer in model.layers:  # every β > 0: a removed channel would emit ReLU(β) > 0
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma, np.abs(beta) + 0.1, mean, var])
    x = RNG.normal(size=(16, 6, 6, 3)).astype("float32")
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=LOSS)
    fade = S.GammaFade(_plan_fn(0.5), fade_steps=2, fade_beta=fade_beta, verbose=0)
    model.fit(x, Y[:16], batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[fade])
    pruned = rebuild(model, fade.plan, compensate=True, gamma_tolerance=0.0)
    error = np.abs(pruned.predict(x, verbose=0) - model.predict(x, verbose=0)).max()
    if fade_beta:
        assert error <= 1e-5
    else:  # act(β) folded as a constant: wrong at the borders and behind the gate
        assert error > 1e-3


def test_network_slimming_fade_needs_no_lambda_and_prunes_exactly():
    keras.utils.set_random_seed(0)
    model = residual_toy()
    _randomise_bn(model)
    data = tf.data.Dataset.from_tensor_slices((X, Y)).batch(8)
    start = _gammas(model)

    def compile_fn(m):
        m.compile(optimizer=keras.optimizers.SGD(0.02), loss=LOSS, metrics=["accuracy"])
        return m

    result = network_slimming(model, data, 2, 0, 0.5, l1=0.0, fade=True, round_to=1,
                              compile_fn=compile_fn, validation_data=data, verbose=0)
    sparse_accuracy = result.histories[0][1]["val_accuracy"][-1]
    assert result.after_rebuild[0]["compensated"] == pytest.approx(sparse_accuracy, abs=1e-6)
    assert result.reports[0]["params_after"] < result.reports[0]["params_before"]
    for name, gamma in _gammas(model).items():  # the input model is left as it was
        np.testing.assert_array_equal(gamma, start[name])
    with pytest.raises(ValueError, match="fade must be True or False"):
        network_slimming(model, data, 1, 0, 0.5, fade="yes")


def test_bad_arguments_and_unknown_length_are_clear_errors():
    with pytest.raises(ValueError, match="plan_fn must be callable"):
        S.GammaFade(None)
    with pytest.raises(ValueError, match="fade_share must be in"):
        S.GammaFade(_plan_fn(), fade_share=0)
    with pytest.raises(ValueError, match="interval must be an integer >= 1"):
        S.GammaFade(_plan_fn(), interval=0)
    with pytest.raises(ValueError, match="start_step must be an integer >= 0"):
        S.GammaFade(_plan_fn(), start_step=-1)
    with pytest.raises(ValueError, match="fade_beta must be True or False"):
        S.GammaFade(_plan_fn(), fade_beta="no")
    model = residual_toy()
    model.compile(optimizer="sgd", loss=LOSS)
    unknown = tf.data.Dataset.from_tensor_slices((X, Y)).filter(lambda x, y: True).batch(8)
    with pytest.raises(ValueError, match="training data's length is unknown"):
        model.fit(unknown, epochs=1, verbose=0,
                  callbacks=[S.GammaFade(_plan_fn(), verbose=0)])


def _toy_at_learning_rate_zero():
    """A toy whose γ only the fade changes: (model, its γ, graph, removed channel roots)."""
    keras.utils.set_random_seed(0)
    model = residual_toy()
    _randomise_bn(model)
    start = _gammas(model)
    graph = ChannelGraph(model)
    removed = np.array(sorted(_plan_fn()(graph).removed_roots(graph)))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=LOSS)
    return model, start, graph, removed


def test_a_resumed_fit_continues_the_ramp_from_the_optimizer_count():
    model, start, graph, removed = _toy_at_learning_rate_zero()
    # 2 of 8 ramp steps, then a "resumed" fit with a new callback: 4 more
    model.fit(X[:16], Y[:16], batch_size=8, epochs=1, shuffle=False, verbose=0,
              callbacks=[S.GammaFade(_plan_fn(), fade_steps=8, interval=None,
                                     start_step=0, verbose=0)])
    model.fit(X[:32], Y[:32], batch_size=8, epochs=1, shuffle=False, verbose=0,
              callbacks=[S.GammaFade(_plan_fn(), fade_steps=8, interval=None,
                                     start_step=0, verbose=0)])
    for name, gamma0 in start.items():
        hit = np.isin(graph.channel_roots(name), removed)
        np.testing.assert_allclose(_gammas(model)[name],
                                   np.where(hit, gamma0 * 2 / 8, gamma0), rtol=1e-5)


@pytest.mark.parametrize("how", ["steps_per_execution", "initial_epoch"])
def test_the_fade_completes_with_steps_per_execution_and_initial_epoch(how):
    keras.utils.set_random_seed(0)
    model = residual_toy()
    _randomise_bn(model)
    graph = ChannelGraph(model)
    plan = _plan_fn()(graph)
    removed = np.array(sorted(plan.removed_roots(graph)))
    start = _gammas(model)
    per_execution = 4 if how == "steps_per_execution" else 1
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=LOSS,
                  steps_per_execution=per_execution)
    fade = S.GammaFade(_plan_fn(), fade_share=0.75, interval=None, verbose=0)
    # 8 batches per epoch: the fade takes 6 of the 8 (initial_epoch: of the last epoch)
    model.fit(X, Y, batch_size=8, epochs=2 if how == "initial_epoch" else 1,
              initial_epoch=1 if how == "initial_epoch" else 0, shuffle=False, verbose=0,
              callbacks=[fade])
    for name, gamma0 in start.items():
        hit = np.isin(graph.channel_roots(name), removed)
        np.testing.assert_allclose(_gammas(model)[name], np.where(hit, 0.0, gamma0),
                                   rtol=1e-6, err_msg=name)


def test_a_fit_shorter_than_the_fade_warns_that_the_prune_is_not_exact():
    model = residual_toy()
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=LOSS)
    with pytest.warns(UserWarning, match=r"fit ended after 8 of the 16 fade steps; the \d+ "
                                         r"channels to remove keep 50% of their γ"):
        model.fit(X, Y, batch_size=8, epochs=1, shuffle=False, verbose=0,
                  callbacks=[S.GammaFade(_plan_fn(), fade_steps=16, verbose=0)])


def test_with_the_fade_the_teacher_is_the_model_as_it_came(monkeypatch):
    from keras_slim.slimming import pipeline as steps

    taught_by, real = [], steps.distillation.frozen_copy
    monkeypatch.setattr(steps.distillation, "frozen_copy",
                        lambda m: taught_by.append(m) or real(m))
    model = residual_toy()
    _randomise_bn(model)
    data = tf.data.Dataset.from_tensor_slices((X, Y)).batch(8)
    network_slimming(model, data, 1, 1, 0.5, l1=0.0, fade=True, round_to=1, distill=True,
                     verbose=0)
    # the sparse model is already the pruned one: it would teach the student itself
    assert taught_by == [model]


def test_a_distilled_fade_fades_the_students_gamma_and_learns_from_the_teacher():
    from keras_slim.slimming.pipeline import sparsity_train
    from keras_slim.training.distillation import frozen_copy

    model = residual_toy()
    _randomise_bn(model)
    teacher = frozen_copy(model)
    taught = [w.copy() for w in teacher.get_weights()]
    data = tf.data.Dataset.from_tensor_slices((X, Y)).batch(8)
    fade = S.GammaFade(_plan_fn(), interval=None, verbose=0)
    slim, history = sparsity_train(model, data, 1, l1=0.0, callbacks=[fade],
                                   teacher=teacher, verbose=0)
    # the callbacks act on the student inside the distiller, not on the teacher
    assert fade.faded_channels > 0
    assert removed_gamma_max(slim, fade.plan, ChannelGraph(slim)) == 0.0
    assert history["gamma_sparsity"][-1] == S.sparsity_summary(slim)["overall"]["share"] > 0
    assert history["distillation_loss"][-1] > 0
    for before, after in zip(taught, teacher.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_a_later_start_step_leaves_gamma_alone_until_then_and_ramps_from_there():
    model, start, graph, removed = _toy_at_learning_rate_zero()

    def fade():
        return S.GammaFade(_plan_fn(), fade_steps=4, interval=None, start_step=4, verbose=0)

    # 3 batches, all before step 4: nothing scaled (not scaled up either)
    with pytest.warns(UserWarning, match="after 0 of the 4 fade steps"):
        model.fit(X[:24], Y[:24], batch_size=8, epochs=1, shuffle=False, verbose=0,
                  callbacks=[fade()])
    for name, gamma0 in start.items():
        np.testing.assert_array_equal(_gammas(model)[name], gamma0)
    # 3 more: the clock reaches 2 of the 4 ramp steps
    model.fit(X[:24], Y[:24], batch_size=8, epochs=1, shuffle=False, verbose=0,
              callbacks=[fade()])
    for name, gamma0 in start.items():
        hit = np.isin(graph.channel_roots(name), removed)
        np.testing.assert_allclose(_gammas(model)[name],
                                   np.where(hit, gamma0 * 2 / 4, gamma0), rtol=1e-5)

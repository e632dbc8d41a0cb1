"""Property tests on random functional CNNs: rebuild(model, plan) computes exactly what
mask(model, plan) computes, for any graph tests/graphgen.py can draw.

KS_GRAPH_EXAMPLES sets the number of hypothesis examples of the fast property test
(default 15); the `slow` one runs 500 (`python -m pytest tests/test_random_graphs.py -m slow`).
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_slim.core import plan as plans
from keras_slim.compat import count_params, keras
from keras_slim.core.equivalence import check_equivalence
from keras_slim.core.graph import ChannelGraph
from keras_slim.core.rebuild import mask, rebuild

from graphgen import (ACTIVATIONS, MERGES, OP_STYLES, SCALAR_FORMS, build_from_recipe,
                      cnn_recipes, random_block, random_head, randomize_weights)

TOLERANCE = 1e-4
EXAMPLES = int(os.environ.get("KS_GRAPH_EXAMPLES", "15"))
SLOW_EXAMPLES = 500
HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

ratios = st.floats(0.0, 0.9, exclude_max=True, allow_nan=False)
round_tos = st.sampled_from([1, 2, 4])
plan_seeds = st.integers(0, 2 ** 16)


def _layer(model, path):
    layer = model
    for part in path.split("/"):
        layer = layer.get_layer(part)
    return layer


def _inputs(model, n=8, seed=1):
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    return np.random.default_rng(seed).standard_normal((n,) + shape).astype(np.float32)


def check_rebuild(model, ratio, round_to, seed):
    """The property: returns (plan, rebuilt) for further checks."""
    before = [np.array(w) for w in model.get_weights()]
    x = _inputs(model)
    reference = np.asarray(model(x, training=False))

    plan = plans.random_plan(model, ratio, seed=seed, round_to=round_to)
    rebuilt = rebuild(model, plan)
    masked, report = mask(model, plan, return_report=True)

    diff = check_equivalence(masked, rebuilt, data=x)
    scale = float(np.abs(reference).max())
    assert diff["max_abs"] <= TOLERANCE, (
        f"rebuilt != masked: max |diff| {diff['max_abs']:.3g} (outputs up to {scale:.3g})\n"
        + plan.table())
    # A second batch from check_equivalence's own generator.
    assert check_equivalence(masked, rebuilt, num_samples=4)["max_abs"] <= TOLERANCE

    assert rebuilt.output_shape == model.output_shape
    assert masked.output_shape == model.output_shape
    assert count_params(rebuilt) <= count_params(model), plan.table()
    # Same size, except for the biases compensation gives bias-free consumers.
    new_biases = sum(int(_layer(model, c.layer).output.shape[-1])
                     for c in report.compensations if c.target == "new_bias")
    assert count_params(masked) == count_params(model) + new_biases
    for layer, masked_layer in zip(model.layers, masked.layers):
        assert masked_layer.name == layer.name
        assert tuple(masked_layer.output.shape) == tuple(layer.output.shape), layer.name

    # The input model is left alone.
    after = model.get_weights()
    assert len(after) == len(before)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.asarray(model(x, training=False)), reference)

    # Every channel-creating layer has exactly the plan's kept channels.
    graph = ChannelGraph(model)
    removed = plan.removed_roots(graph)
    for group in graph.groups:
        for path in group.layers:
            roots = graph.channel_roots(path)
            kept = int(sum(int(r) not in removed for r in roots))
            width = int(_layer(rebuilt, path).output.shape[-1])
            assert width == kept, f"{path}: {width} channels, plan keeps {kept}"
    if plan.kept_channels == plan.total_channels:  # the original function, unchanged
        assert check_equivalence(model, rebuilt, data=x)["max_abs"] <= TOLERANCE
    return plan, rebuilt


def _property(recipe, ratio, round_to, seed):
    keras.backend.clear_session()
    check_rebuild(build_from_recipe(recipe), ratio, round_to, seed)


def _property_test(examples, max_blocks):
    @settings(max_examples=examples, deadline=None, derandomize=True,
              suppress_health_check=HEALTH, print_blob=True)
    @given(recipe=cnn_recipes(max_blocks=max_blocks), ratio=ratios, round_to=round_tos,
           seed=plan_seeds)
    def test(recipe, ratio, round_to, seed):
        _property(recipe, ratio, round_to, seed)

    return test


test_rebuild_matches_mask_on_random_graphs = _property_test(EXAMPLES, max_blocks=4)
test_rebuild_matches_mask_on_random_graphs_many = pytest.mark.slow(
    _property_test(SLOW_EXAMPLES, max_blocks=6))


@settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=HEALTH)
@given(recipe=cnn_recipes(max_blocks=3), ratio=st.floats(0.2, 0.8), seed=plan_seeds)
def test_rebuilt_model_trains_one_step(recipe, ratio, seed):
    keras.backend.clear_session()
    model = build_from_recipe(recipe)
    _, rebuilt = check_rebuild(model, ratio, 1, seed)
    rebuilt.compile(optimizer=keras.optimizers.SGD(0.01),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = _inputs(rebuilt, 8)
    y = rng.integers(0, recipe["classes"], size=(8,))
    history = rebuilt.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert rebuilt.predict(x, verbose=0).shape == (8, recipe["classes"])


# --- hand-built cases: one block type at a time -----------------------------------------
def _recipe(blocks, head=None, input_shape=(8, 8, 3), seed=0, stem=True):
    stem_block = [{"kind": "conv", "width": 16, "k": 3, "padding": "same", "bias": True,
                   "bn": True, "act": "relu"}] if stem else []
    return {"input_shape": list(input_shape), "classes": 3,
            "blocks": stem_block + list(blocks), "head": head or {"type": "gap"},
            "seed": seed}


def _all_params(kind, size=8):
    """A few deterministic parameter sets of a block kind (numpy-drawn, fixed seeds)."""
    return [random_block(np.random.default_rng(s), kind, size)[0]
            for s in range(4)]


CASES = ((0.5, 1, 0), (0.8, 4, 1))  # (ratio, round_to, plan seed)


def _check_cases(recipe, cases=CASES):
    for ratio, round_to, seed in cases:
        keras.backend.clear_session()
        check_rebuild(build_from_recipe(recipe), ratio, round_to, seed)


@pytest.mark.parametrize("kind", ["conv", "residual", "concat", "se", "depthwise",
                                  "separable", "pool", "zeropad", "dropout", "ops", "nested"])
def test_block_type(kind):
    for params in _all_params(kind):
        _check_cases(_recipe([dict(params, kind=kind)]), cases=[(0.6, 1, 0)])


@pytest.mark.parametrize("style", OP_STYLES)
def test_operation_nodes(style):
    # Keras 3 op nodes / tf_keras op layers: scalar arithmetic (every form), an SE gate
    # multiplied in as a (B,1,1,C) tensor, a spatial pad, a per-channel constant, a mean;
    # with BN gammas 0 so constants are carried through the ops and folded.
    conv = {"kind": "conv", "width": 8, "k": 3, "padding": "same", "bias": False,
            "bn": True, "act": "relu"}
    base = random_block(np.random.default_rng(0), "ops", 8)[0]
    variants = [dict(base, style=style, form=form, gate=gate, gate_first=first,
                     op=("add", "multiply")[n % 2], pad=[n % 3, 1])
                for n, (form, gate, first) in enumerate(zip(
                    SCALAR_FORMS, ("plain", "conv") * 3, (False, True) * 3))]
    if style not in ("scalar", "gate"):
        variants = variants[:2]
    for p in variants:
        blocks = [dict(p, kind="ops"), conv, dict(p, kind="ops", style="scalar")]
        recipe = dict(_recipe(blocks, head={"type": "ops_mean"}), zero_gamma=True)
        _check_cases(recipe, cases=[(0.6, 1, 0)])


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_conv_activation(act):
    block = {"kind": "conv", "width": 12, "k": 3, "padding": "same", "bias": False,
             "bn": True, "act": act}
    _check_cases(_recipe([block, dict(block, k=1, width=8)]), cases=[(0.6, 2, 0)])


@pytest.mark.parametrize("merge", sorted(set(MERGES)))
def test_residual_merge(merge):
    block = {"kind": "residual", "width": 16, "merge": merge, "act": "relu",
             "post_act": "relu", "bias": False, "shortcut": "conv", "shortcut_bn": True}
    # Identity shortcut (16 -> 16), then a 1x1 projection (16 -> 8).
    _check_cases(_recipe([block, dict(block, width=8)]))


def test_residual_zero_pad_shortcut():
    # ResNet option A: keras_slim.zoo.layers.ChannelZeroPad widens the shortcut 8 -> 16.
    narrow = {"kind": "conv", "width": 8, "k": 3, "padding": "same", "bias": False,
              "bn": True, "act": "relu"}
    block = {"kind": "residual", "width": 16, "merge": "add", "act": "relu",
             "post_act": "relu", "bias": False, "shortcut": "zeropad", "shortcut_bn": False}
    _check_cases(_recipe([narrow, block, dict(block, merge="subtract")], stem=False))


@pytest.mark.parametrize("style", ["two_convs", "dense"])
def test_concat(style):
    block = {"kind": "concat", "style": style, "w1": 4, "w2": 12, "act": "relu", "bn": True}
    conv = {"kind": "conv", "width": 8, "k": 1, "padding": "same", "bias": True, "bn": False,
            "act": "none"}
    _check_cases(_recipe([block, conv]))


def test_se_block():
    _check_cases(_recipe([{"kind": "se", "reduce": 4, "bias": True},
                          {"kind": "se", "reduce": 2, "bias": False}]))


@pytest.mark.parametrize("multiplier", [1, 2])
def test_depthwise_and_separable(multiplier):
    blocks = [{"kind": "depthwise", "multiplier": multiplier, "padding": "same", "bias": True,
               "bn": True, "act": "relu"},
              {"kind": "separable", "width": 12, "k": 3, "multiplier": multiplier,
               "padding": "valid", "bias": True, "act": "relu"}]
    _check_cases(_recipe(blocks))


def test_pooling_padding_dropout():
    blocks = [{"kind": "pool", "type": "max"}, {"kind": "zeropad", "pad": 1},
              {"kind": "dropout", "type": "spatial"}, {"kind": "pool", "type": "avg"},
              {"kind": "dropout", "type": "dropout"},
              {"kind": "conv", "width": 8, "k": 3, "padding": "valid", "bias": True,
               "bn": False, "act": "relu"}]
    _check_cases(_recipe(blocks))


@pytest.mark.parametrize("two_convs", [False, True])
@pytest.mark.parametrize("style", ["functional", "sequential"])
def test_nested_model(style, two_convs):
    block = {"kind": "nested", "style": style, "width": 12, "k": 3, "bn": True,
             "act": "relu", "two_convs": two_convs}
    _check_cases(_recipe([block, {"kind": "conv", "width": 8, "k": 1, "padding": "same",
                                  "bias": True, "bn": True, "act": "relu"}]))


@pytest.mark.parametrize("head", [
    {"type": "gap"},
    {"type": "flatten", "hidden": 12, "bn": True, "act": "relu"},
    {"type": "flatten", "hidden": 8, "bn": False, "act": "prelu"},
])
def test_head(head):
    _check_cases(_recipe([], head=head, input_shape=(12, 12, 1)))


def test_blocks_directly_on_the_input():
    # The input's channels are fixed: blocks that pass them on keep them.
    for kind in ("residual", "concat", "se", "depthwise", "nested"):
        params = random_block(np.random.default_rng(0), kind, 8)[0]
        _check_cases(_recipe([dict(params, kind=kind)], stem=False), cases=[(0.6, 1, 0)])


@pytest.mark.parametrize("make_plan", [plans.random_plan, plans.l1_norm_plan])
def test_ratio_zero_keeps_every_channel(make_plan):
    x0 = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(10, 3, padding="same", name="c1")(x0)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(x0, keras.layers.Dense(3, name="logits")(x))
    plan = make_plan(model, 0.0)  # default round_to=8
    assert plan.kept_channels == plan.total_channels, plan.table()


def test_nothing_removed_is_the_original():
    recipe = _recipe([{"kind": "residual", "width": 8, "merge": "add", "act": "swish",
                       "post_act": "relu", "bias": True, "shortcut_bn": True},
                      {"kind": "se", "reduce": 2, "bias": True}],
                     head=random_head(np.random.default_rng(3)))
    keras.backend.clear_session()
    model = build_from_recipe(recipe)
    plan, rebuilt = check_rebuild(model, 0.0, 1, 0)
    assert plan.kept_channels == plan.total_channels
    assert count_params(rebuilt) == count_params(model)


@pytest.mark.parametrize("body", ["residual", "se", "concat", "nested"])
def test_nested_model_around_a_block(body):
    rng = np.random.default_rng(5)
    inner = dict(random_block(rng, body, 8, depth=1)[0], kind=body)
    block = {"kind": "nested", "style": "block", "width": 8, "k": 1, "bn": False,
             "act": "none", "two_convs": False, "body": inner}
    _check_cases(_recipe([block, {"kind": "conv", "width": 8, "k": 1, "padding": "same",
                                  "bias": True, "bn": True, "act": "relu"}]))


def test_zero_gammas_in_every_block():
    # Channels with BN gamma == 0 emit constants, which rebuild and mask both fold
    # into the consumers: they must still agree.
    rng = np.random.default_rng(7)
    blocks = [dict(random_block(rng, kind, 8)[0], kind=kind)
              for kind in ("residual", "concat", "se", "depthwise", "nested")]
    recipe = dict(_recipe(blocks, head={"type": "flatten", "hidden": 8, "bn": True,
                                        "act": "sigmoid"}), zero_gamma=True)
    _check_cases(recipe)


# --- removing channels whose BN gamma is 0 leaves the function unchanged ---------------
L = keras.layers


def _gamma_zero_model(consumer):
    """conv -> BN (gamma 0 on channels 0..3) -> sigmoid -> consumer -> GAP -> logits:
    channels 0..3 emit the constant sigmoid(beta), which rebuild must fold."""
    x0 = keras.Input((8, 8, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="c1")(x0)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.Activation("sigmoid", name="act1")(x)
    x = consumer(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(x0, L.Dense(3, name="logits")(x))
    randomize_weights(model, 0)
    bn = model.get_layer("bn1")
    weights = bn.get_weights()
    weights[0][:4] = 0.0
    bn.set_weights(weights)
    return model


def _check_folding(consumer):
    model = _gamma_zero_model(consumer)
    gamma = np.abs(model.get_layer("bn1").get_weights()[0])
    plan = plans.plan_from_scores(model, {"c1": gamma}, 0.5, round_to=1)
    assert plan.kept_channels < plan.total_channels
    rebuilt, report = rebuild(model, plan, return_report=True)
    masked = mask(model, plan)
    assert check_equivalence(masked, rebuilt)["max_abs"] <= TOLERANCE
    assert report.exact
    diff = check_equivalence(model, rebuilt)["max_abs"]
    assert diff <= TOLERANCE, f"report says exact, but rebuilt differs by {diff:.3g}"


@pytest.mark.parametrize("consumer", [
    lambda x: L.Conv2D(8, 1, name="c2")(x),
    lambda x: L.Conv2D(8, 3, padding="valid", name="c2")(x),
    lambda x: L.BatchNormalization(name="bn2")(L.Conv2D(8, 1, use_bias=False, name="c2")(x)),
    lambda x: L.ReLU(name="relu2")(L.Conv2D(8, 1, use_bias=False, name="c2")(x)),
    lambda x: L.Conv2D(8, 1, name="c2")(L.MaxPooling2D(2, padding="same", name="pool")(x)),
    lambda x: x,  # GAP -> logits Dense
    lambda x: L.SeparableConv2D(8, 1, name="c2")(x),
    lambda x: L.SeparableConv2D(8, 1, use_bias=False, name="c2")(x),
], ids=["conv1x1", "conv3x3_valid", "conv_nobias_bn", "conv_nobias_new_bias", "pool_conv",
        "gap_dense", "separable", "separable_new_bias"])
def test_gamma_zero_channels_fold_exactly(consumer):
    _check_folding(consumer)


def test_transposed_conv_consumer_is_reported_not_folded():
    # Its response to a constant varies with position under strides: documented as not
    # folded, and the report must not claim exactness.
    model = _gamma_zero_model(lambda x: L.Conv2DTranspose(8, 1, name="c2")(x))
    gamma = np.abs(model.get_layer("bn1").get_weights()[0])
    plan = plans.plan_from_scores(model, {"c1": gamma}, 0.5, round_to=1)
    rebuilt, report = rebuild(model, plan, return_report=True)
    assert not report.exact
    assert check_equivalence(mask(model, plan), rebuilt)["max_abs"] <= TOLERANCE


def test_grouped_conv_is_left_alone():
    x0 = keras.Input((8, 8, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", name="c1")(x0)
    x = L.Conv2D(8, 3, groups=2, padding="same", name="grouped")(x)
    x = L.Conv2D(8, 1, name="c3")(x)
    model = keras.Model(x0, L.Dense(3, name="logits")(L.GlobalAveragePooling2D()(x)))
    randomize_weights(model, 0)
    check_rebuild(model, 0.5, 1, 0)

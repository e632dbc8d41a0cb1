"""Operation nodes: Keras 3 ops applied to symbolic tensors (x + 3, x * gate,
keras.ops.pad, keras.ops.mean …) and their tf_keras form (TFOpLambda layers) prune like
layers; an op on the channel axis, or an unknown one, is a barrier with a warning."""
import warnings

import numpy as np
import pytest
import tensorflow as tf

from keras_slim import register_rule
from keras_slim.compat import KERAS3, keras
from keras_slim.core import rules
from keras_slim.core.equivalence import check_equivalence
from keras_slim.core.graph import ChannelGraph
from keras_slim.core.metrics import profile
from keras_slim.core.plan import plan_from_scores, random_plan
from keras_slim.core.rebuild import mask, rebuild
from graphgen import randomize_weights

L = keras.layers
if KERAS3:
    o = keras.ops
    OPS = {"relu6": o.relu6, "mean": o.mean, "pad": o.pad, "transpose": o.transpose,
           "reshape": o.reshape, "matmul": o.matmul, "unknown": o.arctan}
    UNKNOWN = "ops.Arctan"
else:
    OPS = {"relu6": tf.nn.relu6, "mean": tf.reduce_mean, "pad": tf.pad,
           "transpose": tf.transpose, "reshape": tf.reshape, "matmul": tf.linalg.matmul,
           "unknown": tf.math.atan}
    UNKNOWN = "tf.math.atan"


def _mobilenet_v3_block(zero_gammas=False):
    """conv-BN-hard-swish, an SE gate of shape (B,1,1,C) multiplied in as a tensor, a
    per-channel constant, a spatial pad, then a mean over space as the head."""
    hsig = lambda t: OPS["relu6"](t + 3.0) * (1.0 / 6.0)  # noqa: E731
    x0 = keras.Input((8, 8, 3), name="image")
    x = L.Conv2D(16, 3, padding="same", use_bias=False, name="c1")(x0)
    x = L.BatchNormalization(name="bn1")(x)
    x = x * hsig(x)
    g = OPS["mean"](x, axis=[1, 2], keepdims=True)
    g = L.Conv2D(4, 1, activation="relu", name="se_reduce")(g)
    g = hsig(L.Conv2D(16, 1, name="se_expand")(g))
    x = x * g
    x = x + np.linspace(-1, 1, 16).astype("float32")
    x = OPS["pad"](x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    x = L.Conv2D(8, 3, name="c2")(x)
    x = OPS["mean"](x, axis=[1, 2])
    model = keras.Model(x0, L.Dense(3, name="logits")(x))
    randomize_weights(model, 0, zero_gamma=zero_gammas)
    return model


def _x(n=4, shape=(8, 8, 3)):
    return np.random.default_rng(1).normal(size=(n,) + shape).astype("float32")


def test_operation_nodes_rebuild_like_mask_and_reload(tmp_path):
    model = _mobilenet_v3_block(zero_gammas=True)
    graph = ChannelGraph(model)
    assert graph.group_of("c1").prunable.all() and graph.group_of("se_reduce").prunable.all()
    before = [w.copy() for w in model.get_weights()]
    plan = random_plan(graph, 0.5, round_to=1)
    rebuilt = rebuild(model, plan, graph=graph)
    assert check_equivalence(mask(model, plan, graph=graph), rebuilt, data=_x())["max_abs"] \
        <= 1e-5
    assert rebuilt.count_params() < model.count_params()
    assert all((a == b).all() for a, b in zip(before, model.get_weights()))
    rebuilt.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    assert check_equivalence(rebuilt, again, data=_x())["max_abs"] == 0.0
    assert len(ChannelGraph(again).groups) == len(graph.groups)


def test_constants_fold_through_operation_nodes():
    # BN γ = 0 channels emit β; hard-swish, a per-channel constant and a scalar carry it
    # (as a constant) to the 1×1 conv, which folds it: removing exactly those channels
    # leaves the function unchanged.
    hsig = lambda t: OPS["relu6"](t + 3.0) * (1.0 / 6.0)  # noqa: E731
    x0 = keras.Input((8, 8, 3))
    x = L.Conv2D(16, 3, padding="same", use_bias=False, name="c1")(x0)
    x = L.BatchNormalization(name="bn1")(x)
    x = x * hsig(x)
    x = (x + np.linspace(-1, 1, 16).astype("float32")) * 0.5
    x = L.Conv2D(8, 1, name="c2")(x)
    model = keras.Model(x0, OPS["mean"](x, axis=[1, 2]))
    randomize_weights(model, 3)
    bn = model.get_layer("bn1")
    weights = bn.get_weights()
    weights[0][:6] = 0.0
    bn.set_weights(weights)
    plan = plan_from_scores(model, {"c1": np.r_[np.zeros(6), np.ones(10)]}, 6 / 16, round_to=1)
    assert plan.kept_channels == plan.total_channels - 6
    rebuilt, report = rebuild(model, plan, return_report=True)
    assert report.exact and report.compensations
    assert check_equivalence(model, rebuilt, data=_x())["max_abs"] <= 1e-5


def test_macs_and_params_count_models_with_operation_nodes():
    model = _mobilenet_v3_block()
    counts = profile(model)
    assert counts["params"] == model.count_params()
    assert counts["layers"]["c1"]["macs"] == 8 * 8 * 9 * 3 * 16
    assert counts["layers"]["c2"]["macs"] == 8 * 8 * 9 * 16 * 8
    op_paths = [p for p in counts["layers"] if p not in {l.name for l in model.layers}] \
        if KERAS3 else [p for p in counts["layers"] if p.startswith("tf.")]
    assert op_paths and all(counts["layers"][p] == {"params": 0, "macs": 0} for p in op_paths)


def test_a_macs_or_params_target_counts_models_with_operation_nodes():
    from keras_slim.core.criteria import criterion_plan
    model = _mobilenet_v3_block()
    for target in ({"macs": 0.5}, {"params": 0.5}):
        rebuilt = rebuild(model, criterion_plan(model, "l1_norm", target=target,
                                                round_to=1))
        key = next(iter(target))
        assert profile(rebuilt)[key] <= 0.5 * profile(model)[key] * 1.1, target


def test_operation_nodes_inside_a_nested_model():
    inner_in = keras.Input((8, 8, 8))
    y = L.Conv2D(8, 1, name="inner_conv")(inner_in)
    y = OPS["relu6"](y * 2.0 + 1.0)
    inner = keras.Model(inner_in, y, name="inner")
    x0 = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="stem")(x0)
    x = inner(x) + x
    x = L.Conv2D(4, 1, name="proj")(x)
    model = keras.Model(x0, L.GlobalAveragePooling2D()(x))
    randomize_weights(model, 1)
    graph = ChannelGraph(model)
    assert graph.group_of("stem").prunable.all()
    plan = random_plan(graph, 0.5, round_to=1)
    rebuilt = rebuild(model, plan, graph=graph)
    assert rebuilt.count_params() < model.count_params()
    assert check_equivalence(mask(model, plan), rebuilt, data=_x())["max_abs"] <= 1e-5


CHANNEL_OPS = {
    "channel_pad": lambda x: OPS["pad"](x, [[0, 0], [0, 0], [0, 0], [1, 1]]),
    "transpose": lambda x: OPS["transpose"](x, [0, 1, 3, 2]),
    "reshape": lambda x: OPS["reshape"](x, (-1, 8, 4, 16)),
    "channel_mean": lambda x: OPS["mean"](x, axis=-1, keepdims=True),
    "matmul": lambda x: OPS["matmul"](x, np.ones((8, 8), "float32")),
    "channel_slice": lambda x: x[:, :, :, :4],
}


@pytest.mark.parametrize("name", sorted(CHANNEL_OPS))
def test_an_op_on_the_channel_axis_is_a_barrier_with_a_warning(name):
    x0 = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="c1")(x0)
    x = CHANNEL_OPS[name](x)
    x = L.Conv2D(4, 1, name="c2")(x)
    model = keras.Model(x0, L.GlobalAveragePooling2D()(x))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graph = ChannelGraph(model)
    messages = [str(w.message) for w in caught if "kept unpruned" in str(w.message)]
    op = next(op for op in graph.ops if op.inputs and op.inputs[0].startswith("c1:"))
    assert any(repr(op.path) in m and op.class_name in m for m in messages), messages
    assert not graph.group_of("c1").prunable.any()


def test_an_unknown_op_warns_and_registering_a_rule_makes_it_prunable():
    x0 = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="c1")(x0)
    x = OPS["unknown"](x)
    x = L.Conv2D(4, 1, name="c2")(x)
    model = keras.Model(x0, L.GlobalAveragePooling2D()(x))
    randomize_weights(model, 2)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert not ChannelGraph(model).group_of("c1").prunable.any()
        assert any(f"({UNKNOWN}) has no channel rule" in str(w.message) for w in caught)
        register_rule(UNKNOWN, "elementwise")
        graph = ChannelGraph(model)
        assert graph.group_of("c1").prunable.all()
        plan = random_plan(graph, 0.5, round_to=1)
        rebuilt = rebuild(model, plan, graph=graph)
        assert check_equivalence(mask(model, plan), rebuilt, data=_x())["max_abs"] <= 1e-5
    finally:
        rules.RULES.pop(UNKNOWN, None)


def test_op_and_layer_of_the_same_class_name_get_their_own_rules():
    x0 = keras.Input((8, 8, 3))
    a = L.Conv2D(8, 1, name="a")(x0)
    b = L.Conv2D(8, 1, name="b")(x0)
    layer_sum = L.Add(name="layer_add")([a, b])
    op_sum = layer_sum + 1.0
    model = keras.Model(x0, op_sum)
    kinds = {op.path: op.class_name for op in ChannelGraph(model).ops}
    assert kinds["layer_add"] == "Add"
    op_kind = [k for p, k in kinds.items() if p not in ("layer_add", "a", "b")
               and k != "InputLayer"]
    assert op_kind == (["ops.Add"] if KERAS3 else ["tf.__operators__.add"])
    assert isinstance(rules.rule_for(op_kind[0]), rules.Rule)
    assert type(rules.rule_for(op_kind[0])) is not type(rules.rule_for("Add"))

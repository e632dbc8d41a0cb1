"""Channel graph, plans, rebuild, mask, bias compensation, metrics: behaviour and errors."""
import json
import warnings

import numpy as np
import pytest
import tensorflow as tf

from keras_slim import compat
from keras_slim.compat import GraphError, keras
from keras_slim.core.equivalence import check_equivalence
from keras_slim.core.graph import ChannelGraph
from keras_slim.core.metrics import compare, format_report, profile
from keras_slim.core.plan import ChannelPlan, l1_norm_plan, plan_from_scores, random_plan
from keras_slim.core.rebuild import mask, rebuild

L = keras.layers


def randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            new = [rng.normal(0, 0.3, w.shape).astype(w.dtype) for w in weights]
            if isinstance(layer, L.BatchNormalization):
                new[-1] = rng.uniform(0.5, 1.5, new[-1].shape).astype(new[-1].dtype)
            layer.set_weights(new)
    return model


def residual_se_net():
    x0 = keras.Input((8, 8, 3))
    a = L.ReLU(name="r1")(L.BatchNormalization(name="bn1")(
        L.Conv2D(16, 3, padding="same", use_bias=False, name="c1")(x0)))
    b = L.BatchNormalization(name="bn2")(L.Conv2D(16, 3, padding="same", name="c2")(a))
    s = L.Add(name="add")([a, b])
    se = L.GlobalAveragePooling2D(name="sq")(s)
    se = L.Dense(4, activation="relu", name="se1")(se)
    se = L.Reshape((1, 1, 16), name="rs")(L.Dense(16, activation="sigmoid", name="se2")(se))
    s = L.Multiply(name="mul")([s, se])
    d = L.DepthwiseConv2D(3, padding="same", name="dw")(s)
    c = L.Conv2D(24, 1, name="c3")(L.Concatenate(name="cat")([d, a]))
    f = L.Flatten(name="fl")(L.MaxPooling2D(2, name="mp")(c))
    return randomize(keras.Model(x0, L.Dense(5, name="out")(f), name="resse"))


def vgg_dense_head(kernel=3):
    x0 = keras.Input((8, 8, 3))
    x = x0
    for i, width in enumerate((16, 16)):
        x = L.Conv2D(width, kernel, padding="same", use_bias=False, name=f"c{i}")(x)
        x = L.ReLU(name=f"r{i}")(L.BatchNormalization(name=f"bn{i}")(x))
    x = L.Flatten(name="fl")(L.MaxPooling2D(name="mp")(x))
    x = L.BatchNormalization(name="bnf")(L.Dense(16, use_bias=False, name="fc")(x))
    x = L.ReLU(name="rf")(x)
    return randomize(keras.Model(x0, L.Dense(5, name="out")(x), name="vggd"))


# --- graph -----------------------------------------------------------------------------
def test_groups_couple_residual_and_se_and_keep_outputs_fixed():
    graph = ChannelGraph(residual_se_net())
    groups = {g.name: g for g in graph.groups}
    # c1 (through the Add), c2 and the SE gate producer se2 are one group.
    assert groups["c1"].layers == ["c1", "c2", "se2"] and groups["c1"].size == 16
    assert groups["se1"].size == 4 and groups["c3"].size == 24
    assert not groups["out"].prunable.any() and groups["c1"].prunable.all()
    # The depthwise output is c1's channel, the concat is an index map.
    dw, cat = graph.op_by_path["dw"], graph.op_by_path["cat"]
    assert (graph.roots(dw.out_ids()) == groups["c1"].roots).all()
    assert (graph.roots(cat.out_ids())[16:] == groups["c1"].roots).all()
    # Flatten keeps each feature's channel: 4*4 positions x 24 channels.
    flat = graph.roots(graph.op_by_path["fl"].out_ids())
    assert len(flat) == 4 * 4 * 24 and (flat[:24] == groups["c3"].roots).all()


def test_nested_and_sequential_models_are_read():
    inner_in = keras.Input((6, 6, 8))
    inner = keras.Model(inner_in, L.Conv2D(8, 1, name="ic")(inner_in), name="inner")
    seq = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(8, 3, name="sc"),
                            L.BatchNormalization(name="sbn"), L.ReLU(name="sr")], name="seq")
    x0 = keras.Input((8, 8, 3))
    y = inner(seq(x0))
    model = randomize(keras.Model(x0, L.Dense(2, name="out")(L.GlobalAveragePooling2D()(y))))
    graph = ChannelGraph(model)
    assert [g.name for g in graph.groups] == ["seq/sc", "inner/ic", "out"]
    plan = random_plan(model, 0.5, round_to=4)
    rebuilt = rebuild(model, plan)
    assert rebuilt.get_layer("inner").get_layer("ic").kernel.shape == (1, 1, 4, 4)
    assert check_equivalence(mask(model, plan), rebuilt)["max_abs"] <= 1e-4


def test_unknown_layer_is_a_barrier_with_warning():
    x0 = keras.Input((4, 4, 3))
    y = L.Conv2D(8, 1, name="c")(x0)
    y = L.LayerNormalization(name="ln")(y)
    y = L.UnitNormalization(name="un")(L.Conv2D(8, 1, name="d")(y))
    model = keras.Model(x0, L.GlobalAveragePooling2D()(y))
    graph = ChannelGraph(model)
    assert not any(g.prunable.any() for g in graph.groups)


# --- errors ----------------------------------------------------------------------------
def test_lambda_is_refused_with_its_name():
    x0 = keras.Input((4, 4, 3))
    y = L.Lambda(lambda t: t * 2, name="double")(L.Conv2D(4, 1)(x0))
    with pytest.raises(GraphError, match="'double' is a Lambda"):
        ChannelGraph(keras.Model(x0, y))


def test_shared_layer_is_refused_with_its_name():
    x0 = keras.Input((4, 4, 4))
    conv = L.Conv2D(4, 1, name="shared")
    with pytest.raises(GraphError, match="'shared' is called 2 times"):
        ChannelGraph(keras.Model(x0, conv(conv(x0))))


def test_subclassed_model_is_refused():
    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="custom_net")
            self.conv = L.Conv2D(4, 1)

        def call(self, x):
            return self.conv(x)

    net = Net()
    net(np.zeros((1, 4, 4, 3), np.float32))
    with pytest.raises(GraphError, match="'custom_net' is a subclassed model"):
        ChannelGraph(net)


def test_not_a_model_is_refused():
    with pytest.raises(TypeError, match="model must be a Keras model"):
        ChannelGraph("resnet")


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, float("nan")])
def test_ratio_outside_range(ratio):
    with pytest.raises(ValueError, match="ratio must be in \\[0, 1\\)"):
        random_plan(vgg_dense_head(), ratio)


def test_nan_importance_names_the_layer():
    model = vgg_dense_head()
    scores = {"bn0": np.full(16, np.nan)}
    with pytest.raises(ValueError, match="layer 'bn0' contains NaN"):
        plan_from_scores(model, scores, 0.5)


def test_importance_of_wrong_length_and_unknown_layer():
    model = vgg_dense_head()
    with pytest.raises(ValueError, match="'bn0' has 3 values"):
        plan_from_scores(model, {"bn0": np.ones(3)}, 0.5)
    with pytest.raises(GraphError, match="no layer 'nope'"):
        plan_from_scores(model, {"nope": np.ones(3)}, 0.5)


def test_plan_for_another_model_is_refused():
    plan = random_plan(vgg_dense_head(), 0.5)
    with pytest.raises(GraphError, match="Was it made for another model"):
        rebuild(residual_se_net(), plan)


# --- plans -----------------------------------------------------------------------------
def test_global_threshold_removes_the_quantile_without_rounding():
    model = vgg_dense_head()
    scores = {"bn0": np.arange(16.0), "bn1": np.arange(16.0) + 100, "bnf": np.arange(16.0) + 20}
    plan = plan_from_scores(model, scores, 0.25, round_to=1)
    kept = {g.name: g.keep for g in plan.groups}
    # The 12 lowest of 48 scores are bn0's 0..11.
    assert kept["c0"] == list(range(12, 16)) and kept["c1"] == kept["fc"] == list(range(16))
    assert plan.meta["removed_share"] == 0.25


def test_global_ranking_with_ties_removes_exactly_the_ratio():
    model = vgg_dense_head()  # all scores equal, as in a freshly built net (γ = 1)
    scores = {"bn0": np.ones(16), "bn1": np.ones(16), "bnf": np.ones(16)}
    plan = plan_from_scores(model, scores, 0.1, round_to=1)
    assert plan.total_channels - plan.kept_channels == round(0.1 * 48)


def test_mean_normalised_ranking_ignores_each_layers_scale():
    model = vgg_dense_head()
    shape = np.arange(16.0) + 1  # the same spread in every layer, at scales 1e-2 .. 10
    scores = {"bn0": 0.01 * shape, "bn1": 10 * shape, "bnf": shape}
    raw = {g.name: g.keep for g in plan_from_scores(model, scores, 0.25, round_to=1).groups}
    assert raw["c0"] == list(range(12, 16))  # all 12 from the layer of smallest scale
    plan = plan_from_scores(model, scores, 0.25, round_to=1, normalizer="mean")
    assert all(g.keep == list(range(4, 16)) for g in plan.groups)  # 4 from each
    assert plan.meta["normalizer"] == "mean"
    rescaled = dict(scores, bn1=1e-6 * shape)
    again = plan_from_scores(model, rescaled, 0.25, round_to=1, normalizer="mean")
    assert [g.keep for g in again.groups] == [g.keep for g in plan.groups]
    with pytest.raises(ValueError, match="normalizer must be one of"):
        plan_from_scores(model, scores, 0.25, normalizer="max")
    with pytest.raises(ValueError, match="changes nothing with scope='layer'"):
        plan_from_scores(model, scores, 0.25, scope="layer", normalizer="mean")
    zeros = dict(scores, bn0=np.zeros(16))  # no scale: left as it is, nothing blows up
    plan = plan_from_scores(model, zeros, 0.25, round_to=1, normalizer="mean")
    assert [len(g.keep) for g in plan.groups] == [4, 16, 16]  # the zeros go first


def test_layer_scope_floor_and_rounding():
    model = vgg_dense_head()
    scores = {"bn0": np.arange(16.0), "bn1": np.arange(16.0), "bnf": np.arange(16.0)}
    plan = plan_from_scores(model, scores, 0.5, scope="layer", round_to=4)
    assert all(g.keep == list(range(8, 16)) for g in plan.groups)
    # 0.3 * 16 = 4.8 -> 4 removed -> 12 kept, already a multiple of 4; round_to=8 -> 16.
    assert [len(g.keep) for g in plan_from_scores(model, scores, 0.3, scope="layer",
                                                  round_to=4).groups] == [12, 12, 12]
    assert [len(g.keep) for g in plan_from_scores(model, scores, 0.3, scope="layer",
                                                  round_to=8).groups] == [16, 16, 16]
    assert all(len(g.keep) == 16 for g in plan_from_scores(model, scores, 0.0).groups)
    plan = plan_from_scores(model, scores, 0.99, round_to=8)
    assert all(len(g.keep) == 8 for g in plan.groups)  # never 0: floor then rounding
    plan = plan_from_scores(model, scores, 0.99, round_to=1, min_fraction=0.25)
    assert all(len(g.keep) == 4 for g in plan.groups)


def test_plan_json_round_trip_and_table(tmp_path):
    model = residual_se_net()
    plan = l1_norm_plan(model, 0.5, round_to=2)
    path = tmp_path / "plan.json"
    plan.save(path)
    again = ChannelPlan.load(path)
    assert again.to_dict() == json.loads(json.dumps(plan.to_dict()))
    assert "c1, c2, se2" in plan.table() and "removed" in plan.table()
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json' is not valid JSON"):
        ChannelPlan.load(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        ChannelPlan.load(tmp_path / "missing.json")


def test_l1_plan_drops_the_smallest_filters():
    model = vgg_dense_head(kernel=1)
    kernel = model.get_layer("c0").get_weights()[0]
    kernel[..., :4] *= 1e-3
    model.get_layer("c0").set_weights([kernel])
    plan = plan_from_scores(model, {"c0": np.abs(kernel).sum(axis=(0, 1, 2))}, 0.25,
                            scope="layer", round_to=1)
    assert plan.groups[0].keep == list(range(4, 16))


# --- rebuild, mask, compensation ---------------------------------------------------------
def test_rebuild_keeps_names_shrinks_and_leaves_the_model_alone():
    model = residual_se_net()
    before = [w.copy() for w in model.get_weights()]
    plan = random_plan(model, 0.5, round_to=4)
    rebuilt = rebuild(model, plan)
    assert [layer.name for layer in rebuilt.layers] == [layer.name for layer in model.layers]
    assert rebuilt.count_params() < model.count_params()
    assert all((a == b).all() for a, b in zip(before, model.get_weights()))
    assert check_equivalence(mask(model, plan), rebuilt)["max_abs"] <= 1e-4


def _zero_gamma_of_removed(model, plan, bn_of):
    for group in plan.groups:
        removed = np.setdiff1d(np.arange(group.size), group.keep)
        for bn in bn_of.get(group.name, []):
            weights = model.get_layer(bn).get_weights()
            weights[0][removed] = 0.0
            weights[1][removed] = np.abs(weights[1][removed]) + 0.5  # β > 0: act(β) ≠ 0
            model.get_layer(bn).set_weights(weights)


def test_bias_compensation_is_exact_for_dense_and_1x1():
    model = vgg_dense_head(kernel=1)
    plan = random_plan(model, 0.5, round_to=1)
    _zero_gamma_of_removed(model, plan, {"c0": ["bn0"], "c1": ["bn1"], "fc": ["bnf"]})
    rebuilt, report = rebuild(model, plan, return_report=True)
    assert report.exact and {c.target for c in report.compensations} >= {"bias"}
    assert check_equivalence(model, rebuilt)["max_abs"] <= 1e-4
    without = rebuild(model, plan, compensate=False)
    assert check_equivalence(model, without)["max_abs"] > 1e-2


def test_bias_compensation_on_same_convs_is_approximate_and_reported():
    model = vgg_dense_head(kernel=3)
    plan = random_plan(model, 0.5, round_to=1)
    _zero_gamma_of_removed(model, plan, {"c0": ["bn0"], "c1": ["bn1"], "fc": ["bnf"]})
    rebuilt, report = rebuild(model, plan, return_report=True)
    assert not report.exact
    assert [c.exact for c in report.compensations if c.layer == "c1"] == [False]
    with_error = check_equivalence(model, rebuilt)["max_abs"]
    without_error = check_equivalence(model, rebuild(model, plan, compensate=False))["max_abs"]
    assert with_error < without_error  # border error only


def test_compensation_adds_a_bias_where_there_is_none():
    x0 = keras.Input((6,))
    h = L.ReLU(name="r")(L.BatchNormalization(name="bn")(L.Dense(8, name="d1")(x0)))
    model = randomize(keras.Model(x0, L.Dense(3, use_bias=False, name="out")(h)))
    plan = random_plan(model, 0.5, round_to=1)
    _zero_gamma_of_removed(model, plan, {"d1": ["bn"]})
    rebuilt, report = rebuild(model, plan, return_report=True)
    assert [c.target for c in report.compensations] == ["new_bias"]
    assert check_equivalence(model, rebuilt)["max_abs"] <= 1e-5


def test_rebuilt_model_trains_saves_and_reloads(tmp_path):
    model = residual_se_net()
    rebuilt = rebuild(model, random_plan(model, 0.5, round_to=4))
    rebuilt.compile(optimizer="sgd",
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 3)).astype("float32")
    rebuilt.fit(x, np.arange(8) % 5, epochs=1, verbose=0)
    rebuilt.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    assert np.allclose(again.predict(x, verbose=0), rebuilt.predict(x, verbose=0), atol=1e-5)


# --- metrics ----------------------------------------------------------------------------
def test_profile_counts_macs_by_hand():
    x0 = keras.Input((8, 8, 3))
    y = L.Conv2D(4, 3, padding="same", name="c")(x0)
    y = L.DepthwiseConv2D(3, padding="valid", name="dw")(y)
    y = L.Dense(2, name="d")(L.Flatten()(y))
    p = profile(keras.Model(x0, y))
    assert p["layers"]["c"] == {"params": 3 * 3 * 3 * 4 + 4, "macs": 8 * 8 * 9 * 3 * 4}
    assert p["layers"]["dw"]["macs"] == 6 * 6 * 9 * 4
    assert p["layers"]["d"]["macs"] == 6 * 6 * 4 * 2
    assert p["macs"] == 6912 + 1296 + 288


def test_compare_reports_ratios():
    model = vgg_dense_head()
    rebuilt = rebuild(model, random_plan(model, 0.5, round_to=1))
    report = compare(model, rebuilt)
    assert report["params_ratio"] > 1.5 and report["macs_ratio"] > 1.5
    assert "FLOPs" in format_report(report)


def test_less_common_layers_rebuild_equal_to_mask():
    x0 = keras.Input((8, 8, 3))
    y = L.Normalization(mean=[0.1, 0.2, 0.3], variance=[1.0, 2.0, 3.0], name="norm")(x0)
    y = L.Rescaling(0.5, name="scale")(y)
    y = L.Conv2DTranspose(8, 3, strides=2, padding="same", name="up")(y)
    y = L.PReLU(shared_axes=[1, 2], name="prelu")(L.BatchNormalization(name="bn")(y))
    y = L.Cropping2D(2, name="crop")(L.ZeroPadding2D(1, name="pad")(y))
    y = L.SeparableConv2D(8, 3, depth_multiplier=2, name="sep")(y)
    y = L.ELU(name="elu")(L.SpatialDropout2D(0.1, name="sd")(y))
    y = L.Reshape((-1, 8), name="seq")(y)
    y = L.LeakyReLU(name="lrelu")(L.Conv1D(8, 3, name="c1d")(y))
    y = L.GlobalMaxPooling1D(name="gmp")(y)
    model = randomize(keras.Model(x0, L.Dense(3, name="out")(y)))
    graph = ChannelGraph(model)
    assert [g.name for g in graph.prunable_groups] == ["up", "sep", "c1d"]
    plan = random_plan(model, 0.5, round_to=2)
    rebuilt = rebuild(model, plan)
    kept = {g.name: len(g.keep) for g in plan.groups}
    assert kept["up"] < 8 and kept["sep"] < 8
    # depth multiplier 2: the pointwise kernel reads 2 channels per kept input channel.
    assert tuple(rebuilt.get_layer("sep").pointwise_kernel.shape) == (1, 1, 2 * kept["up"],
                                                                       kept["sep"])
    assert check_equivalence(mask(model, plan), rebuilt)["max_abs"] <= 1e-4


@compat.register_serializable("keras_slim_tests")
class Doubler(keras.layers.Layer):
    def call(self, x):
        return 2 * x


def test_layer_without_rule_is_kept_whole_with_a_warning():
    x0 = keras.Input((4, 4, 3))
    y = Doubler(name="doubler")(L.Conv2D(8, 1, name="c")(x0))
    y = L.Conv2D(8, 1, name="d")(y)
    model = randomize(keras.Model(x0, L.Dense(2, name="out")(L.Flatten()(y))))
    with pytest.warns(UserWarning, match="'doubler' \\(Doubler\\) has no channel rule"):
        graph = ChannelGraph(model)
    assert [g.name for g in graph.prunable_groups] == ["d"]
    plan = random_plan(graph, 0.5, round_to=1)
    assert check_equivalence(mask(model, plan), rebuild(model, plan))["max_abs"] <= 1e-4


def test_rebuilt_model_exports_a_savedmodel(tmp_path):
    model = residual_se_net()
    rebuilt = rebuild(model, random_plan(model, 0.5, round_to=4))
    compat.export_saved_model(rebuilt, str(tmp_path / "sm"))
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    out = loaded.signatures["serving_default"](tf.constant(x))
    np.testing.assert_allclose(list(out.values())[0].numpy(), rebuilt.predict(x, verbose=0),
                               atol=1e-5)


def test_custom_layers_are_found_in_both_flavours():
    # tf_keras serializes registered layers as "keras_slim>ChannelZeroPad".
    from keras_slim.zoo import models

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        graph = ChannelGraph(models.build("resnet20", input_shape=(16, 16, 3)))
    # Option-A zero padding couples stage i's channels to the first ones of stage i+1,
    # so the residual streams of all three stages are one group of 64 channels.
    stream = max(graph.groups, key=lambda g: g.size)
    assert stream.size == 64 and stream.prunable.all() and len(stream.layers) == 1 + 3 * 3  # stem + every block's conv2


def test_a_layer_inside_a_concatenated_group_keeps_a_channel():
    # a and b are concatenated and added to c: one group over a's and b's channels.
    x0 = keras.Input((6, 6, 3))
    a = L.Conv2D(4, 1, name="a")(x0)
    b = L.Conv2D(4, 1, name="b")(x0)
    c = L.Conv2D(8, 1, name="c")(x0)
    y = L.Add(name="add")([L.Concatenate(name="cat")([a, b]), c])
    model = randomize(keras.Model(x0, L.Dense(2, name="out")(L.GlobalAveragePooling2D()(y))))
    scores = {"c": np.array([9, 9, 9, 9, 0, 0, 0, 0.0])}  # b's channels are all worst
    plan = plan_from_scores(model, scores, 0.5, scope="layer", round_to=1)
    rebuilt = rebuild(model, plan)
    assert rebuilt.get_layer("b").filters == 1 and rebuilt.get_layer("a").filters == 4
    assert check_equivalence(mask(model, plan), rebuilt)["max_abs"] <= 1e-4



def test_every_layer_of_a_zero_pad_group_keeps_a_rounded_width():
    # A CIFAR ResNet's stream is one group over 16/32/64 channels (option-A shortcuts).
    # Its first stage's convs own the first 16; ranked globally they once kept 1 channel.
    from keras_slim.zoo import models
    model = models.build("resnet20", input_shape=(16, 16, 3))
    graph = ChannelGraph(model)
    originals = {l.name: l.filters for l in model.layers if isinstance(l, L.Conv2D)}
    rng = np.random.default_rng(0)
    ranked = {name: np.full(n, float(n)) + np.arange(n) / 100 for name, n in originals.items()}
    for scores in [ranked] + [{name: rng.random(n) for name, n in originals.items()}
                              for _ in range(4)]:
        for round_to, ratio in ((8, 0.5), (4, 0.7), (8, 0.3)):
            plan = plan_from_scores(graph, scores, ratio, round_to=round_to)
            rebuilt = rebuild(model, plan, graph=graph)
            for layer in rebuilt.layers:
                if isinstance(layer, L.Conv2D):
                    width, full = layer.filters, originals[layer.name]
                    assert width == full or (width % round_to == 0 and width >= round_to), \
                        (layer.name, width, round_to, ratio)
    assert rebuild(model, plan_from_scores(graph, ranked, 0.5), graph=graph).get_layer(
        "stem_conv").filters < 16  # stage 1 is pruned, to a rounded width


def test_separable_conv1d_and_grouped_conv_rebuild():
    x0 = keras.Input((12, 4))
    y = L.Conv1D(8, 3, name="c")(x0)
    y = L.SeparableConv1D(6, 3, depth_multiplier=2, name="sep")(y)
    y = L.Conv1D(6, 1, groups=3, name="grouped")(y)  # a barrier: its channels stay
    model = randomize(keras.Model(x0, L.Dense(2, name="out")(L.Flatten()(y))))
    plan = l1_norm_plan(model, 0.5, round_to=1)
    assert [g.name for g in plan.groups] == ["c"]
    assert check_equivalence(mask(model, plan), rebuild(model, plan))["max_abs"] <= 1e-4


def test_compensation_through_separable_and_depthwise_activation():
    x0 = keras.Input((6, 6, 3))
    y = L.BatchNormalization(name="bn")(L.Conv2D(8, 1, use_bias=False, name="c")(x0))
    y = L.DepthwiseConv2D(1, activation="relu", name="dw")(y)
    y = L.SeparableConv2D(4, 1, name="sep")(y)
    model = randomize(keras.Model(x0, L.Dense(2, name="out")(L.GlobalAveragePooling2D()(y))))
    # Only c's channels go (sep has no score), so the result must equal the original.
    plan = plan_from_scores(model, {"bn": np.arange(8.0)}, 0.5, scope="layer", round_to=1)
    _zero_gamma_of_removed(model, plan, {"c": ["bn"]})
    rebuilt, report = rebuild(model, plan, return_report=True)
    assert [(c.layer, c.exact) for c in report.compensations] == [("sep", True)]
    assert check_equivalence(model, rebuilt)["max_abs"] <= 1e-5


def test_unfolded_consumer_is_reported_inexact():
    x0 = keras.Input((4, 4, 3))
    y = L.BatchNormalization(name="bn")(L.Conv2D(8, 1, use_bias=False, name="c")(x0))
    y = L.Conv2DTranspose(4, 3, strides=2, name="up")(y)
    model = randomize(keras.Model(x0, L.Dense(2, name="out")(L.GlobalAveragePooling2D()(y))))
    plan = random_plan(model, 0.5, round_to=1)
    _zero_gamma_of_removed(model, plan, {"c": ["bn"]})
    _, report = rebuild(model, plan, return_report=True)
    assert [(c.layer, c.target, c.exact) for c in report.compensations] == [
        ("up", "not folded", False)]
    assert not report.exact


def test_gamma_tolerance_treats_small_gamma_as_constant():
    model = vgg_dense_head(kernel=1)
    plan = random_plan(model, 0.5, round_to=1)
    _zero_gamma_of_removed(model, plan, {"c0": ["bn0"], "c1": ["bn1"], "fc": ["bnf"]})
    for bn in ("bn0", "bn1", "bnf"):  # γ small but not 0, as after sparsity training
        w = model.get_layer(bn).get_weights()
        w[0] = np.where(w[0] == 0, 1e-6, w[0])
        model.get_layer(bn).set_weights(w)
    exact = check_equivalence(model, rebuild(model, plan))["max_abs"]
    tolerant = check_equivalence(model, rebuild(model, plan, gamma_tolerance=1e-5))["max_abs"]
    assert tolerant < 1e-4 < exact

"""Random small functional CNNs for property tests and benchmarks.

A model is described by a *recipe*: a plain, JSON-able dict (input shape, classes, a
list of blocks with their choices, a head and a weight seed). Recipes are drawn by
`random_recipe(source)`, where `source` is either

  * a hypothesis `draw` function (see the `cnn_models()` strategy), so hypothesis can
    shrink a failing model to a small recipe, or
  * a `numpy.random.Generator` / an int seed, for plain scripts (benchmarks);

and turned into a Keras functional model by `build_from_recipe(recipe)`, which also
randomises every weight with a numpy RNG seeded by `recipe["seed"]` so that nothing is
trivially zero (BN moving variances positive, gammas and betas non-zero).

    from tests.graphgen import random_cnn
    model = random_cnn(0)          # or random_cnn(np.random.default_rng(0))

Layers are named after their block ("b2_residual_conv1", "head_hidden", "logits"...), so
a failure points at the block type. Recipes stay small: a model builds in ~0.1 s.

Block kinds: conv chains (Conv2D k 1/3, same/valid, bias or not, optional BN, one of
ACTIVATIONS), residual (Add / Subtract / Average / Maximum; 1x1-conv or ChannelZeroPad
shortcut when the width changes), concat (two convs, or DenseNet-style input + conv), SE,
depthwise, separable, pooling, ZeroPadding2D, dropout, operation nodes ("ops": x * a + b,
hard-swish, an SE gate multiplied in as a tensor, a spatial pad, a per-channel constant,
a spatial mean), nested (functional or Sequential sub-model, or a functional sub-model
around another block). Heads: GAP -> Dense, a spatial-mean op -> Dense, or Flatten ->
Dense -> optional BN -> activation -> Dense.
"""
import numpy as np

from keras_slim.compat import KERAS3, keras

WIDTHS = (8, 4, 12, 16)
INPUT_SHAPES = ((8, 8, 3), (12, 12, 1))
CLASSES = (3, 2, 5)
# Simplest first: hypothesis shrinks sampled_from towards the first option.
ACTIVATIONS = ("relu", "none", "act_relu", "swish", "tanh", "sigmoid", "leaky", "prelu",
               "elu")
# "conv" listed twice: it is the most common block of a real CNN.
BLOCKS = ("conv", "residual", "concat", "se", "depthwise", "separable", "pool", "zeropad",
          "dropout", "nested", "conv", "ops", "ops")
# Operation nodes (Keras 3 ops / tf_keras op layers) applied to symbolic tensors.
OP_STYLES = ("scalar", "gate", "pad", "const", "mean")
SCALAR_FORMS = ("affine", "sub_div", "hswish", "hsigmoid", "clip")
MERGES = ("add", "add", "add", "subtract", "average", "maximum")


# --- choice sources ----------------------------------------------------------------------
class _HypothesisSource:
    def __init__(self, draw):
        from hypothesis import strategies as st
        self._draw, self._st = draw, st

    def pick(self, options):
        return self._draw(self._st.sampled_from(list(options)))

    def integer(self, low, high):
        return self._draw(self._st.integers(low, high))


class _NumpySource:
    def __init__(self, rng):
        self._rng = rng

    def pick(self, options):
        options = list(options)
        return options[int(self._rng.integers(len(options)))]

    def integer(self, low, high):
        return int(self._rng.integers(low, high + 1))


def _source(draw_or_rng):
    if isinstance(draw_or_rng, (_HypothesisSource, _NumpySource)):
        return draw_or_rng
    if isinstance(draw_or_rng, (int, np.integer)):
        return _NumpySource(np.random.default_rng(int(draw_or_rng)))
    if isinstance(draw_or_rng, np.random.Generator):
        return _NumpySource(draw_or_rng)
    if callable(draw_or_rng):  # hypothesis' draw
        return _HypothesisSource(draw_or_rng)
    raise TypeError(f"expected a hypothesis draw, a numpy Generator or an int seed, got "
                    f"{type(draw_or_rng).__name__}.")


# --- recipes -----------------------------------------------------------------------------
def _conv_spec(src, size):
    spec = {"width": src.pick(WIDTHS), "k": src.pick((3, 1)),
            "padding": src.pick(("same", "valid")), "bias": src.pick((True, False)),
            "bn": src.pick((True, False)), "act": src.pick(ACTIVATIONS)}
    if spec["k"] == 3 and spec["padding"] == "valid" and size < 5:
        spec["padding"] = "same"
    return spec


NESTED_BODIES = ("conv", "residual", "se", "concat", "ops", "nested")


def random_block(src, kind, size, depth=0):
    """Parameters of one block of `kind` on a feature map of spatial size `size`;
    returns (params, spatial size after the block). `depth`: nesting level."""
    src = _source(src)
    if kind == "conv":
        p = _conv_spec(src, size)
        shrink = 2 if p["k"] == 3 and p["padding"] == "valid" else 0
        return p, size - shrink
    if kind == "residual":
        return {"width": src.pick(WIDTHS), "merge": src.pick(MERGES),
                "act": src.pick(ACTIVATIONS), "post_act": src.pick(ACTIVATIONS),
                "bias": src.pick((False, True)),
                # Used when the width changes: 1x1 conv (+BN) or zero channels (option A).
                "shortcut": src.pick(("conv", "conv", "zeropad")),
                "shortcut_bn": src.pick((True, False))}, size
    if kind == "concat":
        return {"style": src.pick(("two_convs", "dense")), "w1": src.pick(WIDTHS),
                "w2": src.pick(WIDTHS), "act": src.pick(ACTIVATIONS),
                "bn": src.pick((True, False))}, size
    if kind == "se":
        return {"reduce": src.pick((2, 4)), "bias": src.pick((True, False))}, size
    if kind == "depthwise":
        p = {"multiplier": src.pick((1, 2)), "padding": src.pick(("same", "valid")),
             "bias": src.pick((True, False)), "bn": src.pick((True, False)),
             "act": src.pick(ACTIVATIONS)}
        if size < 5:
            p["padding"] = "same"
        return p, size - (2 if p["padding"] == "valid" else 0)
    if kind == "separable":
        p = {"width": src.pick(WIDTHS), "k": src.pick((3, 1)), "multiplier": src.pick((1, 2)),
             "padding": src.pick(("same", "valid")), "bias": src.pick((True, False)),
             "act": src.pick(ACTIVATIONS)}
        if p["k"] == 3 and p["padding"] == "valid" and size < 5:
            p["padding"] = "same"
        return p, size - (2 if p["k"] == 3 and p["padding"] == "valid" else 0)
    if kind == "pool":
        return {"type": src.pick(("max", "avg"))}, (size + 1) // 2
    if kind == "zeropad":
        return {"pad": 1}, size + 2
    if kind == "dropout":
        return {"type": src.pick(("dropout", "spatial"))}, size
    if kind == "ops":
        style = src.pick(OP_STYLES)
        p = {"style": style, "form": src.pick(SCALAR_FORMS), "a": src.pick((0.5, 2.0, -1.0)),
             "b": src.pick((3.0, -0.5)), "gate": src.pick(("plain", "conv", "conv")),
             "reduce": src.pick((2, 4)), "gate_first": src.pick((False, True)),
             "pad": [src.integer(0, 2), src.integer(0, 2)], "keepdims": True,
             "op": src.pick(("add", "multiply")), "seed": src.integer(0, 2 ** 16)}
        if style == "pad":
            return p, size + 2 * min(p["pad"])
        return p, (1 if style == "mean" else size)
    if kind == "nested":
        # functional / Sequential conv chain, or a functional model around another block
        # (itself possibly nested once more).
        p = {"style": src.pick(("functional", "sequential", "block")),
             "width": src.pick(WIDTHS), "k": src.pick((3, 1)),
             "bn": src.pick((True, False)), "act": src.pick(ACTIVATIONS),
             "two_convs": src.pick((False, True))}
        if p["style"] == "block":
            bodies = NESTED_BODIES if depth < 1 else NESTED_BODIES[:-1]
            body_kind = src.pick(bodies)
            body, size = random_block(src, body_kind, size, depth + 1)
            p["body"] = dict(body, kind=body_kind)
        return p, size
    raise ValueError(f"unknown block kind {kind!r}")


def random_head(src):
    src = _source(src)
    kind = src.pick(("gap", "flatten", "ops_mean"))
    if kind != "flatten":
        return {"type": kind}
    return {"type": "flatten", "hidden": src.pick(WIDTHS), "bn": src.pick((True, False)),
            "act": src.pick(ACTIVATIONS)}


def random_recipe(draw_or_rng, min_blocks=1, max_blocks=4, kinds=BLOCKS):
    """A small random model description (see the module docstring)."""
    src = _source(draw_or_rng)
    input_shape = src.pick(INPUT_SHAPES)
    recipe = {"input_shape": list(input_shape), "classes": src.pick(CLASSES),
              "blocks": [], "head": None, "seed": src.integer(0, 2 ** 31 - 1),
              # Some BN gammas exactly 0 (Network Slimming): those channels emit a
              # constant, which rebuild/mask fold into the consumers' biases.
              "zero_gamma": src.pick((False, False, False, True))}
    size = input_shape[0]
    for _ in range(src.integer(min_blocks, max_blocks)):
        kind = src.pick(kinds)
        params, size = random_block(src, kind, size)
        recipe["blocks"].append(dict(params, kind=kind))
    recipe["head"] = random_head(src)
    return recipe


def cnn_recipes(min_blocks=1, max_blocks=4, kinds=BLOCKS):
    """Hypothesis strategy of recipes (plain dicts: printed as is when a test fails)."""
    from hypothesis import strategies as st

    @st.composite
    def _recipes(draw):
        return random_recipe(draw, min_blocks, max_blocks, kinds)

    return _recipes()


def cnn_models(min_blocks=1, max_blocks=4, kinds=BLOCKS):
    """Hypothesis strategy of built models. Prefer `cnn_recipes()` + `build_from_recipe`
    in tests: the recipe is what a falsifying example should print."""
    return cnn_recipes(min_blocks, max_blocks, kinds).map(build_from_recipe)


def random_cnn(draw_or_rng=0, **kwargs):
    """A built, weight-randomised model from a hypothesis draw, a numpy Generator or a seed."""
    return build_from_recipe(random_recipe(draw_or_rng, **kwargs))


# --- building ----------------------------------------------------------------------------
def _op_functions():
    """The same operations on symbolic tensors in each flavour: keras.ops (Keras 3 op
    nodes) or tf functions (tf_keras TFOpLambda layers)."""
    if KERAS3:
        o = keras.ops
        return {"relu6": o.relu6, "sigmoid": o.sigmoid, "clip": o.clip,
                "pad": lambda x, widths: o.pad(x, widths),
                "mean": lambda x, axis, keepdims: o.mean(x, axis=axis, keepdims=keepdims)}
    import tensorflow as tf
    return {"relu6": tf.nn.relu6, "sigmoid": tf.math.sigmoid, "clip": tf.clip_by_value,
            "pad": lambda x, widths: tf.pad(x, widths),
            "mean": lambda x, axis, keepdims: tf.reduce_mean(x, axis=axis, keepdims=keepdims)}


class _Builder:
    def __init__(self):
        self.layers = keras.layers
        self.ops = _op_functions()

    def op_block(self, x, p, name):
        """Scalar arithmetic, hard-swish, an SE gate of shape (B,1,1,C) multiplied in,
        a spatial pad, a per-channel constant, a spatial mean (keepdims)."""
        L, o, style = self.layers, self.ops, p["style"]
        channels = int(x.shape[-1])
        hsigmoid = lambda t: o["relu6"](t + 3.0) * (1.0 / 6.0)  # noqa: E731
        if style == "scalar":
            form = p["form"]
            if form == "affine":
                return x * p["a"] + p["b"]
            if form == "sub_div":
                return (x - p["b"]) / p["a"]
            if form == "hswish":
                return x * hsigmoid(x)
            if form == "hsigmoid":
                return hsigmoid(x)
            return o["clip"](x, -1.0, 2.0)
        if style == "gate":
            g = o["mean"](x, [1, 2], True)
            if p["gate"] == "conv":  # MobileNetV3's squeeze-excite
                g = L.Conv2D(p["reduce"], 1, activation="relu", name=name + "_reduce")(g)
                g = L.Conv2D(channels, 1, name=name + "_expand")(g)
                g = hsigmoid(g)
            else:
                g = o["sigmoid"](g)
            return g * x if p["gate_first"] else x * g
        if style == "pad":
            a, b = p["pad"]
            return o["pad"](x, [[0, 0], [a, a], [b, b], [0, 0]])
        if style == "const":
            c = np.random.default_rng(p["seed"]).normal(size=channels).astype(np.float32)
            return x + c if p["op"] == "add" else x * c
        return o["mean"](x, [1, 2], p["keepdims"])

    def act(self, x, kind, name):
        if kind == "none":
            return x
        return self.act_layer(kind, name, len(x.shape))(x)

    def act_layer(self, kind, name, rank=4):
        L = self.layers
        if kind == "relu":
            return L.ReLU(name=name)
        if kind == "act_relu":
            return L.Activation("relu", name=name)
        if kind in ("swish", "tanh", "sigmoid"):
            return L.Activation(kind, name=name)
        if kind == "leaky":
            return L.LeakyReLU(0.2, name=name)  # positional: alpha / negative_slope
        if kind == "prelu":
            shared = list(range(1, rank - 1)) or None
            return L.PReLU(shared_axes=shared, name=name)
        if kind == "elu":
            return L.ELU(name=name)
        raise ValueError(f"unknown activation {kind!r}")

    def conv_bn_act(self, x, p, name):
        L = self.layers
        x = L.Conv2D(p["width"], p["k"], padding=p["padding"], use_bias=p["bias"],
                     name=name + "_conv")(x)
        if p["bn"]:
            x = L.BatchNormalization(name=name + "_bn")(x)
        return self.act(x, p["act"], name + "_act")

    def block(self, x, p, name):
        L = self.layers
        kind = p["kind"]
        channels = int(x.shape[-1])
        if kind == "conv":
            return self.conv_bn_act(x, p, name)
        if kind == "ops":
            return self.op_block(x, p, name)
        if kind == "residual":
            w = p["width"]
            y = L.Conv2D(w, 3, padding="same", use_bias=p["bias"], name=name + "_conv1")(x)
            y = L.BatchNormalization(name=name + "_bn1")(y)
            y = self.act(y, p["act"], name + "_act1")
            y = L.Conv2D(w, 3, padding="same", use_bias=p["bias"], name=name + "_conv2")(y)
            y = L.BatchNormalization(name=name + "_bn2")(y)
            shortcut = x
            if channels < w and p.get("shortcut") == "zeropad":
                from keras_slim.zoo.layers import ChannelZeroPad
                before = (w - channels) // 2
                shortcut = ChannelZeroPad(before, w - channels - before,
                                          name=name + "_zeropad")(x)
            elif channels != w:
                shortcut = L.Conv2D(w, 1, use_bias=p["bias"], name=name + "_proj")(x)
                if p["shortcut_bn"]:
                    shortcut = L.BatchNormalization(name=name + "_proj_bn")(shortcut)
            merge = {"add": L.Add, "subtract": L.Subtract, "average": L.Average,
                     "maximum": L.Maximum}[p["merge"]]
            y = merge(name=name + "_" + p["merge"])([y, shortcut])
            return self.act(y, p["post_act"], name + "_post_act")
        if kind == "concat":
            b = L.Conv2D(p["w2"], 3, padding="same", name=name + "_b_conv")(x)
            if p["bn"]:
                b = L.BatchNormalization(name=name + "_b_bn")(b)
            b = self.act(b, p["act"], name + "_b_act")
            if p["style"] == "dense":  # DenseNet: the input passes through
                a = x
            else:
                a = L.Conv2D(p["w1"], 1, name=name + "_a_conv")(x)
                a = self.act(a, p["act"], name + "_a_act")
            return L.Concatenate(name=name + "_concat")([a, b])
        if kind == "se":
            s = L.GlobalAveragePooling2D(name=name + "_gap")(x)
            s = L.Dense(p["reduce"], activation="relu", use_bias=p["bias"],
                        name=name + "_reduce")(s)
            s = L.Dense(channels, activation="sigmoid", use_bias=p["bias"],
                        name=name + "_expand")(s)
            s = L.Reshape((1, 1, channels), name=name + "_reshape")(s)
            return L.Multiply(name=name + "_scale")([x, s])
        if kind == "depthwise":
            x = L.DepthwiseConv2D(3, depth_multiplier=p["multiplier"], padding=p["padding"],
                                  use_bias=p["bias"], name=name + "_dw")(x)
            if p["bn"]:
                x = L.BatchNormalization(name=name + "_bn")(x)
            return self.act(x, p["act"], name + "_act")
        if kind == "separable":
            x = L.SeparableConv2D(p["width"], p["k"], depth_multiplier=p["multiplier"],
                                  padding=p["padding"], use_bias=p["bias"],
                                  name=name + "_sep")(x)
            return self.act(x, p["act"], name + "_act")
        if kind == "pool":
            pool = L.MaxPooling2D if p["type"] == "max" else L.AveragePooling2D
            return pool(2, padding="same", name=name + "_pool")(x)
        if kind == "zeropad":
            return L.ZeroPadding2D(p["pad"], name=name + "_pad")(x)
        if kind == "dropout":
            if p["type"] == "spatial":
                return L.SpatialDropout2D(0.25, name=name + "_sdrop")(x)
            return L.Dropout(0.25, name=name + "_drop")(x)
        if kind == "nested":
            shape = tuple(int(d) for d in x.shape[1:])
            spec = {"width": p["width"], "k": p["k"], "padding": "same", "bias": not p["bn"],
                    "bn": p["bn"], "act": p["act"]}
            if p.get("style") == "sequential":
                seq = [keras.Input(shape=shape)]
                for j, k in enumerate([p["k"], 1][:1 + p["two_convs"]]):
                    seq.append(L.Conv2D(p["width"], k, padding="same", use_bias=not p["bn"],
                                        name=f"{name}_s{j}_conv"))
                    if p["bn"]:
                        seq.append(L.BatchNormalization(name=f"{name}_s{j}_bn"))
                    if p["act"] != "none":
                        seq.append(self.act_layer(p["act"], f"{name}_s{j}_act"))
                return keras.Sequential(seq, name=name + "_sequential")(x)
            inner_in = keras.Input(shape=shape, name=name + "_in")
            if p.get("style") == "block":
                y = self.block(inner_in, p["body"], name + "_" + p["body"]["kind"])
                return keras.Model(inner_in, y, name=name + "_nested")(x)
            y = self.conv_bn_act(inner_in, spec, name + "_i1")
            if p["two_convs"]:
                y = self.conv_bn_act(y, dict(spec, k=1), name + "_i2")
            sub = keras.Model(inner_in, y, name=name + "_nested")
            return sub(x)
        raise ValueError(f"unknown block kind {kind!r}")

    def head(self, x, p, classes):
        L = self.layers
        if p["type"] == "gap":
            x = L.GlobalAveragePooling2D(name="head_gap")(x)
        elif p["type"] == "ops_mean":
            x = self.ops["mean"](x, [1, 2], False)
        else:
            x = L.Flatten(name="head_flatten")(x)
            x = L.Dense(p["hidden"], name="head_hidden")(x)
            if p["bn"]:
                x = L.BatchNormalization(name="head_bn")(x)
            x = self.act(x, p["act"], "head_act")
        return L.Dense(classes, name="logits")(x)


def build_from_recipe(recipe):
    """The functional Keras model of a recipe, with randomised weights."""
    builder = _Builder()
    inputs = keras.Input(shape=tuple(recipe["input_shape"]), name="image")
    x = inputs
    for i, block in enumerate(recipe["blocks"]):
        x = builder.block(x, block, f"b{i}_{block['kind']}")
    outputs = builder.head(x, recipe["head"], recipe["classes"])
    model = keras.Model(inputs, outputs, name="random_cnn")
    randomize_weights(model, recipe["seed"], zero_gamma=recipe.get("zero_gamma", False))
    return model


def _fan_in(layer, weight_name, shape):
    if "Depthwise" in type(layer).__name__ or "depthwise" in weight_name:
        return int(np.prod(shape[:-2]))  # each output sees one input channel
    return int(np.prod(shape[:-1]))


def randomize_weights(model, seed, zero_gamma=False):
    """Every weight random and non-trivial: kernels normal with std min(0.3, 1/sqrt(fan
    in)) so activations stay O(1) through a few layers (an absolute tolerance stays
    meaningful), biases / PReLU alphas / BN betas and means normal*0.3, BN gammas
    ±U(0.5, 1.5), BN moving variances U(0.5, 1.5). zero_gamma: about a quarter of
    each BN's gammas exactly 0 (their channels then emit the constant beta)."""
    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):
        weights = layer.weights
        if not weights:
            continue
        values = []
        for w in weights:
            shape = tuple(int(d) for d in w.shape)
            name = w.name.split("/")[-1].split(":")[0]
            if "moving_variance" in name:
                v = rng.uniform(0.5, 1.5, shape)
            elif "gamma" in name:
                v = rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
                if zero_gamma:
                    v[rng.random(shape) < 0.25] = 0.0
            elif len(shape) >= 2 and "alpha" not in name:
                fan_in = _fan_in(layer, name, shape)
                v = rng.standard_normal(shape) * min(0.3, 1.0 / np.sqrt(fan_in))
            else:
                v = rng.standard_normal(shape) * 0.3
            values.append(v.astype(np.float32))
        layer.set_weights(values)
    return model


def _all_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


def randomize_bn(model, seed=0):
    """Random BN statistics and affine weights (nested models too): fresh BN (γ=1, β=0,
    μ=0, σ²=1) hides slicing mistakes, so make every channel distinct."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            randomize_bn(layer, seed)
        elif isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(w.dtype) if i == len(
                layer.weights) - 1 else rng.normal(0, 0.2, w.shape).astype(w.dtype)
                for i, w in enumerate(layer.get_weights())])
    return model

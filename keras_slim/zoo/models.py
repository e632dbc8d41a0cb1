"""Reference CNNs for slimming experiments, as functional Keras models.

Shared conventions (the pruning tool relies on them):
  * functional models only, no Lambda layers, every layer named deterministically
    ("block1_conv2", "stage2_block3_bn1", ...);
  * convolutions have no bias (BN's beta makes it redundant) and each conv feeds a
    BatchNormalization (directly in post-activation nets; in the pre-activation
    nets, preresnet and densenet, the BN sits in front of the next conv);
  * the last layer is Dense(num_classes) named "logits", without softmax;
  * BN uses PyTorch's epsilon 1e-5 and momentum 0.1 (Keras momentum 0.9), like the
    reference implementations.

The Network Slimming models (vgg, preresnet, densenet) also copy the authors'
initialisation: conv weights N(0, sqrt(2 / (k*k*out))) and BN gamma = 0.5.
"""
from keras_slim.compat import keras
from keras_slim.zoo.layers import ChannelZeroPad

__all__ = ["MODEL_NAMES", "VGG_CFGS", "build", "densenet", "mobilenet_v2",
           "preresnet", "resnet", "vgg"]

# Network Slimming repo (Eric-mingjie/network-slimming, models/vgg.py) configs.
VGG_CFGS = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
         512, 512, 512),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512,
         "M", 512, 512, 512, 512),
}

# ~0.29M parameters: quick Fashion-MNIST / CIFAR runs.
VGG_SMALL_CFG = (32, 32, "M", 64, 64, "M", 128, 128)

# MobileNetV2 (t, c, n, s) table. For small inputs the stem and the c=24 stage use
# stride 1 instead of 2 (the usual CIFAR adaptation), keeping 4x4 maps at the end.
_MBV2_TABLE = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
               (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

_BN_EPSILON = 1e-5
_BN_MOMENTUM = 0.9


# ---------------------------------------------------------------- helpers


def _check_input(input_shape, num_classes):
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    if (shape is None or len(shape) != 3
            or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
            or shape[0] < 8 or shape[1] < 8 or shape[2] < 1):
        raise ValueError("input_shape must be (height, width, channels) of ints with "
                         f"height, width >= 8 and channels >= 1, got {input_shape!r}.")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}.")
    return shape


def _check_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}.")


def _slim_conv_init():
    # A fresh instance per layer: unseeded tf_keras initializers repeat their values.
    return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


def _conv(x, filters, kernel, name, strides=1, init="he_normal"):
    return keras.layers.Conv2D(
        filters, kernel, strides=strides, padding="same", use_bias=False,
        kernel_initializer=init() if callable(init) else init, name=name)(x)


def _bn(x, name, gamma=1.0):
    return keras.layers.BatchNormalization(
        epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM,
        gamma_initializer=keras.initializers.Constant(gamma), name=name)(x)


def _relu(x, name, max_value=None):
    return keras.layers.ReLU(max_value=max_value, name=name)(x)


def _head(x, num_classes, inputs, name, dense_init="glorot_uniform"):
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer=dense_init,
                                 name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def _make_divisible(value, divisor=8, min_value=None):
    """Round channels to a multiple of `divisor`, never dropping more than 10%."""
    min_value = divisor if min_value is None else min_value
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


# ---------------------------------------------------------------- VGG


def vgg(depth=19, input_shape=(32, 32, 3), num_classes=10, cfg=None, width=1.0,
        name=None):
    """CIFAR VGG of Network Slimming (Liu et al. 2017): conv3x3-BN-ReLU stacks.

    `cfg` (ints = conv channels, "M" = 2x2 max-pool) overrides the `depth` preset;
    `width` scales every conv's channels. Pools use padding "same" so odd sizes
    such as 7x7 still halve; global average pooling replaces the repo's
    AvgPool2d(2), which is the same thing on 32x32 inputs.
    """
    shape = _check_input(input_shape, num_classes)
    _check_positive("width", width)
    if cfg is None:
        if depth not in VGG_CFGS:
            raise ValueError(f"depth must be one of {sorted(VGG_CFGS)} (or pass cfg), "
                             f"got {depth!r}.")
        cfg = VGG_CFGS[depth]
        name = name or f"vgg{depth}"
    else:
        cfg = list(cfg)
        bad = [v for v in cfg if v != "M" and (isinstance(v, bool)
                                               or not isinstance(v, int) or v < 1)]
        if bad or not any(v != "M" for v in cfg):
            raise ValueError("cfg must list positive ints (conv channels) and 'M' "
                             f"(max-pool) with at least one int, got {cfg!r}.")
        name = name or "vgg_custom"

    inputs = keras.Input(shape=shape, name="input")
    x = inputs
    block, conv_in_block = 1, 0
    for v in cfg:
        if v == "M":
            x = keras.layers.MaxPooling2D(2, padding="same", name=f"block{block}_pool")(x)
            block, conv_in_block = block + 1, 0
            continue
        conv_in_block += 1
        tag = f"block{block}_{{}}{conv_in_block}"
        x = _conv(x, max(1, int(round(v * width))), 3, tag.format("conv"),
                  init=_slim_conv_init)
        x = _bn(x, tag.format("bn"), gamma=0.5)
        x = _relu(x, tag.format("relu"))
    return _head(x, num_classes, inputs, name,
                 dense_init=keras.initializers.RandomNormal(0.0, 0.01))


# ---------------------------------------------------------------- ResNet (He et al.)


def resnet(depth=20, input_shape=(32, 32, 3), num_classes=10, shortcut="A", name=None):
    """CIFAR ResNet of He et al. (2016), basic blocks, depth = 6n+2, 16/32/64 channels.

    shortcut "A": identity, or at a downsampling block 1x1 stride-2 subsampling
    plus zero channels (no parameters, as in the paper's CIFAR results);
    shortcut "B": 1x1 conv + BN projection where the shape changes.
    Strided convs use Keras' "same" padding (pads bottom/right, where PyTorch pads
    1 on every side); parameter counts are unaffected.
    """
    shape = _check_input(input_shape, num_classes)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110, ...), "
                         f"got {depth!r}.")
    option = str(shortcut).upper()
    if option not in ("A", "B"):
        raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}.")
    n = (depth - 2) // 6

    inputs = keras.Input(shape=shape, name="input")
    x = _conv(inputs, 16, 3, "stem_conv")
    x = _bn(x, "stem_bn")
    x = _relu(x, "stem_relu")
    channels = 16
    for stage, planes in enumerate((16, 32, 64), start=1):
        for b in range(1, n + 1):
            p = f"stage{stage}_block{b}_"
            strides = 2 if stage > 1 and b == 1 else 1
            y = _conv(x, planes, 3, p + "conv1", strides=strides)
            y = _bn(y, p + "bn1")
            y = _relu(y, p + "relu1")
            y = _conv(y, planes, 3, p + "conv2")
            y = _bn(y, p + "bn2")
            if strides == 1 and channels == planes:
                short = x
            elif option == "A":
                short = x
                if strides != 1:
                    short = keras.layers.MaxPooling2D(1, strides, padding="same",
                                                      name=p + "shortcut_pool")(short)
                extra = planes - channels
                short = ChannelZeroPad(extra // 2, extra - extra // 2,
                                       name=p + "shortcut_pad")(short)
            else:
                short = _conv(x, planes, 1, p + "shortcut_conv", strides=strides)
                short = _bn(short, p + "shortcut_bn")
            x = keras.layers.Add(name=p + "add")([y, short])
            x = _relu(x, p + "out")
            channels = planes
    return _head(x, num_classes, inputs, name or f"resnet{depth}")


# ---------------------------------------------------------------- pre-activation ResNet


def preresnet(depth=164, input_shape=(32, 32, 3), num_classes=10, name=None):
    """Pre-activation bottleneck ResNet of Network Slimming (repo models/preresnet.py).

    depth = 9n+2; stages of n blocks with planes 16/32/64 (outputs 64/128/256).
    Block: BN-ReLU-conv1x1 - BN-ReLU-conv3x3(stride) - BN-ReLU-conv1x1(4*planes),
    added to the input, which passes through a bias-free 1x1 conv (no BN, as in
    the repo) when the stride or the channel count changes.
    """
    shape = _check_input(input_shape, num_classes)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 11 or (depth - 2) % 9:
        raise ValueError(f"depth must be 9n+2 with n >= 1 (11, 56, 110, 164, ...), "
                         f"got {depth!r}.")
    n = (depth - 2) // 9

    inputs = keras.Input(shape=shape, name="input")
    x = _conv(inputs, 16, 3, "stem_conv", init=_slim_conv_init)
    channels = 16
    for stage, planes in enumerate((16, 32, 64), start=1):
        for b in range(1, n + 1):
            p = f"stage{stage}_block{b}_"
            strides = 2 if stage > 1 and b == 1 else 1
            y = _bn(x, p + "bn1", gamma=0.5)
            y = _relu(y, p + "relu1")
            y = _conv(y, planes, 1, p + "conv1", init=_slim_conv_init)
            y = _bn(y, p + "bn2", gamma=0.5)
            y = _relu(y, p + "relu2")
            y = _conv(y, planes, 3, p + "conv2", strides=strides, init=_slim_conv_init)
            y = _bn(y, p + "bn3", gamma=0.5)
            y = _relu(y, p + "relu3")
            y = _conv(y, 4 * planes, 1, p + "conv3", init=_slim_conv_init)
            short = x
            if strides != 1 or channels != 4 * planes:
                short = _conv(x, 4 * planes, 1, p + "shortcut_conv", strides=strides,
                              init=_slim_conv_init)
            x = keras.layers.Add(name=p + "add")([y, short])
            channels = 4 * planes
    x = _bn(x, "final_bn", gamma=0.5)
    x = _relu(x, "final_relu")
    return _head(x, num_classes, inputs, name or f"preresnet{depth}")


# ---------------------------------------------------------------- DenseNet


def densenet(depth=40, growth_rate=12, bottleneck=False, compression=1.0,
             input_shape=(32, 32, 3), num_classes=10, stem_channels=None, name=None):
    """DenseNet of Network Slimming (repo models/densenet.py), 3 dense blocks.

    Layer: BN-ReLU-conv3x3(growth_rate), concatenated to its input; with
    `bottleneck` BN-ReLU-conv1x1(4*growth_rate) comes first. Layers per block:
    (depth-4)/3, or (depth-4)/6 with bottleneck. Transitions: BN-ReLU-
    conv1x1(int(channels*compression))-AvgPool(2). `bottleneck=True,
    compression=0.5` is DenseNet-BC.

    The stem conv has `stem_channels` outputs; by default 16, or 2*growth_rate
    with bottleneck, as in the DenseNet paper (Huang et al. 2017). That gives the
    published 1.02M parameters for DenseNet-40; the Network Slimming PyTorch repo
    always uses 2*growth_rate (stem_channels=24: 1.06M).
    """
    shape = _check_input(input_shape, num_classes)
    per_layer = 6 if bottleneck else 3
    if (isinstance(depth, bool) or not isinstance(depth, int) or depth < 4 + per_layer
            or (depth - 4) % per_layer):
        formula = "6n+4 (bottleneck=True)" if bottleneck else "3n+4"
        raise ValueError(f"depth must be {formula} with n >= 1, got {depth!r}.")
    if isinstance(growth_rate, bool) or not isinstance(growth_rate, int) or growth_rate < 1:
        raise ValueError(f"growth_rate must be an int >= 1, got {growth_rate!r}.")
    if not isinstance(compression, (int, float)) or not 0 < compression <= 1:
        raise ValueError(f"compression must be in (0, 1], got {compression!r}.")
    if stem_channels is None:
        stem_channels = 2 * growth_rate if bottleneck else 16
    if isinstance(stem_channels, bool) or not isinstance(stem_channels, int) or stem_channels < 1:
        raise ValueError(f"stem_channels must be an int >= 1, got {stem_channels!r}.")
    n = (depth - 4) // per_layer

    inputs = keras.Input(shape=shape, name="input")
    x = _conv(inputs, stem_channels, 3, "stem_conv", init=_slim_conv_init)
    channels = stem_channels
    for block in range(1, 4):
        for layer in range(1, n + 1):
            p = f"block{block}_layer{layer}_"
            y = _bn(x, p + "bn1", gamma=0.5)
            y = _relu(y, p + "relu1")
            if bottleneck:
                y = _conv(y, 4 * growth_rate, 1, p + "conv1", init=_slim_conv_init)
                y = _bn(y, p + "bn2", gamma=0.5)
                y = _relu(y, p + "relu2")
                y = _conv(y, growth_rate, 3, p + "conv2", init=_slim_conv_init)
            else:
                y = _conv(y, growth_rate, 3, p + "conv1", init=_slim_conv_init)
            x = keras.layers.Concatenate(name=p + "concat")([x, y])
            channels += growth_rate
        if block < 3:
            p = f"transition{block}_"
            channels = max(1, int(channels * compression))
            x = _bn(x, p + "bn", gamma=0.5)
            x = _relu(x, p + "relu")
            x = _conv(x, channels, 1, p + "conv", init=_slim_conv_init)
            x = keras.layers.AveragePooling2D(2, padding="same", name=p + "pool")(x)
    x = _bn(x, "final_bn", gamma=0.5)
    x = _relu(x, "final_relu")
    default = f"densenet{depth}_" + ("b" if bottleneck else "") + ("c" if compression < 1 else "")
    return _head(x, num_classes, inputs, name or default.rstrip("_"))


# ---------------------------------------------------------------- MobileNetV2


def mobilenet_v2(input_shape=(32, 32, 3), num_classes=10, width=1.0, name=None):
    """MobileNetV2 (Sandler et al. 2018) sized for small images.

    Inputs up to 64 px on their shorter side get a stride-1 stem and a stride-1
    c=24 stage (CIFAR adaptation: 32x32 ends at 4x4); larger inputs use the
    ImageNet strides. Head: 1x1 conv to 1280*max(1, width) channels, BN, ReLU6,
    global average pooling, Dense. About 2.2M parameters at width 1.
    """
    shape = _check_input(input_shape, num_classes)
    _check_positive("width", width)
    small = min(shape[0], shape[1]) <= 64

    inputs = keras.Input(shape=shape, name="input")
    x = _conv(inputs, _make_divisible(32 * width), 3, "stem_conv",
              strides=1 if small else 2)
    x = _bn(x, "stem_bn")
    x = _relu(x, "stem_relu", max_value=6.0)
    channels = _make_divisible(32 * width)
    index = 0
    for t, c, n, s in _MBV2_TABLE:
        if small and c == 24:
            s = 1
        out = _make_divisible(c * width)
        for i in range(n):
            index += 1
            p = f"block{index}_"
            strides = s if i == 0 else 1
            y = x
            if t != 1:
                y = _conv(y, channels * t, 1, p + "expand_conv")
                y = _bn(y, p + "expand_bn")
                y = _relu(y, p + "expand_relu", max_value=6.0)
            y = keras.layers.DepthwiseConv2D(3, strides=strides, padding="same",
                                             use_bias=False, name=p + "dw_conv")(y)
            y = _bn(y, p + "dw_bn")
            y = _relu(y, p + "dw_relu", max_value=6.0)
            y = _conv(y, out, 1, p + "project_conv")
            y = _bn(y, p + "project_bn")  # linear bottleneck: no activation
            if strides == 1 and channels == out:
                y = keras.layers.Add(name=p + "add")([x, y])
            x = y
            channels = out
    head = _make_divisible(1280 * max(1.0, width))
    x = _conv(x, head, 1, "head_conv")
    x = _bn(x, "head_bn")
    x = _relu(x, "head_relu", max_value=6.0)
    return _head(x, num_classes, inputs, name or "mobilenet_v2")


# ---------------------------------------------------------------- registry

_PRESETS = {
    "vgg11": (vgg, {"depth": 11}),
    "vgg13": (vgg, {"depth": 13}),
    "vgg16": (vgg, {"depth": 16}),
    "vgg19": (vgg, {"depth": 19}),
    "vgg_small": (vgg, {"cfg": VGG_SMALL_CFG}),
    "resnet20": (resnet, {"depth": 20}),
    "resnet56": (resnet, {"depth": 56}),
    "resnet164": (preresnet, {"depth": 164}),
    "densenet40": (densenet, {"depth": 40}),
    "densenet40_bc": (densenet, {"depth": 40, "bottleneck": True, "compression": 0.5}),
    "mobilenet_v2": (mobilenet_v2, {}),
}
MODEL_NAMES = tuple(_PRESETS)


def build(name, input_shape=(32, 32, 3), num_classes=10, **kwargs):
    """Build the model called `name` (one of MODEL_NAMES).

    Extra keyword arguments go to the underlying builder (e.g. width=0.5 for VGG,
    shortcut="B" for ResNets) but may not override what the name fixes (depth...).
    "resnet164" is the pre-activation bottleneck net of Network Slimming.
    """
    if name not in _PRESETS:
        raise ValueError(f"name must be one of {', '.join(MODEL_NAMES)}; got {name!r}.")
    builder, preset = _PRESETS[name]
    clash = sorted(set(preset) & set(kwargs))
    if clash:
        raise ValueError(f"{', '.join(clash)} is fixed by the model name {name!r}; "
                         f"call {builder.__name__}() directly to change it.")
    return builder(input_shape=input_shape, num_classes=num_classes, name=name,
                   **preset, **kwargs)

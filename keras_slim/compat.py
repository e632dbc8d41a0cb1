"""The one module that knows Keras 3 from tf_keras (Keras 2).

Every other module imports `keras` from here. Keras 3 is the default; with
TF_USE_LEGACY_KERAS=1 (the switch TensorFlow itself reads) we run on tf_keras,
which tfmot's quantization-aware training requires.
"""
import os

# Keras 3 can run on other backends; this library's training steps are TensorFlow.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# Same values TensorFlow accepts for the switch, so tf.keras and we always agree.
LEGACY_KERAS = os.environ.get("TF_USE_LEGACY_KERAS", "") in ("1", "true", "True")

if LEGACY_KERAS:
    import tf_keras as keras  # noqa: E402
else:
    import keras  # noqa: E402

    if keras.backend.backend() != "tensorflow":
        raise ImportError(
            "keras_slim needs the TensorFlow backend of Keras 3, but KERAS_BACKEND="
            f"{keras.backend.backend()!r}. Unset KERAS_BACKEND or set it to 'tensorflow'.")

KERAS3 = not LEGACY_KERAS
FLAVOUR = "tf_keras" if LEGACY_KERAS else "keras3"

# `add_weight(aggregation=...)` for a variable each replica assigns in replica context
# (tf.distribute): the replicas' values are averaged. Keras 3 takes a string, tf_keras
# the tf enum.
MEAN_AGGREGATION = tf.VariableAggregation.MEAN if LEGACY_KERAS else "mean"

# BatchNormalization in training: tf_keras' fused kernel (`layer.fused`, 4D inputs, not
# synchronized) moves the moving variance by the Bessel-corrected (n / (n-1)) batch
# variance; Keras 3 (and tf_keras' unfused path) by the biased one.
BN_MOVING_VARIANCE_BESSEL = LEGACY_KERAS


def ensure_model(model, argument="model"):
    """Raise a clear error unless `model` is a Keras model of the flavour in use."""
    if isinstance(model, keras.Model):
        return model
    module = type(model).__module__
    if module.startswith(("keras", "tf_keras")):
        other = "Keras 3" if LEGACY_KERAS else "tf_keras (Keras 2)"
        raise TypeError(
            f"{argument} is a {other} model, but keras_slim is running on {FLAVOUR}. "
            "Build the model with keras_slim.compat.keras, or set TF_USE_LEGACY_KERAS "
            f"{'to 0' if LEGACY_KERAS else '=1'} before importing TensorFlow.")
    raise TypeError(f"{argument} must be a Keras model, got {type(model).__name__}.")


def register_serializable(package="keras_slim"):
    """Decorator that registers a custom layer for `.keras` / SavedModel loading."""
    return keras.utils.register_keras_serializable(package=package)


def count_params(model, trainable_only=False):
    """Number of parameters; trainable_only counts what PyTorch papers report
    (BN moving statistics are buffers there, weights here)."""
    weights = model.trainable_weights if trainable_only else model.weights
    return int(sum(int(tf.size(w)) for w in weights))


def last_learning_rate(optimizer):
    """The learning rate the optimizer's last step used, as a float32 tensor: a schedule
    is evaluated at that step (iterations - 1). Both flavours keep the schedule or the
    variable in `_learning_rate` (Keras 3's `learning_rate` would evaluate the schedule
    at the next step, tf_keras' returns a variable updated inside the step)."""
    inner = getattr(optimizer, "inner_optimizer", None)  # LossScaleOptimizer
    if inner is not None:
        optimizer = inner
    lr = getattr(optimizer, "_learning_rate", None)
    if lr is None:
        lr = optimizer.learning_rate
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        step = tf.maximum(tf.convert_to_tensor(optimizer.iterations) - 1, 0)
        lr = lr(step)
    return tf.cast(tf.convert_to_tensor(lr), tf.float32)


def set_learning_rate_schedule(optimizer, schedule):
    """Give a compiled, not yet trained optimizer a schedule in place of its constant rate.
    tf_keras builds the variable a schedule needs only in its constructor (the setter
    leaves it to the first traced step), so it is built here as the constructor does,
    under the optimizer's strategy."""
    if LEGACY_KERAS and hasattr(optimizer, "_build_learning_rate"):
        with optimizer._distribution_strategy.scope():
            optimizer._learning_rate = optimizer._build_learning_rate(schedule)
    else:
        optimizer.learning_rate = schedule


# --- Functional-graph config: the serialized form differs between flavours. ---

class GraphError(ValueError):
    """A model whose graph keras_slim cannot read or change; names the layer."""


def _history_refs(value):
    """Keras 3 node args: nested lists/dicts holding `__keras_tensor__` entries."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            name, node_index, tensor_index = value["config"]["keras_history"]
            return [(name, tensor_index)]
        return [r for v in value.values() for r in _history_refs(v)]
    if isinstance(value, (list, tuple)):
        return [r for v in value for r in _history_refs(v)]
    return []


def _is_tf_ref(value):
    """A tf_keras tensor reference inside call kwargs: [layer name, node, tensor]."""
    return isinstance(value, (list, tuple)) and len(value) == 3 and isinstance(value[0], str) \
        and all(isinstance(v, int) for v in value[1:])


def _is_tf_op_layer(layer_config):
    """tf_keras records `tf.*` calls on symbolic tensors (x + 3, tf.pad …) as op layers
    whose tensors may come as keyword arguments (x * y: {"y": ref})."""
    return "tf_op_layer" in (layer_config.get("module") or "")


def is_operation_entry(layer_config):
    """A Keras 3 operation node (x + 3, keras.ops.pad …): in the config, not a layer."""
    return (layer_config.get("module") or "").startswith("keras.src.ops")


def inbound_calls(layer_config):
    """Per call of a layer in a functional config: its input tensors as
    [(producer_layer_name, tensor_index)], in argument order."""
    calls = []
    for node in layer_config.get("inbound_nodes", []):
        if isinstance(node, dict):  # Keras 3
            refs = _history_refs(node.get("args", []))
            if _history_refs(node.get("kwargs", {})):
                raise GraphError(f"layer {layer_config['config']['name']!r} takes a tensor as "
                                 "a keyword argument (e.g. mask=); that is not supported.")
        else:  # tf_keras: [[name, node_index, tensor_index, kwargs], ...]
            node = _tf_node(node)
            refs = [(entry[0], entry[2]) for entry in node]
            for entry in node:
                kwargs = entry[3] if len(entry) > 3 else {}
                tensors = [v for v in kwargs.values() if _is_tf_ref(v)]
                if _is_tf_op_layer(layer_config):
                    refs += [(v[0], v[2]) for v in tensors]
                elif any(isinstance(v, (list, tuple)) and v and isinstance(v[0], str)
                         for v in kwargs.values()):
                    raise GraphError(f"layer {layer_config['config']['name']!r} takes a "
                                     "tensor as a keyword argument (e.g. mask=); that is "
                                     "not supported.")
        calls.append(refs)
    return calls


def _tf_node(node):
    """tf_keras writes an op layer's one-input node flat: [name, node, tensor, kwargs]."""
    return [node] if node and isinstance(node[0], str) else node


class TensorArg:
    """Placeholder for the i-th input tensor in an operation's recorded call."""

    def __init__(self, index):
        self.index = index

    def __repr__(self):
        return f"TensorArg({self.index})"


def _k3_arg(value, counter):
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            counter.append(None)
            return TensorArg(len(counter) - 1)
        if value.get("class_name") == "__numpy__":
            return np.asarray(value["config"]["value"], dtype=value["config"].get("dtype"))
        return {k: _k3_arg(v, counter) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_k3_arg(v, counter) for v in value]
    return value


def call_arguments(layer_config):
    """(args, kwargs) of the one recorded call of an operation node / tf_keras op layer,
    tensors replaced by TensorArg(i) (i: position among the inputs), constant arrays as
    numpy arrays."""
    node = layer_config["inbound_nodes"][0]
    if isinstance(node, dict):  # Keras 3
        counter = []
        return _k3_arg(node.get("args", []), counter), _k3_arg(node.get("kwargs", {}), counter)
    node = _tf_node(node)
    first = node[0]
    kwargs, n = {}, len(node)
    for key, value in (first[3] if len(first) > 3 else {}).items():
        if _is_tf_ref(value):
            kwargs[key], n = TensorArg(n), n + 1
        elif isinstance(value, list) and value and not isinstance(value[0], str):
            kwargs[key] = np.asarray(value)
        else:
            kwargs[key] = value
    return [TensorArg(i) for i in range(len(node))], kwargs


def _numeric(value):
    try:
        return np.asarray(value).dtype.kind in "fiub"
    except ValueError:  # ragged
        return False


def map_call_constants(layer_config, fn):
    """Replace every constant array of an operation's recorded call by fn(array) in the
    config itself (e.g. to slice a per-channel constant). fn returns an array or None
    (unchanged)."""
    def edit(value):
        array = fn(np.asarray(value))
        return value if array is None else np.asarray(array).tolist()

    node = layer_config["inbound_nodes"][0]
    if isinstance(node, dict):  # Keras 3: {"class_name": "__numpy__", …} or a plain list
        def rewrite(value):
            if isinstance(value, dict):
                if value.get("class_name") == "__numpy__":
                    value["config"]["value"] = edit(value["config"]["value"])
                    return value
                if value.get("class_name") == "__keras_tensor__":
                    return value
                return {k: rewrite(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                if value and _numeric(value):
                    return edit(value)
                return type(value)(rewrite(v) for v in value)
            return value
        node["args"] = rewrite(node.get("args", []))
        node["kwargs"] = rewrite(node.get("kwargs", {}))
        return
    node = _tf_node(node)
    kwargs = node[0][3] if len(node[0]) > 3 else {}
    for key, value in kwargs.items():
        if isinstance(value, list) and value and not isinstance(value[0], str):
            kwargs[key] = edit(value)


def operations_by_name(model):
    """Name -> layer or operation node of a functional model (Keras 3 op nodes are not
    layers, so get_layer cannot find them)."""
    if LEGACY_KERAS:
        return {layer.name: layer for layer in model.layers}
    return {op.name: op for op in model.operations}


def weights_of(node):
    """A layer's weights as arrays; an operation node has none."""
    return [np.asarray(w) for w in node.get_weights()] if hasattr(node, "get_weights") else []


def io_refs(refs):
    """`input_layers` / `output_layers` of a config as [(name, tensor_index)]."""
    if refs and isinstance(refs[0], str):  # a single tensor, Keras 3 style
        refs = [refs]
    return [(r[0], r[2]) for r in refs]


def input_layer_shape_key(config):
    return "batch_shape" if "batch_shape" in config else "batch_input_shape"


def is_graph_model(model):
    """Functional or Sequential: the only models whose graph we can rebuild."""
    if isinstance(model, keras.Sequential):
        return True
    if LEGACY_KERAS:
        return bool(getattr(model, "_is_graph_network", False))
    from keras.src.models.functional import Functional
    return isinstance(model, Functional)


def _plain_functional(model):
    """The same graph as a plain Functional model (the layers are shared, not copied)."""
    return keras.Model(model.inputs, model.outputs, name=model.name)


def _serialize(model):
    if LEGACY_KERAS:
        return keras.layers.serialize(model)
    return keras.saving.serialize_keras_object(model)


def graph_config(model):
    """model.get_config() as a graph. A subclass of Model built from inputs and outputs
    whose get_config returns its constructor arguments instead (keras-hub backbones, a
    user's own) is written as a plain Functional model: at the top and when nested. A
    rebuild can only replay the graph: the constructor's arguments name the old widths."""
    config = model.get_config()
    if isinstance(model, keras.Sequential):
        return config
    if "input_layers" not in config:
        config = _plain_functional(model).get_config()
    layers = operations_by_name(model)
    for entry in config["layers"]:
        layer = layers.get(entry["config"].get("name", entry.get("name")))
        if not isinstance(layer, keras.Model) or isinstance(layer, keras.Sequential):
            continue
        inner = graph_config(layer)
        if "input_layers" not in entry["config"] or inner != entry["config"]:
            plain = _serialize(_plain_functional(layer))
            for key in ("module", "class_name", "registered_name"):
                entry.pop(key, None)
                if key in plain:
                    entry[key] = plain[key]
            entry["config"] = inner
    return config


def drop_build_configs(config):
    """Keras 3 records each layer's input shape; after a width edit, let the graph build."""
    from keras_slim.core.walk import iter_config_entries, iter_model_entries

    for entry in list(iter_model_entries(config)) + [e for _, e in iter_config_entries(config)]:
        entry.pop("build_config", None)
    return config


def _keep_synchronized(model, config):
    """tf_keras leaves BatchNormalization's `synchronized` out of get_config(): put it back
    (by layer path) for the BN layers of `model` that have it, so gated, slim and rebuilt
    models keep their synchronized BN under tf.distribute."""
    from keras_slim.core.walk import iter_config_entries, iter_layers

    layers = dict(iter_layers(model))
    for path, entry in iter_config_entries(config):
        inner, layer = entry.get("config"), layers.get(path)
        if isinstance(layer, keras.layers.BatchNormalization) and isinstance(inner, dict) \
                and "momentum" in inner and getattr(layer, "synchronized", False):
            inner["synchronized"] = True


def model_from_config(model, config, what="rebuilding"):
    """A new Functional/Sequential model from an edited config of `model`."""
    from keras_slim.core.walk import iter_layers

    drop_build_configs(config)
    if LEGACY_KERAS:
        _keep_synchronized(model, config)
    # tf_keras: the model's own classes, so unregistered ones (ConvNeXt's LayerScale)
    # deserialize too. Not in Keras 3, where a layer class "Add" would shadow the op "Add".
    custom = {type(layer).__name__: type(layer) for _, layer in iter_layers(model)} \
        if LEGACY_KERAS else None
    try:
        if isinstance(model, keras.Sequential):
            return type(model).from_config(config, custom_objects=custom)
        return keras.Model.from_config(config, custom_objects=custom)
    except Exception as e:  # a config edit Keras rejects is our bug: say where
        raise GraphError(f"{what} model {model.name!r} from its edited config "
                         f"failed: {e}") from e


def export_saved_model(model, path):
    """A TF SavedModel with a serving signature, the way each flavour spells it."""
    if LEGACY_KERAS:
        tf.saved_model.save(model, path)
    else:
        model.export(path, format="tf_saved_model", verbose=False)

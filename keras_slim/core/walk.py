"""The one walk over a model's layers: nested functional and Sequential models inlined.

A layer's *path* joins the names from the outer model down ("block1/conv"); every module
that visits layers — the channel graph, slimming, gating, rebuild, export — uses these
helpers, so a nested model is seen the same way everywhere. `ChannelGraph` walks the
same nesting to follow tensors (`walk_graph`), which the visitors below do not need.
"""
import numpy as np

from keras_slim.compat import GraphError, keras


INPUT_CLASS = "InputLayer"


def is_input_entry(entry):
    """A model config's entry for an input placeholder (not a layer that computes)."""
    return entry.get("class_name") == INPUT_CLASS


def is_nested_model(layer):
    return isinstance(layer, keras.Model)


def iter_layers(model, prefix=()):
    """(path, layer) of every layer that is not itself a model, depth first."""
    for layer in model.layers:
        names = prefix + (layer.name,)
        if is_nested_model(layer):
            yield from iter_layers(layer, names)
        else:
            yield "/".join(names), layer


def layer_at(model, path):
    """The layer at `path` ("outer/inner" or a tuple of names)."""
    names = path.split("/") if isinstance(path, str) else path
    layer = model
    for part in names:
        try:
            layer = layer.get_layer(part)
        except ValueError:
            raise GraphError(f"no layer {'/'.join(names)!r} in model {model.name!r}.") \
                from None
    return layer


def _entries(config):
    return config.get("layers", []) if "layers" in config else \
        config.get("config", {}).get("layers", [])


def _is_model_entry(entry):
    inner = entry.get("config")
    return isinstance(inner, dict) and "layers" in inner


def iter_config_entries(config, prefix=()):
    """(path, entry) of every layer entry of a model config, nested model configs
    inlined (the nested model's own entry is not yielded)."""
    for entry in _entries(config):
        names = prefix + (entry["config"]["name"],)
        if _is_model_entry(entry):
            yield from iter_config_entries(entry["config"], names)
        else:
            yield "/".join(names), entry


def iter_model_entries(config):
    """Every nested model entry of a config (deepest last), for edits that apply to models."""
    for entry in _entries(config):
        if _is_model_entry(entry):
            yield entry
            yield from iter_model_entries(entry["config"])


def config_entry_at(config, path):
    """The layer entry at `path` in a model config."""
    names = path.split("/") if isinstance(path, str) else path
    node = config
    for part in names:
        layers = {e["config"]["name"]: e for e in _entries(node)}
        if part not in layers:
            raise GraphError(f"no layer {'/'.join(names)!r} in the model config.")
        node = layers[part]
    return node


def edit_config_entries(config, edit):
    """Call edit(entry) on every layer entry of a config, nested models included."""
    for _, entry in iter_config_entries(config):
        edit(entry)
    return config


def copy_weights(source, target, weights_of=lambda layer: layer.weights, paths=None,
                 skip_missing=False, leading=False):
    """Copy the weights of every layer of `source` onto the layer at the same path of
    `target`. `weights_of(layer)` picks the weights to copy (e.g. without a slim λ);
    `paths` limits the copy to those paths; `skip_missing` passes over layers `target`
    does not have (gates being stripped); `leading` copies only the weights both have
    first, when one side adds variables after them (compact layers' index variables)."""
    target_paths = {p for p, _ in iter_layers(target)} if skip_missing else None
    for path, src in iter_layers(source):
        if (paths is not None and path not in paths) or \
                (target_paths is not None and path not in target_paths):
            continue
        src_w = weights_of(src)
        if not src_w:
            continue
        dst_w = weights_of(layer_at(target, path))
        if len(src_w) != len(dst_w) and not leading:
            raise GraphError(f"layer {path!r}: {len(src_w)} weights cannot be copied onto "
                             f"{len(dst_w)}.")
        for s, d in zip(src_w, dst_w):
            d.assign(np.asarray(s))

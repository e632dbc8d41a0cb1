"""Do two models compute the same function? (masked vs rebuilt, original vs rebuilt)"""
import numpy as np
import tensorflow as tf

from keras_slim import compat


def _batches(model, data, num_samples, seed):
    if data is None:
        rng = np.random.default_rng(seed)
        shapes = [tuple(d or 1 for d in t.shape[1:]) for t in model.inputs]
        xs = [rng.standard_normal((num_samples,) + s).astype(np.float32) for s in shapes]
        return [xs if len(xs) > 1 else xs[0]]
    if isinstance(data, tf.data.Dataset):
        return [x[0] if isinstance(x, tuple) else x for x in data]
    return [data]


def check_equivalence(reference, candidate, data=None, num_samples=16, seed=0):
    """Max and mean |Δ| between the two models' outputs (inference mode).

    data: inputs (array or list of arrays), a tf.data.Dataset of x or (x, y), or None
    for `num_samples` standard-normal inputs.
    """
    compat.ensure_model(reference, "reference")
    compat.ensure_model(candidate, "candidate")
    max_abs, total, count = 0.0, 0.0, 0
    for x in _batches(reference, data, num_samples, seed):
        a = reference(x, training=False)
        b = candidate(x, training=False)
        a, b = tf.nest.flatten(a), tf.nest.flatten(b)
        if len(a) != len(b):
            raise ValueError(f"the models have {len(a)} and {len(b)} outputs.")
        for u, v in zip(a, b):
            if u.shape != v.shape:
                raise ValueError(f"output shapes differ: {u.shape} vs {v.shape}.")
            diff = np.abs(np.asarray(u, np.float64) - np.asarray(v, np.float64))
            max_abs = max(max_abs, float(diff.max()))
            total += float(diff.sum())
            count += diff.size
    return {"max_abs": max_abs, "mean_abs": total / max(count, 1)}

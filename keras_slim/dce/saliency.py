"""Per-channel Taylor saliency from the backward pass training already does.

For a feature map h (B, ..., C) and the training loss L, the saliency of channel k is

    s_k = (1/B) * sum_b | (1/M) * sum_m dL/dh[b, m, k] * h[b, m, k] |

(Molchanov et al. 2017; the per-example absolute value is what DCE uses), with M the
number of positions of one channel's map. `gated_product(h, mask, variable)` returns
h * mask and, through tf.custom_gradient, computes s from the incoming gradient and h
during the backward pass and assigns it to `variable` — so `model.fit` needs no extra
pass and no custom train_step. The assignment is a stateful op inside the gradient
function; tf.function's automatic control dependencies keep it (checked in the tests
under Keras 3 and tf_keras).

dL/dh is the gradient of the loss being minimised, i.e. of the batch mean: every term
carries the same 1/B (and a loss-scale factor under mixed precision). Those are constant
per step, and keras_slim.dce normalises saliencies per group and step, so they cancel.
h is taken before the mask: for active channels that is the gated output itself.

Under tf.distribute the gradient function runs per replica (replica context) on that
replica's share of the batch; ChannelGate creates the variable with MEAN aggregation, so
the assign stores the mean over replicas on every replica (keras_slim.training.distribute).
"""
import tensorflow as tf


def taylor_saliency(h, grad):
    """Reference formula on concrete tensors: per-channel saliency, shape (C,)."""
    h = tf.convert_to_tensor(h)
    grad = tf.cast(tf.convert_to_tensor(grad), h.dtype)
    product = tf.cast(grad * h, tf.float32)
    rank = len(product.shape)
    per_example = product if rank <= 2 else tf.reduce_mean(product,
                                                           axis=list(range(1, rank - 1)))
    return tf.reduce_mean(tf.abs(per_example), axis=0)


def gated_product(h, mask, saliency_variable):
    """h * mask whose gradient function also stores taylor_saliency(h, dL/d(h*mask))
    into `saliency_variable` (a float32 variable of shape (C,))."""

    @tf.custom_gradient
    def _gate(x):
        def grad(dy):
            saliency_variable.assign(
                tf.cast(taylor_saliency(x, dy), saliency_variable.dtype))
            return dy * mask

        return x * mask, grad

    return _gate(h)


def recorded_identity(h, index, saliency_variable):
    """Identity on a compact h (..., k) holding channels `index` of a C-channel map;
    its gradient function stores their saliency at `index` of `saliency_variable` (C,)
    (the other channels were not computed: 0). index None: h has all C channels."""

    @tf.custom_gradient
    def _identity(x):
        def grad(dy):
            values = tf.cast(taylor_saliency(x, dy), saliency_variable.dtype)
            if index is not None:
                values = tf.scatter_nd(index[:, None], values, tf.shape(saliency_variable))
            saliency_variable.assign(values)
            return dy

        return tf.identity(x), grad

    return _identity(h)

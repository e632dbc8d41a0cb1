"""The Network Slimming loop on tiny synthetic data."""
import numpy as np
import pytest
import tensorflow as tf

from keras_slim.zoo import models
from keras_slim.compat import keras
from keras_slim.slimming.pipeline import network_slimming, prune, sparsity_train
from keras_slim.slimming import slim_layers


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 12, 12, 1)).astype("float32")
    y = (x.mean(axis=(1, 2, 3)) > 0).astype("int64")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(16)


def _model():
    return models.vgg(cfg=[16, "M", 16, "M", 32], input_shape=(12, 12, 1), num_classes=2)


def test_two_pass_loop_shrinks_and_leaves_the_model_alone():
    model = _model()
    before = [w.copy() for w in model.get_weights()]
    result = network_slimming(model, _data(), sparsity_epochs=1, finetune_epochs=1,
                              ratio=0.5, l1=1e-3, passes=2, validation_data=_data(32, 1),
                              verbose=0, round_to=4)
    assert len(result.plans) == 2 and len(result.after_rebuild) == 2
    assert [phase for phase, _ in result.histories] == ["sparsity", "finetune"] * 2
    assert result.report["params_ratio"] > 2.0
    assert result.model.count_params() < model.count_params()
    assert not slim_layers(result.model)  # deployment model has plain BN
    assert {"compensated", "uncompensated"} == set(result.after_rebuild[0])
    assert all((a == b).all() for a, b in zip(before, model.get_weights()))
    # The second pass prunes the model the first pass left.
    assert result.plans[1].total_channels == result.plans[0].kept_channels


def test_sparsity_training_logs_penalty_and_prune_reports():
    slim, history = sparsity_train(_model(), _data(), epochs=2, l1=1e-3, verbose=0)
    assert "sparsity_penalty" in history and len(history["loss"]) == 2
    pruned, plan, report = prune(slim, 0.5, round_to=1)
    assert plan.meta["criterion"] == "bn_gamma"
    assert report["params_after"] < report["params_before"]
    assert isinstance(pruned, keras.Model)


def test_bad_passes():
    with pytest.raises(ValueError, match="passes must be a positive integer"):
        network_slimming(_model(), _data(), 1, 1, 0.5, passes=0)

"""Subprocess side of tests/test_distribute.py (logical devices and collective ops must be
configured before TensorFlow initialises, so every distributed run is a fresh process).

    python distribute_worker.py mirrored OUT.json      # 1 device, then 2 logical CPUs
    python distribute_worker.py multi_worker OUT.json  # one worker of TF_CONFIG

Runs small fixed-seed scenarios and writes their results (bandit T and mean saliency,
plans, weights) as JSON; the test compares them.
"""
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# keras_slim first, as an app would: make_strategy must still be able to configure.
from keras_slim.compat import FLAVOUR, keras  # noqa: E402
from keras_slim.training.distribute import make_strategy  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

S, WIDTH, GLOBAL_BATCH, STEPS = 8, 8, 16, 6
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def chain_net(synchronized):
    bn = {"synchronized": True} if synchronized else {}
    i = keras.Input((S, S, 3))
    x = keras.layers.Conv2D(WIDTH, 3, padding="same", use_bias=False, name="c1")(i)
    x = keras.layers.BatchNormalization(name="bn1", **bn)(x)
    x = keras.layers.ReLU(name="r1")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Conv2D(WIDTH, 3, padding="same", name="c2")(x)
    x = keras.layers.BatchNormalization(name="bn2", **bn)(x)
    x = keras.layers.Activation("relu", name="r2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(i, keras.layers.Dense(3, name="out")(x), name="chain")


def set_weights(model, gammas):
    """Same initial weights in every process, whatever the strategy: numpy, seeded."""
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([gammas[layer.name], 0.1 * rng.normal(size=c),
                               np.zeros(c), np.ones(c)])
        elif layer.weights:
            values = []
            for w in layer.weights:
                shape = tuple(w.shape)
                fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
                values.append(rng.normal(size=shape) * np.sqrt(2.0 / fan_in)
                              if len(shape) > 1 else 0.1 * rng.normal(size=shape))
            layer.set_weights(values)


def dataset(strategy):
    rng = np.random.default_rng(0)
    n = GLOBAL_BATCH * STEPS
    x = rng.normal(size=(n, S, S, 3)).astype("float32")
    y = ((x[..., 0].mean(axis=(1, 2)) > 0).astype("int32")
         + (x[..., 1].mean(axis=(1, 2)) > 0).astype("int32"))
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = \
        tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def weights_of(model, names):
    return {f"{n}/{i}": np.asarray(w, np.float64).tolist()
            for n in names for i, w in enumerate(model.get_layer(n).get_weights())}


# --- scenarios --------------------------------------------------------------------------
# Strong (near-exact) comparisons need the same batch statistics on every replica count:
# synchronized BN. "dce_masked" keeps Keras' default per-replica BN statistics and makes
# half the channels of c1 clearly weak instead (tiny γ), so its plan is still robust.
STRONG_GAMMA = np.linspace(0.6, 1.4, WIDTH)
WEAK_C1 = np.array([1, 3, 4, 6])


def dce(strategy, compact, synchronized, warmup_steps):
    from keras_slim.dce import CUCBCallback, dce_plan
    from keras_slim.dce.gates import gate_model

    keras.utils.set_random_seed(0)
    gammas = {"bn1": STRONG_GAMMA[::-1].copy(), "bn2": STRONG_GAMMA.copy()}
    if not synchronized:
        gammas["bn1"][WEAK_C1] = 0.02
    with strategy.scope():
        model = chain_net(synchronized)
        set_weights(model, gammas)
        gated = gate_model(model, 0.5, compact=compact)
        gated.compile(optimizer=keras.optimizers.SGD(0.05), loss=LOSS)
    callback = CUCBCallback(warmup_steps=warmup_steps, seed=0)
    gated.fit(dataset(strategy), epochs=1, verbose=0, callbacks=[callback],
              shuffle=False)
    plan = dce_plan(callback, gated, 0.5, round_to=1)
    return {"T": {n: b.T.tolist() for n, b in callback.bandits.items()},
            "mu": {n: b.mu.tolist() for n, b in callback.bandits.items()},
            "plan": plan.to_dict()["groups"],
            "weights": weights_of(gated, ["c1", "bn1", "c2", "bn2", "out"])}


def slim(strategy, proximal=False):
    from keras_slim import slimming

    keras.utils.set_random_seed(0)
    gammas = {"bn1": STRONG_GAMMA[::-1].copy(), "bn2": STRONG_GAMMA.copy()}
    l1 = 4.0 if proximal else 0.5  # proximal: 6 steps of 0.2 bring γ ≤ 1.2 to 0
    with strategy.scope():
        model = chain_net(True)
        set_weights(model, gammas)
        model = slimming.slimmable(model, l1=l1, proximal=proximal)
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss=LOSS)
    penalty0 = slimming.sparsity_penalty(model)
    model.fit(dataset(strategy), epochs=1, verbose=0, shuffle=False,
              callbacks=[slimming.L1Schedule(l1)]
              + ([slimming.ProximalL1()] if proximal else []))
    plan = slimming.gamma_plan(model, 0.5, round_to=1)
    return {"penalty": [penalty0, slimming.sparsity_penalty(model)],
            "gamma": {p: g.tolist() for p, g in slimming.gamma_scores(model).items()},
            "plan": plan.to_dict()["groups"],
            "weights": weights_of(model, ["c1", "bn1", "c2", "bn2", "out"])}


def slim_fade(strategy):
    """GammaFade under a strategy: the host scales every replica's γ copy."""
    from keras_slim import slimming

    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = chain_net(True)
        set_weights(model, {"bn1": STRONG_GAMMA[::-1].copy(), "bn2": STRONG_GAMMA.copy()})
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss=LOSS)
    fade = slimming.GammaFade(lambda g: slimming.gamma_plan(g.model, 0.5, graph=g,
                                                            round_to=1),
                              fade_steps=STEPS - 2, interval=None, verbose=0)
    model.fit(dataset(strategy), epochs=1, verbose=0, shuffle=False, callbacks=[fade])
    return {"gamma": {p: g.tolist() for p, g in slimming.gamma_scores(model).items()},
            "plan": fade.plan.to_dict()["groups"],
            "weights": weights_of(model, ["c1", "bn1", "c2", "bn2", "out"])}


def distill(strategy):
    """Fine-tuning by distillation: the teacher term is averaged over the global batch."""
    from keras_slim.training import distillation

    keras.utils.set_random_seed(0)
    with strategy.scope():
        student, teacher = chain_net(True), chain_net(True)
        set_weights(student, {"bn1": STRONG_GAMMA.copy(), "bn2": STRONG_GAMMA.copy()})
        set_weights(teacher, {"bn1": STRONG_GAMMA[::-1].copy(), "bn2": STRONG_GAMMA.copy()})
        teacher.get_layer("out").set_weights([3 * w for w in
                                              teacher.get_layer("out").get_weights()])
        trainer = distillation.distiller(student, distillation.frozen_copy(teacher),
                                         temperature=2.0, alpha=0.5)
        trainer.compile(optimizer=keras.optimizers.SGD(0.05), loss=LOSS)
    history = trainer.fit(dataset(strategy), epochs=1, verbose=0, shuffle=False)
    return {"loss": float(history.history["loss"][-1]),
            "weights": weights_of(student, ["c1", "bn1", "c2", "bn2", "out"])}


SCENARIOS = {
    "dce_compact": lambda s: dce(s, compact=True, synchronized=True, warmup_steps=3),
    "dce_masked": lambda s: dce(s, compact=False, synchronized=False,
                                warmup_steps=STEPS),
    "slim": slim,
    "slim_proximal": lambda s: slim(s, proximal=True),
    "slim_fade": slim_fade,
    "distill": distill,
}


def run(strategy, names):
    results = {}
    for name in names:
        start = time.time()
        results[name] = SCENARIOS[name](strategy)
        results[name]["seconds"] = time.time() - start
        results[name]["replicas"] = int(strategy.num_replicas_in_sync)
    return results


def main(mode, out, names):
    if mode == "mirrored":
        mirrored = make_strategy("mirrored", logical_cpus=2)
        output = {"one": run(make_strategy("default"), names),
                  "two": run(mirrored, names),
                  # Devices are initialised now: the same split again is a no-op, and
                  # "mirrored" alone mirrors over every logical CPU.
                  "again": make_strategy("mirrored", logical_cpus=2).num_replicas_in_sync,
                  "auto": make_strategy("mirrored").num_replicas_in_sync}
    elif mode == "multi_worker":
        output = {"multi": run(make_strategy("multi_worker"), names)}
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    output["flavour"] = FLAVOUR
    with open(out, "w") as f:
        json.dump(output, f)


if __name__ == "__main__":
    names = sys.argv[3].split(",") if len(sys.argv) > 3 else list(SCENARIOS)
    main(sys.argv[1], sys.argv[2], names)

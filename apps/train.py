"""Train a reference model: plainly, with Network Slimming's γ-L1 sparsity term, or with
Dynamic Channel Execution (a CUCB bandit picks a fraction p of the channels per step).

    python -m keras_slim.apps.train --method=baseline --epochs=10
    python -m keras_slim.apps.train --method=slimming --l1=5e-3 --output_dir=runs/ns
    python -m keras_slim.apps.train --method=dce --fraction=0.5 --warmup_steps=100 --policy=cucb
    python -m keras_slim.apps.train --model=keras.applications.MobileNetV2 --weights=imagenet \
        --dataset=folder:photos --image_size=160 --learning_rate=0.005
    python -m keras_slim.apps.train --model_path=mine.keras --custom_objects=my_layers \
        --replace_head --dataset=folder:photos

Writes model.keras (slimming: with plain BatchNormalization, for apps.prune
--criterion=bn_gamma; dce: the gated model with every channel on, plus bandit.json for
apps.prune --criterion=dce), state.json (flags, steps, test accuracy) and TensorBoard
logs (loss, accuracy; slimming: γ histograms; dce: active-channel maps) to --output_dir.
Checkpoints every --checkpoint_every_steps steps; rerunning with the same --output_dir
resumes a killed run (weights, optimizer, epoch and step, λ, bandit state).
"""
import os

from keras_slim.apps import common  # noqa: F401  (quiets TF before it loads)
from absl import flags

from keras_slim.training import resume

FLAGS = flags.FLAGS


def define_flags():
    """This app's flags (defined on demand, so every app imports in one process)."""
    common.define_data_flags()
    common.define_model_flags()
    common.define_output_flag("train")
    common.define_strategy_flags()
    common.define_checkpoint_flags()
    flags.DEFINE_enum("method", "baseline", ["baseline", "slimming", "dce"],
                      "baseline: plain training; slimming: L1 on BN γ (Network Slimming); dce: "
                      "Dynamic Channel Execution with a CUCB bandit per channel group.")
    flags.DEFINE_integer("epochs", 2, "Training epochs.", lower_bound=1)
    flags.DEFINE_float("l1", 5e-3, "slimming: λ of the L1 penalty on BN γ.", lower_bound=0.0)
    flags.DEFINE_bool("proximal", False, "slimming: apply the L1 term as a soft-threshold of γ "
                      "after each optimizer step (ProximalL1): unimportant γ become exactly 0.")
    flags.DEFINE_float("fraction", 0.5, "dce: share p of each group's channels active per "
                       "step, in (0, 1].")
    flags.DEFINE_integer("warmup_steps", 100, "dce: steps τ of uniformly random active sets "
                         "before the bandit decides.", lower_bound=0)
    flags.DEFINE_enum("policy", "cucb", ["cucb", "random", "fixed"],
                      "dce: cucb (the bandit), random (a new random set each step) or fixed "
                      "(the best set after warm-up).")
    flags.DEFINE_float("exploration", 1.0, "dce: CUCB exploration coefficient c.",
                       lower_bound=0.0)
    flags.DEFINE_bool("compact", True, "dce: compute only the active channels of plain conv "
                      "chains in training (keras_slim.dce.compact); --nocompact masks them (full "
                      "compute, same training).")
    flags.register_validator("fraction", lambda p: 0.0 < p <= 1.0,
                             message="--fraction must be in (0, 1].")
    common.allow_redefinition()

# Flags a resumed run must share with the run it continues.
RUN_FLAGS = ("method", "dataset", "local_data_dir", "train_take", "batch_size", "model",
             "learning_rate", "lr_schedule", "seed", "epochs", "l1", "fraction",
             "warmup_steps", "policy", "exploration", "compact", "model_path", "weights",
             "replace_head", "image_size", "validation_split", "split_seed", "proximal")
PHASE = "train"


def _dce_callback(checkpoint_dir):
    from keras_slim import dce

    return dce.CUCBCallback(fraction=FLAGS.fraction, warmup_steps=FLAGS.warmup_steps,
                            exploration=FLAGS.exploration, policy=FLAGS.policy,
                            seed=FLAGS.seed, checkpoint=os.path.join(checkpoint_dir, "dce"),
                            save_freq=common.save_freq())


def _restore_bandits(callback):
    """on_resume hook: the bandit state saved with the weights, checked against them."""
    def restore(step):
        if not step:
            return
        path = callback.state_path(callback.checkpoint)
        if not os.path.exists(path):
            print(f"warning: no bandit state at {path}; the bandits start afresh at step "
                  f"{step}")
            return
        callback.restore(callback.checkpoint)
        rounds = {name: b.t for name, b in callback.bandits.items()}
        print(f"restored the bandit state of {len(rounds)} groups from {path}")
        if any(t != step for t in rounds.values()):
            print(f"warning: the bandit state is from another step than the weights "
                  f"(bandit rounds {sorted(set(rounds.values()))}, weights at step {step})")
    return restore


def run(argv):
    del argv
    from keras_slim.dce import gates as gating
    from keras_slim import slimming
    from keras_slim.compat import keras

    common.quiet_logs()
    out = common.output_dir("train")
    state = common.run_state(out, RUN_FLAGS)
    model_path = os.path.join(out, "model.keras")
    if state.done(PHASE):
        print(f"{FLAGS.method} training {state.skip_message(PHASE)}; --noresume to retrain.")
        return
    keras.utils.set_random_seed(FLAGS.seed)
    model, train, test, info = common.model_and_data()
    steps = int(train.cardinality())
    tb = os.path.join(out, "tensorboard")
    ckpt = state.checkpoint_dir(PHASE)
    callbacks = [keras.callbacks.TensorBoard(os.path.join(tb, FLAGS.method))]
    on_resume, bandit = None, None
    if FLAGS.method == "slimming":
        model = slimming.slimmable(model, l1=FLAGS.l1, proximal=FLAGS.proximal)
        callbacks = [slimming.L1Schedule(FLAGS.l1),
                     slimming.GammaLogger(os.path.join(tb, "gamma"))] + callbacks
        callbacks += [slimming.ProximalL1()] if FLAGS.proximal else []
    elif FLAGS.method == "dce":
        model = gating.gate_model(model, FLAGS.fraction, compact=FLAGS.compact)
        from keras_slim.dce.tensorboard import ActiveChannelLogger

        bandit = _dce_callback(ckpt)
        callbacks = [bandit, ActiveChannelLogger(bandit, os.path.join(tb, "active_channels"))] + callbacks
        on_resume = _restore_bandits(bandit)
    common.compile_fn(steps * FLAGS.epochs)(model)

    what = {"baseline": "", "slimming": f", λ={FLAGS.l1}",
            "dce": f", p={FLAGS.fraction}, τ={FLAGS.warmup_steps}, policy={FLAGS.policy}, "
                   f"c={FLAGS.exploration}"}[FLAGS.method]
    print(f"\n== {FLAGS.method} training: {FLAGS.model_path or FLAGS.model} on {FLAGS.dataset}, {FLAGS.epochs} "
          f"epoch(s) of {steps} steps{what}")
    resumed_at = common.resumable_fit(model, train, FLAGS.epochs, ckpt, callbacks=callbacks,
                            validation_data=test, on_resume=on_resume)

    outputs = {"model": "model.keras"}
    if FLAGS.method == "slimming":
        summary = slimming.sparsity_summary(model)["overall"]
        print(f"{summary['share']:.1%} of |γ| below 0.01")
        final = slimming.strip(model)  # plain BN: for apps.prune, export, finetune
    elif FLAGS.method == "dce":
        bandit.attach(model)  # fit may not have run: resumed at the last step
        bandit.all_on()
        resume.write_json(os.path.join(out, "bandit.json"), bandit.get_state())
        outputs["bandit"] = "bandit.json"
        final = model
    else:
        final = model
    accuracy = float(model.evaluate(test, verbose=0, return_dict=True)["accuracy"])
    final.save(model_path)
    iterations = int(model.optimizer.iterations.numpy())
    state.finish(PHASE, steps=steps * FLAGS.epochs, optimizer_iterations=iterations,
                 resumed_at_step=resumed_at, test_accuracy=accuracy, **outputs)
    print(f"\ntest accuracy {accuracy:.2%} after {iterations} steps")
    print(f"wrote {model_path}" + (f" and {os.path.join(out, 'bandit.json')}"
                                   if bandit else "") + f"; TensorBoard logs in {tb}")


main = common.in_strategy_scope(run)  # --strategy's scope around the run
launch = common.launcher(define_flags, main)  # the console script's entry


if __name__ == "__main__":
    launch()

"""Fine-tune a (pruned) .keras model; prints the test accuracy before and after.

    python -m keras_slim.apps.finetune --model_path=run/pruned/pruned.keras --epochs=3 \
        --learning_rate=0.01 --output_dir=run/finetuned
    python -m keras_slim.apps.finetune --model_path=pruned.keras --teacher_path=before.keras \
        --temperature=4 --alpha=0.5          # distillation from the unpruned model
    python -m keras_slim.apps.finetune --model_path=mobilenet.keras --replace_head \
        --dataset=folder:photos               # a new classifier for your classes

Writes finetuned.keras, state.json and TensorBoard logs to --output_dir. Any L1 term on
BN γ (SlimBatchNormalization) is switched off and DCE gates are removed first; BN
statistics are re-estimated on --recalibration_steps training batches.
Checkpoints and resume as in apps.train.
"""
import os

from keras_slim.apps import common  # noqa: F401  (quiets TF before it loads)
from absl import flags


FLAGS = flags.FLAGS


def define_flags():
    """This app's flags (defined on demand, so every app imports in one process)."""
    common.define_model_path_flag("Pruned Keras model (.keras) to fine-tune.")
    common.define_data_flags()
    common.define_training_flags()
    common.define_output_flag("finetune")
    common.define_strategy_flags()
    common.define_checkpoint_flags()
    common.define_head_flag()
    common.define_distill_flags(default=True)
    flags.DEFINE_string("teacher_path", None, "Distillation: the unpruned (or "
                        "sparsity-trained) model to learn from, besides the labels.")
    flags.register_validator("teacher_path", lambda p: p is None or os.path.exists(p),
                             message="--teacher_path does not name an existing file.")
    flags.DEFINE_integer("epochs", 1, "Fine-tuning epochs.", lower_bound=1)
    flags.DEFINE_integer("recalibration_steps", 20, "Before fine-tuning, re-estimate the "
                         "BatchNormalization statistics on this many training batches "
                         "(0: off). Needed after DCE, whose statistics describe changing "
                         "channel subsets.", lower_bound=0)
    common.allow_redefinition()

RUN_FLAGS = ("model_path", "dataset", "local_data_dir", "train_take", "batch_size",
             "learning_rate", "lr_schedule", "seed", "epochs", "image_size",
             "validation_split", "split_seed", "replace_head", "teacher_path", "distill",
             "temperature", "alpha", "recalibration_steps")
PHASE = "finetune"


def accuracy(model, test):
    return float(model.evaluate(test, verbose=0, return_dict=True)["accuracy"])


def run(argv):
    del argv
    from keras_slim.dce import gates as gating
    from keras_slim import slimming
    from keras_slim.compat import keras

    common.quiet_logs()
    out = common.output_dir("finetune")
    state = common.run_state(out, RUN_FLAGS)
    if state.done(PHASE):
        done = state.done(PHASE)
        print(f"fine-tuning {state.skip_message(PHASE)}: test accuracy "
              f"{done['accuracy_before']:.2%} → {done['accuracy_after']:.2%}")
        return
    keras.utils.set_random_seed(FLAGS.seed)
    model, train, test, info = common.model_and_data()
    if gating.gates_of(model):
        model = gating.strip_gates(model)
    if slimming.slim_layers(model):
        slimming.set_l1(model, 0.0)
    steps = int(train.cardinality())
    common.compile_fn(steps * FLAGS.epochs)(model)
    before = accuracy(model, test)  # of --model_path: resume.fit restores a checkpoint
    if FLAGS.recalibration_steps:
        from keras_slim.core.batch_norm_statistics import recalibrate_batch_norm

        used = recalibrate_batch_norm(model, train, FLAGS.recalibration_steps)
        if used:
            print(f"BatchNormalization statistics re-estimated on {used} training "
                  f"batches: test accuracy {before:.2%} → {accuracy(model, test):.2%}")
    trainer = model
    if FLAGS.teacher_path and FLAGS.distill:
        teacher = common.load_keras_model(FLAGS.teacher_path, flag="teacher_path")
        if gating.gates_of(teacher):
            teacher = gating.strip_gates(teacher)
        trainer = common.distiller(model, teacher, "teacher_path")
        common.compile_fn(steps * FLAGS.epochs)(trainer)
        print(f"distillation from {FLAGS.teacher_path}: T={FLAGS.temperature}, "
              f"α={FLAGS.alpha}")
    ckpt = state.checkpoint_dir(PHASE)
    print(f"\n== fine-tune {FLAGS.model_path}: {FLAGS.epochs} epoch(s) of {steps} steps; "
          f"test accuracy before: {before:.2%}")
    tb = os.path.join(out, "tensorboard", "finetune")
    resumed_at = common.resumable_fit(trainer, train, FLAGS.epochs, ckpt, validation_data=test,
                            callbacks=[keras.callbacks.TensorBoard(tb)])
    after = accuracy(model, test)
    path = os.path.join(out, "finetuned.keras")
    model.save(path)
    state.finish(PHASE, model="finetuned.keras", accuracy_before=before, accuracy_after=after,
                 steps=steps * FLAGS.epochs, resumed_at_step=resumed_at)
    print(f"\ntest accuracy: before {before:.2%}, after {after:.2%} "
          f"({after - before:+.2%})")
    print(f"wrote {path}")


main = common.in_strategy_scope(run)  # --strategy's scope around the run
launch = common.launcher(define_flags, main)  # the console script's entry


if __name__ == "__main__":
    launch()

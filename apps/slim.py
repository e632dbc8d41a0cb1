"""The whole Network Slimming pipeline in one command.

train with the γ-L1 sparsity term → prune the lowest-γ channels → rebuild (bias
compensation) → fine-tune → export int8 .tflite → verify in LiteRT → before/after table.

    python -m keras_slim.apps.slim                                  # Fashion-MNIST, vgg_small
    python -m keras_slim.apps.slim --epochs=1 --finetune_epochs=1 --train_take=5000 --output_dir=/tmp/r
    python -m keras_slim.apps.slim --flagfile=my.flags
    python -m keras_slim.apps.slim --model_path=my_mobilenet.keras --dataset=folder:photos \
        --pretrained            # your own model and photos: short sparsity phase, lower lr

Rerunning with the same --output_dir resumes: finished phases (recorded in state.json)
are skipped and an interrupted training phase continues from its last checkpoint
(--checkpoint_every_steps); --noresume starts over.
"""
import json
import os

from keras_slim.apps import common  # noqa: F401  (quiets TF before it loads)
from absl import flags

FLAGS = flags.FLAGS


def define_flags():
    """This app's flags (defined on demand, so every app imports in one process)."""
    common.define_data_flags()
    common.define_model_flags()
    common.define_output_flag("slim")
    common.define_strategy_flags()
    common.define_checkpoint_flags()
    common.define_distill_flags(default=True)
    flags.DEFINE_bool("pretrained", False, "The model starts trained (--model_path, "
                      "--weights=imagenet): 1 sparsity epoch at a 10× lower learning rate, no λ "
                      "but --fade, then longer fine-tuning at a higher rate, unless given on "
                      "the command line.")
    flags.DEFINE_bool("fade", False, "Sparsity training fades the γ and β of the channels the "
                      "prune will remove to exactly 0 (keras_slim.GammaFade; needs no λ, "
                      "the default of --pretrained).")
    flags.DEFINE_integer("epochs", 2, "Sparsity-training epochs.", lower_bound=1)
    flags.DEFINE_integer("finetune_epochs", 1, "Fine-tuning epochs after pruning (--pretrained: "
                         "its defaults' value).", lower_bound=0)
    flags.DEFINE_float("finetune_learning_rate", None, "Peak learning rate of the fine-tuning "
                       "(default: --learning_rate; --pretrained without --learning_rate: its "
                       "defaults' higher rate).", lower_bound=0.0)
    flags.DEFINE_float("l1", 5e-3, "λ of the L1 penalty on BN γ (the paper uses 1e-4 over 160 "
                       "epochs; short schedules need more).", lower_bound=0.0)
    flags.DEFINE_float("ratio", 0.6, "Share of channels to remove, in [0, 1).", lower_bound=0.0,
                       upper_bound=0.99999)
    flags.DEFINE_integer("round_to", 8, "Round kept channel counts to this multiple.",
                         lower_bound=1)
    common.define_normalizer_flag()
    flags.DEFINE_integer("representative_samples", 200, "Training images used to calibrate "
                         "the int8 file.", lower_bound=1)
    flags.DEFINE_integer("eval_samples", 2000, "Test images used to compare the .tflite files "
                         "with Keras (the table's accuracies are on these).", lower_bound=1)
    @flags.multi_flags_validator(["dataset", "representative_samples"],
                                 message="--representative_samples exceeds the training split.")
    def _calibration_fits(values):
        from keras_slim.zoo import data
        if values["dataset"] not in data.SUPPORTED:
            return True  # checked when the data is read
        return values["representative_samples"] <= data.info(values["dataset"]).num_examples["train"]
    common.allow_redefinition()


def _row(name, acc, profile, tflite_report, bench):
    return {"model": name, "accuracy": acc, "params": profile["params"],
            "macs": profile["macs"], "tflite_kb": bench["size_kb"],
            "latency_ms": bench["latency_ms"][1]["median"],
            "tflite_accuracy": tflite_report["accuracy"],
            "agreement": tflite_report["agreement"]}


def format_table(rows):
    head = (f"{'model':<10} {'acc (Keras)':>11} {'acc (int8)':>10} {'params':>9} "
            f"{'MACs':>11} {'int8 KB':>8} {'latency ms':>10}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['model']:<10} {r['accuracy']:>11.2%} {r['tflite_accuracy']:>10.2%} "
                     f"{r['params']:>9,} {r['macs']:>11,} {r['tflite_kb']:>8.1f} "
                     f"{r['latency_ms']:>10.3f}")
    before, after = rows
    lines.append(f"{'change':<10} {after['accuracy'] - before['accuracy']:>+11.2%} "
                 f"{after['tflite_accuracy'] - before['tflite_accuracy']:>+10.2%} "
                 f"{before['params'] / after['params']:>8.1f}× "
                 f"{before['macs'] / after['macs']:>10.1f}× "
                 f"{before['tflite_kb'] / after['tflite_kb']:>7.1f}× "
                 f"{before['latency_ms'] / after['latency_ms']:>9.1f}×")
    return "\n".join(lines)


RUN_FLAGS = ("dataset", "local_data_dir", "train_take", "batch_size", "model",
             "learning_rate", "lr_schedule", "seed", "epochs", "finetune_epochs", "l1",
             "ratio", "round_to", "model_path", "weights", "replace_head", "image_size",
             "validation_split", "split_seed", "distill", "temperature", "alpha",
             "pretrained", "fade", "finetune_learning_rate", "normalizer")


def plan_flags():
    """The plan's keyword arguments from --round_to and --normalizer."""
    return dict(round_to=FLAGS.round_to, normalizer=common.normalizer())


def apply_pretrained_defaults():
    """--pretrained: settings that keep what the model knows, where the user did not set
    them (keras_slim.pipeline.defaults)."""
    from keras_slim.pipeline import defaults

    fade = FLAGS.fade if FLAGS["fade"].present else None
    table = defaults(pretrained=True, fade=fade)
    given = {name for name in table if name in FLAGS and FLAGS[name].present}
    if "learning_rate" in given:  # a rate the user gave drives both phases
        given.add("finetune_learning_rate")
    for name, value in table.items():
        if name in FLAGS and name not in given:
            FLAGS[name].value = value


def plot_report(rows, path):
    """report.png: test accuracy against MACs of the model before and after pruning."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    macs = [r["macs"] / 1e6 for r in rows]
    for key, label, style in (("accuracy", "Keras float32", dict(marker="o", ms=9)),
                              ("tflite_accuracy", "LiteRT int8",
                               dict(marker="s", ms=6, mfc="none", mew=1.5))):
        acc = [100 * r[key] for r in rows]
        ax.plot(macs, acc, linestyle="--", label=label, **style)
    for r, x in zip(rows, macs):
        right = x == max(macs)
        ax.annotate(f"{r['model']}: {r['params']:,} params", (x, 100 * r["accuracy"]),
                    textcoords="offset points", xytext=(-8 if right else 8, 8),
                    ha="right" if right else "left", fontsize=8)
    ax.set_xlim(0, 1.15 * max(macs))
    ax.margins(y=0.3)
    ax.set_xlabel("MACs per image (millions)")
    ax.set_ylabel("test accuracy (%)")
    before, after = rows
    ax.set_title(f"Network Slimming: {before['macs'] / max(after['macs'], 1):.1f}× fewer "
                 f"MACs, {100 * (after['accuracy'] - before['accuracy']):+.2f} pt accuracy",
                 fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run(argv):
    del argv
    from keras_slim import export
    from keras_slim.zoo import data
    from keras_slim.core import metrics
    from keras_slim.slimming import pipeline as network_slimming
    from keras_slim import slimming
    from keras_slim.compat import keras
    from keras_slim.slimming.fade import DEFAULT_FADE_SHARE
    from keras_slim.core.plan import ChannelPlan

    common.quiet_logs()
    if FLAGS.pretrained:
        apply_pretrained_defaults()
    out = common.output_dir("slim")
    state = common.run_state(out, RUN_FLAGS)
    if state.done("report"):
        print(f"this run is finished {state.skip_message('report')}; --noresume to redo it")
        with open(os.path.join(out, "report.md")) as f:
            print(f.read().strip("`\n"))
        return
    keras.utils.set_random_seed(FLAGS.seed)
    model, train, test, info = common.model_and_data()
    steps = int(train.cardinality())
    tb = os.path.join(out, "tensorboard")
    slim_path, before_path = (os.path.join(out, n) for n in ("sparsity.keras", "before.keras"))
    pruned_path, plan_path = (os.path.join(out, n) for n in ("pruned.keras", "plan.json"))
    after_path, faded_path = (os.path.join(out, n) for n in ("after.keras", "faded_plan.json"))
    slim = before = pruned = plan = after = None

    fading = ", fading the channels to remove to γ = β = 0" if FLAGS.fade else ""
    print(f"\n== 1/4 sparsity training: {FLAGS.model_path or FLAGS.model} on {FLAGS.dataset}, "
          f"λ={FLAGS.l1}{fading}")
    if state.done("sparsity"):
        print(state.skip_message("sparsity"))
    else:
        slim = slimming.slimmable(model, l1=FLAGS.l1)  # as network_slimming.sparsity_train
        common.compile_fn(steps * FLAGS.epochs)(slim)
        callbacks = [slimming.L1Schedule(FLAGS.l1),
                     slimming.GammaLogger(os.path.join(tb, "gamma")),
                     keras.callbacks.TensorBoard(os.path.join(tb, "sparsity"))]
        fader = slimming.GammaFade(  # a resumed fit continues the same ramp
            lambda graph: slimming.gamma_plan(graph.model, FLAGS.ratio, graph=graph,
                                              **plan_flags()),
            fade_steps=max(int(DEFAULT_FADE_SHARE * steps * FLAGS.epochs), 1),
            start_step=0) if FLAGS.fade else None
        common.resumable_fit(slim, train, FLAGS.epochs, state.checkpoint_dir("sparsity"),
                             validation_data=test, callbacks=callbacks + [fader] * bool(fader))
        if fader:  # phase 2 removes exactly what faded (checkpoints precede its steps)
            fader.settle(slim).save(faded_path)
        slim.save(slim_path)  # with SlimBN: what the prune phase reads on a rerun
        # the "before" row and the teacher: the sparse model, unless the fade already
        # made it the pruned one — then the model as it came
        before = model if FLAGS.fade else slimming.strip(slim)
        before.save(before_path)
        state.finish("sparsity", slim="sparsity.keras", before="before.keras")

    print(f"\n== 2/4 prune {FLAGS.ratio:.0%} of channels by |γ| and rebuild")
    if state.done("prune"):
        print(state.skip_message("prune"))
    else:
        slim = slim or common.load_keras_model(slim_path)
        faded = ChannelPlan.load(faded_path) if FLAGS.fade else None
        pruned, plan, _ = network_slimming.prune(slim, FLAGS.ratio, plan=faded,
                                                 **plan_flags())
        pruned = slimming.strip(pruned)
        pruned.save(pruned_path)
        plan.save(plan_path)
        print(plan.table())
        state.finish("prune", pruned="pruned.keras", plan="plan.json")

    teacher = "model as it came" if FLAGS.fade else "sparsity-trained model"
    how = (f", distilled from the {teacher} (T={FLAGS.temperature}, "
           f"α={FLAGS.alpha})" if FLAGS.distill else "")
    print(f"\n== 3/4 fine-tune {FLAGS.finetune_epochs} epoch(s){how}")
    if state.done("finetune"):
        print(state.skip_message("finetune"))
    else:
        after = pruned or common.load_keras_model(pruned_path)
        compile_finetune = common.compile_fn(steps * FLAGS.finetune_epochs,
                                             FLAGS.finetune_learning_rate)
        compile_finetune(after)
        trainer = after
        if FLAGS.distill:
            before = before or common.load_keras_model(before_path)
            trainer = compile_finetune(common.distiller(after, before, "distill"))
        if FLAGS.finetune_epochs:
            common.resumable_fit(trainer, train, FLAGS.finetune_epochs, state.checkpoint_dir("finetune"),
                       validation_data=test,
                       callbacks=[keras.callbacks.TensorBoard(os.path.join(tb, "finetune"))])
        after.save(after_path)
        state.finish("finetune", after="after.keras")

    print("\n== 4/4 export int8 .tflite files, verify in LiteRT, measure")
    from keras_slim.core.plan import ChannelPlan
    before = before or common.load_keras_model(before_path)
    after = after or common.load_keras_model(after_path)
    plan = plan or ChannelPlan.load(plan_path)
    kwargs = common.data_kwargs(after)
    with common.data_errors():
        x, y = data.numpy_arrays(FLAGS.dataset, "test", take=FLAGS.eval_samples, **kwargs)
        calibration = common.with_progress(data.representative_dataset(
            FLAGS.dataset, FLAGS.representative_samples, **kwargs),
            FLAGS.representative_samples)
    rows = []
    for name, keras_model in (("before", before), ("after", after)):
        path = os.path.join(out, f"{name}_int8.tflite")
        meta = export.build_metadata(dataset=info,
                                     plan=plan if name == "after" else None)
        export.convert(keras_model, "int8", representative_data=calibration,
                       output_path=path, metadata=meta)
        report = export.verify(path, keras_model=keras_model, x=x, y=y)
        bench = export.benchmark_tflite(path, threads=(1,), warmup=10, runs=50)
        rows.append(_row(name, report["keras_accuracy"], metrics.profile(keras_model),
                         report, bench))
    table = format_table(rows)
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump({"flags": FLAGS.flag_values_dict(), "rows": rows}, f, indent=1, default=str)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("```\n" + table + "\n```\n")
    try:
        plot_report(rows, os.path.join(out, "report.png"))
    except ImportError as e:  # matplotlib is a dependency, but keep the run's results
        print(f"warning: no report.png ({e}); pip install matplotlib")
    state.finish("report", report="report.md", plot="report.png",
                 tflite="after_int8.tflite")
    print("\n" + table)
    print(f"\nint8 .tflite for the phone: {os.path.join(out, 'after_int8.tflite')}")
    print(f"everything else (models, plan.json, report and report.png, TensorBoard logs): "
          f"{out}")


main = common.in_strategy_scope(run)  # --strategy's scope around the run
launch = common.launcher(define_flags, main)  # the console script's entry


if __name__ == "__main__":
    launch()

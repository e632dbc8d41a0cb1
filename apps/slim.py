"""The whole Network Slimming pipeline in one command.

train with the γ-L1 sparsity term → prune the lowest-γ channels → rebuild (bias
compensation) → fine-tune → export int8 .tflite → verify in LiteRT → before/after table.

    python -m apps.slim                                  # Fashion-MNIST, vgg_small
    python -m apps.slim --epochs=1 --finetune_epochs=1 --train_take=5000 --output_dir=/tmp/r
    python -m apps.slim --flagfile=my.flags
"""
import json
import os

from apps import common  # noqa: F401  (quiets TF before it loads)
from absl import app, flags

FLAGS = flags.FLAGS
common.define_data_flags()
common.define_model_flags()
common.define_output_flag("slim")
flags.DEFINE_integer("epochs", 2, "Sparsity-training epochs.", lower_bound=1)
flags.DEFINE_integer("finetune_epochs", 1, "Fine-tuning epochs after pruning.", lower_bound=0)
flags.DEFINE_float("l1", 5e-3, "λ of the L1 penalty on BN γ (the paper uses 1e-4 over 160 "
                   "epochs; short schedules need more).", lower_bound=0.0)
flags.DEFINE_float("ratio", 0.6, "Share of channels to remove, in [0, 1).", lower_bound=0.0,
                   upper_bound=0.99999)
flags.DEFINE_integer("round_to", 8, "Round kept channel counts to this multiple.",
                     lower_bound=1)
flags.DEFINE_integer("representative_samples", 200, "Training images used to calibrate "
                     "the int8 file.", lower_bound=1)
flags.DEFINE_integer("eval_samples", 2000, "Test images used to compare the .tflite files "
                     "with Keras (the table's accuracies are on these).", lower_bound=1)


@flags.multi_flags_validator(["dataset", "representative_samples"],
                             message="--representative_samples exceeds the training split.")
def _calibration_fits(values):
    from keras_slim import data
    return values["representative_samples"] <= data.info(values["dataset"]).num_examples["train"]


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


def main(argv):
    del argv
    import export
    from keras_slim import data, metrics, models, network_slimming, slimming
    from keras_slim.compat import keras

    common.quiet_logs()
    out = common.output_dir("slim")
    keras.utils.set_random_seed(FLAGS.seed)
    train, test, info = common.train_and_test()
    steps = int(train.cardinality())
    compile_model = common.compile_fn(steps * FLAGS.epochs)
    model = models.build(FLAGS.model, input_shape=info.input_shape,
                         num_classes=info.num_classes)
    tb = os.path.join(out, "tensorboard")

    print(f"\n== 1/4 sparsity training: {FLAGS.model} on {FLAGS.dataset}, λ={FLAGS.l1}")
    slim, _ = network_slimming.sparsity_train(
        model, train, FLAGS.epochs, FLAGS.l1, compile_model, validation_data=test,
        callbacks=[keras.callbacks.TensorBoard(os.path.join(tb, "sparsity"))],
        gamma_log_dir=os.path.join(tb, "gamma"))
    before = slimming.strip(slim)
    before.save(os.path.join(out, "before.keras"))

    print(f"\n== 2/4 prune {FLAGS.ratio:.0%} of channels by |γ| and rebuild")
    pruned, plan, _ = network_slimming.prune(slim, FLAGS.ratio, round_to=FLAGS.round_to)
    plan.save(os.path.join(out, "plan.json"))
    print(plan.table())

    print(f"\n== 3/4 fine-tune {FLAGS.finetune_epochs} epoch(s)")
    after, _ = network_slimming.finetune(
        slimming.strip(pruned), train, FLAGS.finetune_epochs,
        common.compile_fn(steps * FLAGS.finetune_epochs),
        validation_data=test,
        callbacks=[keras.callbacks.TensorBoard(os.path.join(tb, "finetune"))])
    after.save(os.path.join(out, "after.keras"))

    print("\n== 4/4 export int8 .tflite files, verify in LiteRT, measure")
    x, y = data.numpy_arrays(FLAGS.dataset, "test", take=FLAGS.eval_samples,
                             local_dir=FLAGS.local_data_dir)
    calibration = data.representative_dataset(FLAGS.dataset, FLAGS.representative_samples,
                                               local_dir=FLAGS.local_data_dir)
    rows = []
    for name, keras_model in (("before", before), ("after", after)):
        path = os.path.join(out, f"{name}_int8.tflite")
        meta = export.build_metadata(dataset=FLAGS.dataset,
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
    print("\n" + table)
    print(f"\nint8 .tflite for the phone: {os.path.join(out, 'after_int8.tflite')}")
    print(f"everything else (models, plan.json, report, TensorBoard logs): {out}")


if __name__ == "__main__":
    app.run(main)

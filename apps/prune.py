"""Plan and rebuild: a trained .keras model → pruned.keras + plan.json (+ the table).

    python -m apps.prune --model_path=run/before.keras --ratio=0.5 --output_dir=run/pruned
    python -m apps.prune --model_path=m.keras --ratio=0.7 --dry_run      # print the plan only
"""
import os

from apps import common  # noqa: F401  (quiets TF before it loads)
from absl import app, flags

FLAGS = flags.FLAGS
common.define_model_path_flag()
common.define_output_flag("prune")
flags.DEFINE_enum("criterion", "bn_gamma", ["bn_gamma", "l1_norm", "random"],
                  "Channel importance: |γ| of BatchNormalization (Network Slimming), L1 norm "
                  "of filters, or random (the ablation baseline).")
flags.DEFINE_float("ratio", 0.5, "Share of prunable channels to remove, in [0, 1).",
                   lower_bound=0.0, upper_bound=0.99999)
flags.DEFINE_enum("scope", "global", ["global", "layer"],
                  "One ranking over all channels, or the same share in every group.")
flags.DEFINE_integer("round_to", 8, "Round kept channel counts up to this multiple.",
                     lower_bound=1)
flags.DEFINE_float("min_fraction", 0.0, "Keep at least this share of every group.",
                   lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_bool("dry_run", False, "Print the plan and stop; write nothing.")
flags.DEFINE_bool("compensate", True, "Fold removed channels' constant output into "
                  "their consumers (bias compensation).")
flags.DEFINE_integer("seed", 0, "Seed of the random criterion.")


def make_plan(model):
    from keras_slim import plan as plans
    from keras_slim import slimming

    kwargs = dict(scope=FLAGS.scope, round_to=FLAGS.round_to, min_fraction=FLAGS.min_fraction)
    if FLAGS.criterion == "bn_gamma":
        return slimming.gamma_plan(model, FLAGS.ratio, **kwargs)
    if FLAGS.criterion == "l1_norm":
        return plans.l1_norm_plan(model, FLAGS.ratio, **kwargs)
    return plans.random_plan(model, FLAGS.ratio, seed=FLAGS.seed, **kwargs)


def main(argv):
    del argv
    common.quiet_logs()
    from keras_slim import metrics
    from keras_slim.network_slimming import removed_gamma_max
    from keras_slim.rebuild import rebuild

    model = common.load_keras_model(FLAGS.model_path)
    plan = make_plan(model)
    print(plan.table())
    if FLAGS.dry_run:
        return
    tolerance = removed_gamma_max(model, plan) if (
        FLAGS.compensate and FLAGS.criterion == "bn_gamma") else 0.0
    pruned, report = rebuild(model, plan, compensate=FLAGS.compensate,
                             gamma_tolerance=tolerance, return_report=True)
    out = common.output_dir("prune")
    pruned.save(os.path.join(out, "pruned.keras"))
    plan.save(os.path.join(out, "plan.json"))
    print("\n" + metrics.format_report(metrics.compare(model, pruned)))
    if report.compensations:
        exact = sum(c.exact for c in report.compensations)
        print(f"bias compensation folded into {len(report.compensations)} layers "
              f"({exact} exact, the rest approximate at 'same'-padded borders)")
    print(f"\nwrote {os.path.join(out, 'pruned.keras')} and {os.path.join(out, 'plan.json')}")


if __name__ == "__main__":
    app.run(main)

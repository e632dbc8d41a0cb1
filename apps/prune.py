"""Plan and rebuild: a trained .keras model → pruned.keras + plan.json (+ the table).

    python -m apps.prune --model_path=run/before.keras --ratio=0.5 --output_dir=run/pruned
    python -m apps.prune --model_path=m.keras --ratio=0.7 --dry_run      # print the plan only
    python -m apps.prune --model_path=run/dce/model.keras --criterion=dce --ratio=0.5

A model with DCE gates (apps.train --method=dce) is pruned without them; --criterion=dce
ranks its channels by the bandits' mean saliency in the bandit.json next to it.
"""
import os

from apps import common  # noqa: F401  (quiets TF before it loads)
from absl import app, flags

FLAGS = flags.FLAGS
common.define_model_path_flag()
common.define_output_flag("prune")
flags.DEFINE_enum("criterion", "bn_gamma", ["bn_gamma", "l1_norm", "random", "dce"],
                  "Channel importance: |γ| of BatchNormalization (Network Slimming), L1 norm "
                  "of filters, random (the ablation baseline), or dce: the mean Taylor "
                  "saliency the CUCB bandits of a DCE-trained model learnt (--bandit_state; "
                  "the same share removed in every gated group, other groups kept whole).")
flags.DEFINE_string("bandit_state", None, "--criterion=dce: the bandit state JSON "
                    "(default: bandit.json next to --model_path).")
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
flags.register_validator("bandit_state", lambda p: p is None or os.path.isfile(p),
                         message="--bandit_state does not name an existing file.")


def bandit_state_path():
    path = FLAGS.bandit_state or os.path.join(os.path.dirname(FLAGS.model_path),
                                              "bandit.json")
    if not os.path.isfile(path):
        raise app.UsageError(f"--criterion=dce needs the bandit state of the DCE run: {path} "
                             "does not exist (pass --bandit_state).")
    return path


def make_plan(model, bandit_state=None):
    from keras_slim import plan as plans
    from keras_slim import slimming

    if FLAGS.criterion == "dce":
        from keras_slim import dce
        try:
            return dce.dce_plan(bandit_state, model, 1.0 - FLAGS.ratio,
                                round_to=FLAGS.round_to, min_fraction=FLAGS.min_fraction)
        except ValueError as e:  # another model's or a damaged state: the user's input
            raise app.UsageError(f"--bandit_state={bandit_state_path()}: {e}") from None
    kwargs = dict(scope=FLAGS.scope, round_to=FLAGS.round_to, min_fraction=FLAGS.min_fraction)
    if FLAGS.criterion == "bn_gamma":
        return slimming.gamma_plan(model, FLAGS.ratio, **kwargs)
    if FLAGS.criterion == "l1_norm":
        return plans.l1_norm_plan(model, FLAGS.ratio, **kwargs)
    return plans.random_plan(model, FLAGS.ratio, seed=FLAGS.seed, **kwargs)


def main(argv):
    del argv
    common.quiet_logs()
    from keras_slim import gating, metrics
    from keras_slim.network_slimming import removed_gamma_max
    from keras_slim.rebuild import rebuild

    bandit_state = None
    if FLAGS.criterion == "dce":
        import json
        with open(bandit_state_path()) as f:
            try:
                bandit_state = json.load(f)
            except json.JSONDecodeError as e:
                raise app.UsageError(f"--bandit_state={bandit_state_path()} is not valid "
                                     f"JSON: {e}") from None
    model = common.load_keras_model(FLAGS.model_path)
    if gating.gates_of(model):
        model = gating.strip_gates(model)  # all masks are 1 after training: same outputs
    plan = make_plan(model, bandit_state)
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

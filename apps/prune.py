"""Plan and rebuild: a trained .keras model → pruned.keras + plan.json (+ the table).

    python -m keras_slim.apps.prune --model_path=run/before.keras --ratio=0.5 --output_dir=run/pruned
    python -m keras_slim.apps.prune --model_path=m.keras --ratio=0.7 --dry_run      # print the plan only
    python -m keras_slim.apps.prune --model_path=run/dce/model.keras --criterion=dce --ratio=0.5
    python -m keras_slim.apps.prune --model_path=m.keras --criterion=l1_norm --target_macs=0.5
    python -m keras_slim.apps.prune --model_path=m.keras --target_latency_ms=2.0 --latency_table=lat.json
    python -m keras_slim.apps.prune --model_path=m.keras --target_latency_ms=2.0 --latency_table=lat.json --measure_latency

A model with DCE gates (apps.train --method=dce) is pruned without them; --criterion=dce
ranks its channels by the bandits' mean saliency in the bandit.json next to it.
"""
import os

from keras_slim.apps import common  # noqa: F401  (quiets TF before it loads)
from absl import app, flags

FLAGS = flags.FLAGS


def define_flags():
    """This app's flags (defined on demand, so every app imports in one process)."""
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
    common.define_normalizer_flag()
    flags.DEFINE_float("min_fraction", 0.0, "Keep at least this share of every group.",
                       lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_float("target_macs", None, "Prune to this many MACs instead of --ratio: a "
                       "fraction of the original's (<= 1) or an absolute count.",
                       lower_bound=0.0)
    flags.DEFINE_float("target_params", None, "Prune to this many parameters instead of "
                       "--ratio: a fraction of the original's (<= 1) or a count.",
                       lower_bound=0.0)
    flags.DEFINE_float("target_latency_ms", None, "Prune to this predicted LiteRT latency "
                       "(ms) instead of --ratio; needs --latency_table.", lower_bound=0.0)
    flags.DEFINE_bool("measure_latency", False, "With --target_latency_ms: time each plan's "
                      "model in LiteRT here and re-plan until it measures within 5% of the "
                      "target (the table's runtime: dtype, threads, delegate).")
    flags.DEFINE_string("latency_table", None, "A keras_slim latency table JSON (built by "
                        "keras_slim.latency.build_table or apps.benchmark "
                        "--latency_table, or imported from a device's benchmark_model).")
    flags.register_multi_flags_validator(
        ["ratio", "target_macs", "target_params", "target_latency_ms"],
        lambda v: sum(v[k] is not None for k in v if k != "ratio") <= 1,
        message="give at most one of --target_macs, --target_params, --target_latency_ms.")
    flags.register_multi_flags_validator(
        ["target_latency_ms", "latency_table"],
        lambda v: v["target_latency_ms"] is None or v["latency_table"] is not None,
        message="--target_latency_ms needs --latency_table.")
    flags.DEFINE_bool("dry_run", False, "Print the plan and stop; write nothing.")
    flags.DEFINE_bool("compensate", True, "Fold removed channels' constant output into "
                      "their consumers (bias compensation).")
    flags.DEFINE_integer("seed", 0, "Seed of the random criterion.")
    flags.register_validator("bandit_state", lambda p: p is None or os.path.isfile(p),
                             message="--bandit_state does not name an existing file.")
    common.allow_redefinition()


def bandit_state_path():
    path = FLAGS.bandit_state or os.path.join(os.path.dirname(FLAGS.model_path),
                                              "bandit.json")
    if not os.path.isfile(path):
        raise app.UsageError(f"--criterion=dce needs the bandit state of the DCE run: {path} "
                             "does not exist (pass --bandit_state).")
    return path


def target_kwargs():
    """{"target": ..., "latency_table": ...} from the target flags, else {"ratio": ...}."""
    for flag, key in (("target_macs", "macs"), ("target_params", "params"),
                      ("target_latency_ms", "latency_ms")):
        if FLAGS[flag].value is not None:
            if FLAGS["ratio"].present:
                raise app.UsageError(f"--ratio and --{flag} both given: pass one.")
            from keras_slim.latency import LatencyTable, LatencyTableError
            table = None
            if key == "latency_ms":
                try:
                    table = LatencyTable.load(FLAGS.latency_table)
                except LatencyTableError as e:
                    raise app.UsageError(f"--latency_table: {e}") from None
            return {"target": {key: FLAGS[flag].value}, "latency_table": table,
                    "measure_latency": FLAGS.measure_latency and key == "latency_ms"}
    if FLAGS.measure_latency:
        raise app.UsageError("--measure_latency needs --target_latency_ms.")
    return {"ratio": FLAGS.ratio}


def main(argv):
    del argv
    common.quiet_logs()
    from keras_slim.core import criteria, metrics
    from keras_slim.core.graph import ChannelGraph
    from keras_slim.dce import gates_of, strip_gates

    bandit_state = bandit_state_path() if FLAGS.criterion == "dce" else None
    model = common.load_keras_model(FLAGS.model_path)
    if gates_of(model):
        model = strip_gates(model)  # all masks are 1 after training: same outputs
    graph = ChannelGraph(model)  # analysed once for plan, rebuild and report
    kwargs = dict(seed=FLAGS.seed, bandit_state=bandit_state, scope=FLAGS.scope,
                  round_to=FLAGS.round_to, min_fraction=FLAGS.min_fraction,
                  normalizer=common.normalizer(),
                  **target_kwargs())
    try:
        if FLAGS.dry_run:
            kwargs.pop("measure_latency", None)  # a dry run times nothing
            plan = criteria.criterion_plan(graph, FLAGS.criterion, **kwargs)
            print(plan.table())
            print_achieved(plan)
            return
        pruned, plan, report = criteria.prune(model, FLAGS.criterion,
                                              compensate=FLAGS.compensate, graph=graph,
                                              return_report=True, verbose=1, **kwargs)
    except ValueError as e:
        if "target" in str(e) and "target" in kwargs:
            raise app.UsageError(str(e)) from None
        if bandit_state is None:
            raise
        # another model's or a damaged state: the user's input
        raise app.UsageError(f"--bandit_state={bandit_state}: {e}") from None
    print(plan.table())
    print_achieved(plan)
    out = common.output_dir("prune")
    pruned.save(os.path.join(out, "pruned.keras"))
    plan.save(os.path.join(out, "plan.json"))
    print("\n" + metrics.format_report(metrics.compare(metrics.profile(graph), pruned)))
    if report.compensations:
        exact = sum(c.exact for c in report.compensations)
        print(f"bias compensation folded into {len(report.compensations)} layers "
              f"({exact} exact, the rest approximate at 'same'-padded borders)")
    print(f"\nwrote {os.path.join(out, 'pruned.keras')} and {os.path.join(out, 'plan.json')}")


def print_achieved(plan):
    if "achieved" in plan.meta:
        parts = [f"{k}={v:,.4g}" if isinstance(v, float) else f"{k}={v:,}"
                 for k, v in plan.meta["achieved"].items()]
        print(f"target {plan.meta['target']}: achieved {', '.join(parts)} "
              f"(original {plan.meta['original']})")


launch = common.launcher(define_flags, main)  # the console script's entry


if __name__ == "__main__":
    launch()

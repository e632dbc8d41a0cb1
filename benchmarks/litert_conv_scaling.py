"""How LiteRT latency of one 3x3 convolution follows its channel count, int8 vs float32.

Channel pruning only pays off on a runtime whose cost grows with the channel count. This
measures that directly: a single Conv2D(c -> c, 3x3, same) + ReLU, batch 1, 1 thread, at
two input sizes, exported as full-integer int8 and as float32, run with XNNPACK (LiteRT's
CPU default) and with the builtin kernels only.

    python -m benchmarks.litert_conv_scaling      # -> results/litert_conv_scaling.md
"""
import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks.common import RESULTS, int8_units, stamp, write_text  # noqa: E402
from benchmarks.suite_tables import table  # noqa: E402
from keras_slim import export  # noqa: E402
from keras_slim.compat import keras  # noqa: E402


def conv_model(size, channels):
    inputs = keras.Input((size, size, channels))
    x = keras.layers.Conv2D(channels, 3, padding="same")(inputs)
    return keras.Model(inputs, keras.layers.ReLU()(x))


def fastest_ms(content, xnnpack, runs, rounds):
    """Fastest round's median invoke time: the machine's noise only ever adds time."""
    return min(export.benchmark_tflite(content, threads=1, warmup=10, runs=runs, seed=r,
                                       xnnpack=xnnpack)["latency_ms"][1]["median"]
               for r in range(rounds))


def measure(sizes, channels, runs, rounds):
    """[(size, c, MACs, {(mode, xnnpack): ms})]."""
    rng = np.random.default_rng(0)
    out = []
    for size in sizes:
        for c in channels:
            model = conv_model(size, c)
            calibration = rng.random((32, size, size, c), dtype=np.float32)
            files = {"int8": export.convert(model, "int8", representative_data=calibration),
                     "float32": export.convert(model, "float32")}
            ms = {(mode, xnn): fastest_ms(bytes(content), xnn, runs, rounds)
                  for mode, content in files.items() for xnn in (True, False)}
            out.append((size, c, size * size * 9 * c * c, ms))
            print(f"{size}x{size} c={c}: " + ", ".join(
                f"{mode} {'XNNPACK' if xnn else 'builtin'} {v:.3f} ms"
                for (mode, xnn), v in ms.items()), flush=True)
    return out


def markdown(results, args):
    header = ["input", "channels in = out", "MACs", "int8 XNNPACK ms", "float32 XNNPACK ms",
              "int8 builtin ms", "float32 builtin ms"]
    rows = [[f"{s}x{s}", c, f"{macs:,}", *(f"{ms[k]:.3f}" for k in
             [("int8", True), ("float32", True), ("int8", False), ("float32", False)])]
            for s, c, macs, ms in results]
    ratios = []
    for size in args.sizes:
        by_c = {c: ms for s, c, _, ms in results if s == size}
        lo = min(by_c)
        for name, key in (("int8 XNNPACK", ("int8", True)), ("int8 builtin", ("int8", False)),
                          ("float32 XNNPACK", ("float32", True))):
            steps = [f"{c} ch ({(c / lo) ** 2:.0f}× MACs) {ms[key] / by_c[lo][key]:.2f}×"
                     for c, ms in by_c.items() if c != lo]
            ratios.append(f"- {size}x{size}, {name}: time relative to {lo} channels: "
                          + ", ".join(steps))
    return "\n".join([
        "# LiteRT latency of one 3x3 convolution vs its channel count", "",
        stamp(), "", f"int8 units this CPU lists (/proc/cpuinfo): {int8_units()}.", "",
        f"Conv2D(c → c, 3x3, same) + ReLU, batch 1, 1 thread; export.benchmark_tflite, "
        f"fastest of {args.rounds} rounds' medians of {args.runs} invokes. int8: "
        "full-integer post-training quantization (export.convert). XNNPACK is LiteRT's "
        "default CPU delegate; 'builtin' is OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES.",
        "",
        table(header, rows), "", *ratios, "",
        "Removing channels shortens a layer's time only where its time grows with the "
        "channels. Where a row above stays flat, pruning that layer's channels saves "
        "little time on this CPU. Only single convolutions were timed here, and on this "
        "machine only; which CPU unit makes int8 XNNPACK flat was not isolated, and no "
        "phone was measured.", ""])


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="28,112", help="input sides, comma-separated")
    p.add_argument("--channels", default="8,16,32,64,128")
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default=os.path.join(RESULTS, "litert_conv_scaling.md"))
    args = p.parse_args()
    args.sizes = [int(v) for v in args.sizes.split(",")]
    args.channels = [int(v) for v in args.channels.split(",")]
    results = measure(args.sizes, args.channels, args.runs, args.rounds)
    write_text(args.out, markdown(results, args))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

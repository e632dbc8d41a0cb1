"""Helpers the benchmark scripts share: where a run's numbers come from (date, machine,
versions, the command that reproduces it), progress lines, child processes, the
Fashion-MNIST data and training set-up of the standalone scripts, the interleaved
step-time loop of the *_step_time.py scripts, and writing a result file.
"""
import argparse
import contextlib
import datetime
import os
import platform
import shlex
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import tensorflow as tf

from keras_slim.compat import FLAVOUR, keras
from keras_slim.slimming.pipeline import default_compile
from keras_slim.zoo import data, models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository
RESULTS = os.path.join(ROOT, "benchmarks", "results")

# ---- provenance -------------------------------------------------------------------------


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


INT8_UNITS = {"amx_int8": "AMX-INT8", "avx512_vnni": "AVX512-VNNI", "avx_vnni": "AVX-VNNI",
              "asimddp": "NEON dot product", "i8mm": "Arm I8MM"}


def int8_units(cpuinfo="/proc/cpuinfo"):
    """The CPU's int8 matrix / dot-product units from /proc/cpuinfo, e.g. 'AMX-INT8,
    AVX512-VNNI'; 'none listed' if it names none, 'unknown' without /proc/cpuinfo."""
    try:
        with open(cpuinfo) as f:
            flags = set()
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags.update(line.split(":", 1)[1].split())
    except OSError:
        return "unknown"
    found = [label for flag, label in INT8_UNITS.items() if flag in flags]
    return ", ".join(found) if found else "none listed"


def _package(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def git_commit():
    """The checked-out commit, and whether tracked files other than the results (which the
    scripts themselves write) differ from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=False,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude)benchmarks/results"],
                               cwd=ROOT, check=False, capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}{' + uncommitted changes' if dirty else ''}" if commit else "unknown"


def command():
    """The command line of this run, as it reproduces it: `python -m benchmarks.<script>
    ARGS` when run as a module (the way the scripts are run), else `python ARGV`."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        head = ["-m", spec.name.removesuffix(".__main__")]
    else:
        head = sys.argv[:1]
    return "python " + " ".join(shlex.quote(a) for a in head + sys.argv[1:])


def machine():
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    text = f"{platform.machine()} {_cpu_model()}, {os.cpu_count()} cores"
    if load is not None:
        text += f", load average {load[0]:.1f} at the time"
    return text


def litert_versions():
    """One line: Python, TensorFlow, Keras flavour, ai-edge-litert and core count."""
    import ai_edge_litert
    litert = getattr(ai_edge_litert, "__version__", None)
    if litert is None:
        litert = version("ai-edge-litert")
    return (f"Python {platform.python_version()}, TensorFlow {tf.__version__}, "
            f"{FLAVOUR} {keras.__version__}, ai-edge-litert {litert}, "
            f"CPU cores {os.cpu_count()}")


def versions():
    return (f"{litert_versions()}, tf_keras {_package('tf_keras')}, tensorflow-model-"
            f"optimization {_package('tensorflow-model-optimization')}, numpy "
            f"{_package('numpy')}")


def stamp():
    """A markdown line placed under every table of the suite."""
    now = datetime.datetime.now().isoformat(timespec="seconds")
    return (f"_{now}; {machine()}; {versions()}; git {git_commit()}; command: "
            f"`{command()}`_")


def run_header():
    """The date / machine / versions and command bullets of a standalone script's report."""
    return [f"- date {datetime.date.today()}, {platform.machine()} CPU x{os.cpu_count()}, "
            f"TF {tf.__version__}, {FLAVOUR} {keras.__version__}",
            f"- command: `{command()}`"]


# ---- progress lines ---------------------------------------------------------------------

_START = time.time()


def log(message):
    """Print `[HH:MM:SS +elapsed] message` at once (the suite runs for a long time)."""
    elapsed = time.time() - _START
    print(f"[{time.strftime('%H:%M:%S')} +{elapsed / 60:5.1f} min] {message}", flush=True)


@contextlib.contextmanager
def timed(name, times):
    """Log the start and end of a part and store its wall time in times[name] (seconds)."""
    log(f"== {name}: start")
    start = time.time()
    try:
        yield
    finally:
        times[name] = time.time() - start
        log(f"== {name}: done in {times[name] / 60:.1f} min")


# ---- child processes --------------------------------------------------------------------


def module_command(script, *args):
    """argv running benchmarks/<script>.py as `python -m benchmarks.<script> ARGS`."""
    return [sys.executable, "-m", f"benchmarks.{script}", *args]


def child_env(**variables):
    """os.environ plus `variables`, with the repository first on PYTHONPATH, so that
    module_command works from any working directory (relative paths stay valid)."""
    env = dict(os.environ, **variables)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != ROOT]
    env["PYTHONPATH"] = os.pathsep.join([ROOT, *paths])
    return env


# ---- data and training ------------------------------------------------------------------


def fashion_mnist(quick, batch_size, seed=0, train_images=None):
    """(train split, train, test, info): all 60k training images, the first
    `train_images`, or 10k with --quick (shuffled with `seed`), and the 10k test images
    in batches of 512."""
    if quick and not train_images:
        train_images = 10000
    train_split = f"train[:{train_images}]" if train_images else "train"
    train, info = data.load("fashion_mnist", train_split, batch_size=batch_size, seed=seed)
    test, _ = data.load("fashion_mnist", "test", batch_size=512)
    return train_split, train, test, info


def build_model(name, info, **kwargs):
    """keras_slim.zoo.models.build for the shapes of a dataset's `info`."""
    return models.build(name, input_shape=info.input_shape, num_classes=info.num_classes,
                        **kwargs)


def cosine_compile(steps):
    """A compile_fn: SGD momentum 0.9, learning rate cosine-decayed to 0 over `steps`."""
    def compile_fn(model, learning_rate=0.05):
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps)
        model.compile(optimizer=keras.optimizers.SGD(schedule, momentum=0.9),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model
    return compile_fn


def accuracy(model, test):
    return float(model.evaluate(test, verbose=0, return_dict=True)["accuracy"])


# ---- step time --------------------------------------------------------------------------


def step_time_parser(doc, steps, rounds):
    """The flags of the *_step_time.py scripts: --model, --steps, --rounds, --batch_size."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--model", default="vgg_small")
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--batch_size", type=int, default=128)
    return parser


def random_batches(batch_size, steps, shape=(28, 28, 1)):
    """(x, y): `steps` batches of random images (28x28x1 by default) and labels of 10
    classes."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch_size * steps,) + tuple(shape)).astype("float32")
    return x, rng.integers(0, 10, len(x))


def step_times(runs, x, y, batch_size, rounds, cpu_times=None):
    """{name: [seconds per step of each round]} for runs {name: (model, callbacks)}.

    Every model is compiled (default_compile) and warmed up on 5 batches, then trains one
    epoch on (x, y) per round, the models interleaved so machine noise hits all alike.
    cpu_times: a dict to fill with the process CPU seconds per step of each round (all
    threads), which a VM's host throttling does not inflate as it does wall time.
    """
    steps = len(x) // batch_size
    for model, callbacks in runs.values():
        default_compile(model)
        model.fit(x[:batch_size * 5], y[:batch_size * 5], batch_size=batch_size,
                  epochs=1, verbose=0, callbacks=callbacks)  # trace and warm up
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, (model, callbacks) in runs.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False,
                      callbacks=callbacks)
            times[name].append((time.perf_counter() - start) / steps)
            if cpu_times is not None:
                cpu_times.setdefault(name, []).append(
                    (time.process_time() - cpu_start) / steps)
    return times


# ---- output -----------------------------------------------------------------------------


def write_text(path, text):
    """Write a result file, creating its directory if needed."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def publish(lines, path):
    """Print a report's lines and write them to `path`."""
    text = "\n".join(lines)
    print(text)
    write_text(path, text)

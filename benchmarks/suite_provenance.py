"""Where a table's numbers come from: date, machine, package versions, exact command."""
import datetime
import os
import platform
import shlex
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version

from export_bench import versions as litert_versions


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


def _git():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}{' + uncommitted changes' if dirty else ''}" if commit else "unknown"


def command():
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def machine():
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    text = f"{platform.machine()} {_cpu_model()}, {os.cpu_count()} cores"
    if load is not None:
        text += f", load average {load[0]:.1f} at the time"
    return text


def versions():
    return (f"{litert_versions()}, tf_keras {_package('tf_keras')}, tensorflow-model-"
            f"optimization {_package('tensorflow-model-optimization')}, numpy "
            f"{_package('numpy')}")


def stamp():
    """A markdown line placed under every table of the suite."""
    now = datetime.datetime.now().isoformat(timespec="seconds")
    return (f"_{now}; {machine()}; {versions()}; git {_git()}; command: "
            f"`{command()}`_")

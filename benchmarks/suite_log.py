"""Progress lines with wall-clock timestamps, and per-part timing, for benchmarks/suite.py."""
import contextlib
import time

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

"""What a latency table's timings belong to: the runtime and the processor.

Latency is a property of the hardware and of the kernels: a table measured with XNNPACK
on one CPU does not predict the builtin kernels, another thread count or another CPU.
"""
import hashlib

__all__ = ["runtime_info", "processor_info", "table_key"]

# ISA extensions that change which LiteRT kernels run (x86 and Arm).
_ISA = ("sse4_1", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
        "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "i8mm", "sve", "sve2",
        "bf16", "fphp")


def runtime_info(dtype="int8", threads=1, xnnpack=True):
    """{"litert", "delegate", "threads", "dtype"} of the local LiteRT."""
    try:
        from ai_edge_litert import __version__ as version
    except ImportError:  # pragma: no cover - ai_edge_litert is a dependency
        version = "unknown"
    return {"litert": str(version), "delegate": "xnnpack" if xnnpack else "builtin",
            "threads": int(threads), "dtype": str(dtype)}


def processor_info(cpuinfo="/proc/cpuinfo"):
    """{"model", "isa"} of this machine's CPU, from /proc/cpuinfo."""
    model, flags = "unknown", set()
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware", "cpu model") and model == "unknown":
                    model = value.strip()
                elif key in ("flags", "features"):
                    flags |= set(value.split())
    except OSError:
        pass
    return {"model": model, "isa": sorted(flags.intersection(_ISA))}


def table_key(runtime, processor):
    """One string per (runtime, processor): the cache file holds one table per key."""
    text = (f"{runtime['litert']}|{runtime['delegate']}|{runtime['threads']}|"
            f"{runtime['dtype']}|{processor['model']}|{','.join(processor['isa'])}")
    return hashlib.sha1(text.encode()).hexdigest()[:16]

"""The machine a benchmark runs on, in one line: CPU model, the instruction sets that decide
the speed of fp32 and bf16 (AVX2, AVX-512, AVX512-BF16, AMX), cores, torch threads, GPU, load.

Every benchmark prints it first and writes it into its JSON (``machine``); benchmarks/run_all.py
keys the sections of RESULTS.md by :func:`kind` (one section per machine kind).
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def instruction_sets(flags: list[str]) -> str:
    """``AVX2``, ``AVX-512``, ``AVX-512 + AMX`` ...: what the CPU has for matrix products."""
    if not flags:
        return "instruction sets unknown"
    parts = []
    if "avx512f" in flags:
        parts.append("AVX-512")
    elif "avx2" in flags:
        parts.append("AVX2")
    elif "asimd" in flags or "neon" in flags:
        parts.append("NEON")
    if "amx_bf16" in flags:
        parts.append("AMX")
    elif "avx512_bf16" in flags:
        parts.append("AVX512-BF16")
    if not any(f in flags for f in ("amx_bf16", "avx512_bf16")):
        parts.append("no bf16 instructions")
    return ", ".join(parts)


def gpu() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return "no GPU"


def kind() -> str:
    """The RESULTS.md section name of this machine: ``x86_64, 2 cores (AMD EPYC), AVX2, no
    bf16 instructions, no GPU``."""
    from mer_features.autotune import cpu_model_and_flags

    model, flags = cpu_model_and_flags()
    return (f"{platform.machine()}, {os.cpu_count()} cores ({model}), "
            f"{instruction_sets(flags)}, {gpu()}")


def describe() -> dict:
    """CPU model, flags that matter, torch version and threads, GPU, load average."""
    import torch

    from mer_features.autotune import _SHOWN_FLAGS, cpu_model_and_flags

    model, flags = cpu_model_and_flags()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {"kind": kind(), "cpu": model, "cores": os.cpu_count(),
            "flags": [f for f in _SHOWN_FLAGS if f in flags],
            "instruction_sets": instruction_sets(flags), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "gpu": gpu(), "load_average": load}


def line(info: dict | None = None) -> str:
    info = info or describe()
    load = "/".join(str(x) for x in info["load_average"]) or "?"
    return (f"machine: {info['cpu']}, {info['cores']} cores, {info['instruction_sets']} "
            f"(flags: {' '.join(info['flags']) or 'none of note'}); torch {info['torch']}, "
            f"{info['torch_threads']} threads; {info['gpu']}; load average {load}")


if __name__ == "__main__":
    print(line())

"""The machine a benchmark ran on, in the words its figures depend on: OpenVINO and llama.cpp
choose their kernels (and OpenVINO its default precision) by the CPU's vector extensions, and an
AVX2 machine and an AVX-512 one with the same cores gave different ratios."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def _first_cpu() -> dict[str, str]:
    """/proc/cpuinfo's fields for the first processor (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.split("\n\n")[0].splitlines():
        name, _, value = line.partition(":")
        fields[name.strip()] = value.strip()
    return fields


def described() -> str:
    """E.g. "x86_64 AMD EPYC, 2 cores, AVX-512 (BF16, VNNI)"."""
    cpu = _first_cpu()
    flags = set(cpu.get("flags", "").split())
    if "avx512f" in flags:
        named = (("avx512_bf16", "BF16"), ("avx512_vnni", "VNNI"), ("amx_tile", "AMX"))
        extras = [name for flag, name in named if flag in flags]
        vectors = "AVX-512" + (f" ({', '.join(extras)})" if extras else "")
    else:
        vectors = "AVX2" if "avx2" in flags else "no AVX2"
    name = f"{platform.machine()} {cpu.get('model name', '')}".strip()
    return f"{name}, {os.cpu_count()} cores, {vectors}"


def measured(date: object) -> str:
    """How a section's text starts: when, and on what."""
    return f"Measured {date} on {described()}."

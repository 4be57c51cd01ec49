"""The machine a benchmark ran on: CPUs, memory, load, versions; as a dictionary and as Markdown."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata

PACKAGES = ("vxlaninspect", "numpy", "numba", "dpkt", "scapy", "pyshark", "matplotlib")


def start_environment(numba_cache: str) -> dict[str, str]:
    """The environment for timing a start: numba's cache in ``numba_cache``, and Python's bytecode
    cache on, as an installed package has it (pip compiles a package's modules when it installs
    them; with ``PYTHONDONTWRITEBYTECODE`` set, every start would compile them again)."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "NUMBA_CACHE_DIR": numba_cache}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def tshark_version() -> str | None:
    try:
        done = subprocess.run(["tshark", "--version"], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return done.stdout.splitlines()[0] if done.returncode == 0 and done.stdout else None


def version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def describe() -> dict[str, object]:
    """What the machine is and how busy it is right now."""
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_bytes": memory_bytes(),
        "load_average": os.getloadavg(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": {package: version(package) for package in PACKAGES},
        "tshark": tshark_version(),
    }


def markdown(machine: dict[str, object], title: str, commands: list[str]) -> str:
    """A note of the machine for a results directory."""
    memory = machine["memory_bytes"]
    versions = ", ".join(f"{name} {value}" for name, value in machine["versions"].items() if value)
    lines = [
        f"# {title}",
        "",
        f"- CPUs: {machine['nproc']} usable of {machine['cpus']} ({machine['cpu_model']})",
        f"- memory: {memory / 2**30:.1f} GiB" if memory else "- memory: unknown",
        f"- kernel {machine['kernel']}, Python {machine['python']}",
        f"- {versions}",
        f"- {machine['tshark'] or 'tshark not installed'}",
        "",
        "Produced by:",
        "",
        *[f"    {command}" for command in commands],
        "",
    ]
    return "\n".join(lines)

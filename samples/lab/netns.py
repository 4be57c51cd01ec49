"""Network namespaces and the processes in them, each one remembered so it can be undone.

``Namespaces`` runs ``ip``, ``bridge`` and programs inside namespaces it created, with
every command and every wait bounded by a ``Deadline``; ``teardown`` stops the
processes and deletes the namespaces (and so every interface in them), however far
the set-up got.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class LabError(Exception):
    """A step of the lab failed; the message says which and why."""


@dataclass(frozen=True)
class Deadline:
    """A point in time (``time.monotonic``) that every wait of one run must respect."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self, what: str) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise LabError(f"timed out before {what}")
        return left


def existing_namespaces() -> list[str]:
    """Names of the namespaces ``ip netns`` knows."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=True)
    return [line.split()[0] for line in listing.stdout.splitlines() if line.strip()]


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


@dataclass
class Namespaces:
    """The namespaces and processes one run created, named ``<prefix>-...``."""

    prefix: str
    logs: Path
    deadline: Deadline
    created: list[str] = field(default_factory=list)
    processes: list[Process] = field(default_factory=list)

    def add(self, suffix: str) -> str:
        """Create namespace ``<prefix>-<suffix>`` with loopback up and IPv6 off; return its name."""
        name = f"{self.prefix}-{suffix}"
        self.created.append(name)
        self.run(["ip", "netns", "add", name])
        self.run(["ip", "netns", "exec", name, "sysctl", "-q", "-w",
                  "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
        self.ip(name, "link", "set", "lo", "up")
        return name

    def run(self, argv: Sequence[str]) -> str:
        """Run one command to completion within the deadline; its stdout, or ``LabError``."""
        command = " ".join(argv)
        try:
            done = subprocess.run(argv, capture_output=True, text=True,
                                  timeout=min(10.0, self.deadline.remaining(command)))
        except subprocess.TimeoutExpired:
            raise LabError(f"timed out: {command}") from None
        if done.returncode != 0:
            raise LabError(f"{command}: exit {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def ip(self, namespace: str, *args: str) -> str:
        return self.run(["ip", "-n", namespace, *args])

    def bridge(self, namespace: str, *args: str) -> str:
        return self.run(["bridge", "-n", namespace, *args])

    def execute(self, namespace: str, argv: Sequence[str]) -> str:
        return self.run(["ip", "netns", "exec", namespace, *argv])

    def spawn(self, name: str, namespace: str, argv: Sequence[str], env: dict[str, str] | None = None,
              stdin: bytes | None = None) -> Process:
        """Start a long-running program in ``namespace``; its stdout and stderr go to ``<logs>/<name>.log``."""
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                ["ip", "netns", "exec", namespace, *argv], stdin=subprocess.PIPE, stdout=out,
                stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, start_new_session=True,
            )
        process = Process(name, popen, log)
        self.processes.append(process)
        assert popen.stdin is not None
        try:
            with popen.stdin:
                popen.stdin.write(stdin or b"")
        except BrokenPipeError:
            pass  # it exited at once: wait_for reports that, with its log
        return process

    def wait_for(self, process: Process, text: str, step_timeout: float = 10.0) -> None:
        """Wait until ``text`` appears in the process's log; ``LabError`` if it exits or time runs out."""
        self.poll(f"{process.name} to print {text!r}", lambda: text in process.log.read_text(errors="replace"),
                  step_timeout, process)

    def poll(self, what: str, ready: Callable[[], bool], step_timeout: float, process: Process | None = None) -> None:
        limit = time.monotonic() + min(step_timeout, self.deadline.remaining(what))
        while not ready():
            if process is not None and process.popen.poll() is not None:
                raise LabError(f"{process.name} exited ({process.popen.returncode}) before {what}:\n{tail(process.log)}")
            if time.monotonic() > limit:
                detail = f":\n{tail(process.log)}" if process else ""
                raise LabError(f"timed out waiting for {what}{detail}")
            time.sleep(0.02)

    def stop(self, process: Process, sig: int = signal.SIGTERM, grace: float = 3.0) -> None:
        """Signal the process, then kill it if it has not exited within ``grace`` seconds."""
        if process.popen.poll() is None:
            process.popen.send_signal(sig)
            try:
                process.popen.wait(grace)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait(grace)

    def teardown(self) -> list[str]:
        """Stop every process, then delete every namespace created; return what could not be undone."""
        problems = []
        for process in reversed(self.processes):
            try:
                self.stop(process)
            except (OSError, subprocess.TimeoutExpired) as error:
                problems.append(f"{process.name}: {error}")
        try:
            existing = set(existing_namespaces())
        except (OSError, subprocess.SubprocessError) as error:
            return [*problems, f"ip netns list: {error}"]
        for name in reversed(self.created):
            if name not in existing:
                continue
            problems += _kill_members(name)
            deleted = subprocess.run(["ip", "netns", "delete", name], capture_output=True, text=True, timeout=10)
            if deleted.returncode != 0:
                problems.append(f"ip netns delete {name}: {deleted.stderr.strip()}")
        return problems


def _kill_members(namespace: str) -> list[str]:
    """Kill whatever still runs in ``namespace`` (a client that hung, say)."""
    pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True, timeout=10)
    problems = []
    for pid in pids.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
        except OSError as error:
            problems.append(f"kill {pid} in {namespace}: {error}")
    return problems


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log, indented, for an error message."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "    (no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])

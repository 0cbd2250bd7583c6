"""What both guest halves (guest_checks.py, cluster_guest.py) need to run checks in a VM that
nobody watches: polls with deadlines that say what they wait for, one JSON file per check,
and a budget per check, so that a check that hangs becomes a failed check that says where it
hung, and the checks after it still run.

The console (console.log on the host) gets a line when a wait starts and when it ends: when
the host has to kill a guest, the console's tail names the step it was in. The guest's stdout
and stderr reach the console through `tee`, which also writes them to the host's 9p share, so
a share that stops answering would silence them too: the heartbeat and the stack dumps write
to /dev/console themselves. On SIGTERM (the guest's `timeout` in vm-guest-run, before the
host's deadline) every thread's stack goes to the console. Python's standard library only.
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable


def now() -> float:
    return time.monotonic()


_doing = "starting"
_doing_since = time.monotonic()


def say(line: str) -> None:
    """A progress line on the guest's stdout (the console and stdout on the host)."""
    global _doing, _doing_since
    _doing = line.strip()
    _doing_since = now()
    print(f"[{now():8.1f}] {line}", flush=True)


def _console() -> Any:
    """/dev/console, written directly (not through vm-guest-run's tee and the 9p share), or
    stderr where there is none (a run outside the VM)."""
    try:
        return open(os.open("/dev/console", os.O_WRONLY | os.O_NOCTTY), "w", buffering=1)
    except OSError:
        return sys.stderr


def _vitals() -> dict[str, Any]:
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    return {"uptime": float(Path("/proc/uptime").read_text().split()[0]),
            "loadavg": Path("/proc/loadavg").read_text().strip(),
            "mem_available_mib": int(meminfo["MemAvailable"].split()[0]) // 1024,
            "doing": _doing, "doing_for": round(now() - _doing_since, 1)}


def start_heartbeat(path: Path, every: float = 10.0, say_every: float = 60.0, stuck_after: float = 300.0) -> None:
    """Every EVERY seconds, PATH (on the host's share) says the guest is alive: its uptime, load,
    available memory and the last progress line; every SAY_EVERY seconds a line on the console
    says the same. When the last progress line is older than STUCK_AFTER seconds, every thread's
    stack goes to the console, once per progress line. When the host had to kill the VM, these
    tell a guest that froze (no console lines) from a share that stopped answering (console
    lines go on, heartbeat.json stops) and from a step that waits, and where it waits. Two
    threads, so that a write to the share that never returns cannot silence the console."""
    console = _console()

    def to_console() -> None:
        dumped_for = None
        while True:
            try:
                record = _vitals()
                console.write(f"[{now():8.1f}] heartbeat: load {record['loadavg']}, "
                              f"{record['mem_available_mib']} MiB available; "
                              f"{record['doing_for']:.0f} s since: {record['doing']}\n")
                if record["doing_for"] > stuck_after and dumped_for != _doing_since:
                    dumped_for = _doing_since
                    console.write(f"[{now():8.1f}] heartbeat: no progress line for {stuck_after:.0f} s; every thread's stack:\n")
                    console.flush()
                    faulthandler.dump_traceback(file=console, all_threads=True)
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(say_every)

    def to_share() -> None:
        while True:
            try:
                temporary = path.with_name(f".{path.name}.tmp")
                temporary.write_text(json.dumps(_vitals()))
                temporary.rename(path)
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(every)

    threading.Thread(target=to_console, name="heartbeat-console", daemon=True).start()
    threading.Thread(target=to_share, name="heartbeat-share", daemon=True).start()


def wait_for(what: str, condition: Callable[[], Any], timeout: float, interval: float = 1.0) -> tuple[Any, float]:
    """Polls until condition() is truthy; returns (value, seconds waited). Raises naming `what`."""
    start = now()
    say(f"waiting up to {timeout:.0f} s for {what}")
    while True:
        value = condition()
        if value:
            waited = now() - start
            say(f"  ... {what}: after {waited:.1f} s")
            return value, waited
        if now() - start > timeout:
            say(f"  ... {what}: gave up after {timeout:.0f} s")
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(interval)


class CheckOverBudget(BaseException):
    """A check ran longer than its budget: raised where it was (the traceback says where). A
    BaseException, so that the checks' broad `except Exception` polls do not swallow it."""


def install_stack_dumps() -> None:
    """SIGTERM (vm-guest-run's timeout) prints every thread's stack to the console before the
    default action."""
    faulthandler.register(signal.SIGTERM, file=_console(), all_threads=True, chain=True)


class Results:
    """One JSON file per check in DIRECTORY: {check, seconds, error, facts}. A check's facts are
    written even when it raised or ran out of its budget."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def check(self, name: str, step: Callable[[dict[str, Any]], None], budget: float) -> dict[str, Any]:
        facts: dict[str, Any] = {}
        started = now()
        error = None

        def over_budget(signum: int, frame: Any) -> None:
            raise CheckOverBudget(f"check {name} ran out of its {budget:.0f} s budget")

        say(f"check {name}: start (budget {budget:.0f} s)")
        previous = signal.signal(signal.SIGALRM, over_budget)
        signal.setitimer(signal.ITIMER_REAL, budget)
        try:
            step(facts)
        except (Exception, CheckOverBudget) as exc:  # noqa: BLE001 - recorded for the host side to report
            error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        record = {"check": name, "seconds": round(now() - started, 1), "error": error, "facts": facts}
        (self.directory / f"{name}.json").write_text(json.dumps(record, indent=1, default=str))
        print(f"guest check {name}: {'error' if error else 'done'} in {record['seconds']} s", flush=True)
        if error:
            print(error, file=sys.stderr, flush=True)
        return record

#!/usr/bin/env python3
"""The VM suite's guest half: runs inside the VM (scripts/vm run), as root under a real
systemd on a cgroup v2 kernel, and writes one JSON file per check into --results. It
asserts nothing itself: it does the steps, waits on conditions with deadlines, and
records what it saw; tests/vm/test_vm.py judges. One boot serves every check, in order,
because each boot and each BPF load under TCG costs a minute or more.

Python's standard library only: the guest image has python3 and nothing else of ours.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from guest_support import Results, install_stack_dumps, now, start_heartbeat, wait_for

UNIT_DIR = Path("/etc/systemd/system")
CGROUP = Path("/sys/fs/cgroup")
LEAK = CGROUP / "memwarden-vm-leak"
HEALTHY = CGROUP / "memwarden-vm-healthy"
MIB = 1 << 20

# The throttle rule covers both test cgroups: only the leaking one may be throttled.
POLICY = """\
apiVersion: memwarden.io/v1
rules:
  - name: vm-throttle
    match:
      cgroup: /memwarden-vm-*
    budget: limit
    detectors:
      profile: accelerated
    response:
      mode: throttle
      throttle:
        fromTier: warning
        minSuspected: 5s
        interval: 2s
"""




def run(args: list[str], timeout: float = 600, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)


def unit_properties(unit: str = "memwarden.service") -> dict[str, str]:
    names = "ActiveState,SubState,Result,MainPID,ExecMainCode,ExecMainStatus,NRestarts,StatusText"
    out = run(["systemctl", "show", "-p", names, unit]).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def journal_events(unit: str = "memwarden.service") -> list[dict[str, Any]]:
    """The unit's stdout lines that are JSON objects (the agent's events and stats)."""
    out = run(["journalctl", "-u", unit, "-o", "cat", "--no-pager"]).stdout
    events = []
    for line in out.splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return events


def read(path: Path) -> str:
    return path.read_text().strip()


def memory_events(group: Path) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in read(group / "memory.events").splitlines())}



def check_kernel(facts: dict[str, Any]) -> None:
    facts["release"] = os.uname().release
    facts["pid1"] = read(Path("/proc/1/comm"))
    facts["cgroup2"] = (CGROUP / "cgroup.controllers").exists()
    facts["controllers"] = read(CGROUP / "cgroup.controllers").split() if facts["cgroup2"] else []
    facts["btf"] = Path("/sys/kernel/btf/vmlinux").exists()
    facts["uptime_seconds"] = float(read(Path("/proc/uptime")).split()[0])


def systemd_run(properties: list[str], command: list[str], timeout: float) -> dict[str, Any]:
    """The agent as a transient service with the given properties: exit status or signal,
    its stderr, how long it ran."""
    started = now()
    result = run(
        ["systemd-run", "--wait", "--pipe", "--collect", "--service-type=exec"]
        + [f"--property={p}" for p in properties] + ["--"] + command,
        timeout=timeout,
    )
    # systemd-run --wait says how the main process ended: "code=exited, status=2" or "code=killed, status=11/SEGV"
    ended = re.search(r"Main processes terminated with: code=(\w+)[/, ]+status=(\S+)", result.stderr)
    return {
        "systemd_run_exit": result.returncode,
        "code": ended.group(1) if ended else None,
        "status": ended.group(2) if ended else None,
        "stderr": result.stderr[-3000:],
        "stdout": result.stdout[-1000:],
        "seconds": round(now() - started, 1),
    }


def check_privileges(binary: str) -> Callable[[dict[str, Any]], None]:
    def step(facts: dict[str, Any]) -> None:
        agent = [binary, "run", "--kubernetes", "off", "--listen", "", "--duration", "1",
                 "--state-file", "/run/memwarden-privileges.json"]
        facts["perf_event_paranoid"] = int(read(Path("/proc/sys/kernel/perf_event_paranoid")))
        # without CAP_BPF/CAP_PERFMON (and not CAP_SYS_ADMIN) the agent must refuse at once
        facts["no_bpf"] = systemd_run(["CapabilityBoundingSet=CAP_SYS_RESOURCE"], agent, timeout=300)
        # the unit's first capability set: loaded, then could not attach (Debian's
        # perf_event_paranoid=3) and crashed with SIGSEGV; must be a clear exit 2
        facts["bpf_perfmon_only"] = systemd_run(
            ["CapabilityBoundingSet=CAP_BPF CAP_PERFMON CAP_SYS_RESOURCE"], agent, timeout=600)
        # enough capabilities for the preflight, but a seccomp filter that refuses
        # perf_event_open: the program loads and then cannot attach, the path that crashed
        facts["attach_denied"] = systemd_run(
            ["CapabilityBoundingSet=CAP_BPF CAP_PERFMON CAP_SYS_RESOURCE CAP_SYS_ADMIN",
             "SystemCallFilter=~perf_event_open", "SystemCallErrorNumber=EPERM"], agent, timeout=600)
    return step


def install_unit(binary: str, project: Path) -> None:
    shutil.copy(binary, "/usr/local/bin/memwarden")
    os.chmod("/usr/local/bin/memwarden", 0o755)
    shutil.copy(project / "deploy/systemd/memwarden.service", UNIT_DIR / "memwarden.service")
    drop_ins = UNIT_DIR / "memwarden.service.d"
    drop_ins.mkdir(exist_ok=True)
    throttle = project / "deploy/systemd/memwarden-throttle.conf"
    if throttle.exists():
        shutil.copy(throttle, drop_ins / "throttle.conf")
    # Test-only, in /run: under TCG the BPF verifier runs 10 to 50 times slower than on
    # hardware (60-90 s to load), past the unit's TimeoutStartSec=90s meant for real nodes.
    runtime = Path("/run/systemd/system/memwarden.service.d")
    runtime.mkdir(parents=True, exist_ok=True)
    (runtime / "vm-timeouts.conf").write_text("[Service]\nTimeoutStartSec=600s\n")
    subprocess.run(["systemctl", "daemon-reload"], check=True)


def make_groups() -> None:
    # the test groups hang off the root: its subtree must hand them the memory controller
    control = CGROUP / "cgroup.subtree_control"
    if "memory" not in read(control).split():
        control.write_text("+memory")
    for group in (LEAK, HEALTHY):
        group.mkdir(exist_ok=True)
        (group / "memory.max").write_text(str(384 * MIB))


def check_unit_start(binary: str, project: Path, state: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def step(facts: dict[str, Any]) -> None:
        install_unit(binary, project)
        Path("/etc/memwarden").mkdir(exist_ok=True)
        Path("/etc/memwarden/policy.yaml").write_text(POLICY)
        make_groups()
        started = now()
        # Type=notify: `systemctl start` returns once READY=1 arrived (or the start failed)
        result = run(["systemctl", "start", "memwarden.service"], timeout=700)
        facts["start_seconds"] = round(now() - started, 1)
        facts["systemctl_start_exit"] = result.returncode
        facts["systemctl_start_stderr"] = result.stderr[-2000:]
        facts["properties"] = unit_properties()
        state["agent_up"] = facts["properties"].get("ActiveState") == "active"
        if state["agent_up"]:
            # stats come every --stats-interval (5 s): wait for one rather than assume it
            _, facts["waited_for_stats_seconds"] = wait_for(
                "a stats line in the journal", lambda: any(e.get("type") == "stats" for e in journal_events()), 60, 0.25)
        events = journal_events()
        facts["event_types"] = sorted({e.get("type", "?") for e in events})
        facts["first_stats"] = next((e for e in events if e.get("type") == "stats"), None)
        facts["journal_tail"] = run(["journalctl", "-u", "memwarden", "-n", "40", "--no-pager"]).stdout[-6000:]
    return step


class Sampler:
    """memory.current, memory.high and memory.events of both groups, twice a second."""

    def __init__(self) -> None:
        self.samples: list[dict[str, Any]] = []

    def take(self) -> dict[str, Any]:
        sample = {
            "t": now(),
            "leak_current": int(read(LEAK / "memory.current")),
            "leak_high": read(LEAK / "memory.high"),
            "leak_events_high": memory_events(LEAK)["high"],
            "healthy_current": int(read(HEALTHY / "memory.current")),
            "healthy_high": read(HEALTHY / "memory.high"),
        }
        self.samples.append(sample)
        return sample

    def rate(self, start: float, end: float) -> float | None:
        """Growth of the leak group in bytes per second between two times (least squares)."""
        points = [(s["t"], s["leak_current"]) for s in self.samples if start <= s["t"] <= end]
        if len(points) < 4:
            return None
        n = len(points)
        mean_t = sum(p[0] for p in points) / n
        mean_v = sum(p[1] for p in points) / n
        var = sum((p[0] - mean_t) ** 2 for p in points)
        return sum((p[0] - mean_t) * (p[1] - mean_v) for p in points) / var if var else None


def check_throttle(leaksim: str, state: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def step(facts: dict[str, Any]) -> None:
        if not state.get("agent_up"):
            raise RuntimeError("memwarden.service is not active (see the unit-start check)")
        sampler = Sampler()
        healthy = subprocess.Popen(
            [leaksim, "stable", "--base", "64", "--noise", "1", "--duration", "0", "--cgroup", str(HEALTHY)],
            stdout=subprocess.DEVNULL)
        # 1 MiB/s of anonymous memory from 230 MiB: the warning tier (70 % of 384 MiB) in
        # about 40 s, memory.max in about 150 s if nothing slows it
        leak = subprocess.Popen(
            [leaksim, "steady", "--base", "230", "--rate", "1", "--duration", "0", "--cgroup", str(LEAK)],
            stdout=subprocess.DEVNULL)
        state["leaksims"] = [healthy, leak]
        started = now()
        facts["leak_pid"] = leak.pid

        def throttled() -> bool:
            sample = sampler.take()
            if leak.poll() is not None:
                raise RuntimeError(f"leaksim exited with {leak.returncode} before memory.high was written")
            return sample["leak_high"] != "max"

        try:
            _, waited = wait_for("memory.high of the leaking group to be written", throttled, 200, interval=0.5)
        finally:
            facts["events"] = [e for e in journal_events() if e.get("type", "").startswith(("response.", "budget.", "leak."))][-40:]
        first_write = now()
        facts["seconds_to_first_write"] = round(first_write - started, 1)
        facts["first_memory_high"] = sampler.samples[-1]["leak_high"]
        facts["usage_at_first_write"] = sampler.samples[-1]["leak_current"]
        facts["rate_before"] = sampler.rate(started + 5, first_write)
        events_at_write = sampler.samples[-1]["leak_events_high"]
        # Watch the throttled leak for a minute. memory.high is not a wall: the kernel lets
        # allocations past it and stalls the allocating task in proportion to the overage
        # (squared), so the leak first runs on at nearly full speed for 10-20 s and slows as
        # the overage builds up; its settled rate shows in the last 20 s.
        window = 60.0
        deadline = first_write + window
        while now() < deadline:
            sampler.take()
            if leak.poll() is not None:
                facts["leak_exit"] = leak.returncode
                break
            time.sleep(0.5)
        facts["rate_first_20s"] = sampler.rate(first_write, first_write + 20)
        facts["rate_after"] = sampler.rate(deadline - 20, deadline)
        facts["largest_overage"] = max(
            (s["leak_current"] - int(s["leak_high"]) for s in sampler.samples if s["leak_high"] != "max"), default=None)
        facts["memory_events_high_at_write"] = events_at_write
        facts["memory_events_high_after"] = sampler.samples[-1]["leak_events_high"]
        facts["memory_high_after_window"] = sampler.samples[-1]["leak_high"]
        facts["healthy_high_values"] = sorted({s["healthy_high"] for s in sampler.samples})
        facts["healthy_current_max"] = max(s["healthy_current"] for s in sampler.samples)
        facts["leak_events"] = memory_events(LEAK)
        facts["samples"] = [
            {**s, "t": round(s["t"] - started, 2)} for s in sampler.samples[:: max(1, len(sampler.samples) // 120)]
        ]
        facts["events"] = [e for e in journal_events() if e.get("type", "").startswith(("response.", "budget.", "leak."))][-40:]
    return step


def check_unit_stop(state: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def step(facts: dict[str, Any]) -> None:
        facts["was_active"] = unit_properties().get("ActiveState")
        started = now()
        result = run(["systemctl", "stop", "memwarden.service"], timeout=120)
        facts["stop_seconds"] = round(now() - started, 1)
        facts["systemctl_stop_exit"] = result.returncode
        facts["properties"] = unit_properties()
        facts["leak_memory_high"] = read(LEAK / "memory.high") if LEAK.exists() else None
        facts["healthy_memory_high"] = read(HEALTHY / "memory.high") if HEALTHY.exists() else None
        events = journal_events()
        facts["restores"] = [e for e in events if e.get("type") == "response.restore"]
        facts["last_types"] = [e.get("type") for e in events[-8:]]
        facts["journal_tail"] = run(["journalctl", "-u", "memwarden", "-n", "30", "--no-pager"]).stdout[-5000:]
        for process in state.get("leaksims", []):
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    return step


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--memwarden", required=True, help="the release binary (path in the project tree)")
    parser.add_argument("--leaksim", required=True)
    parser.add_argument("--results", required=True)
    parser.add_argument("--only", nargs="*", help="run only these checks (by hand)")
    args = parser.parse_args()
    project = Path(__file__).resolve().parents[2]
    results = Results(Path(args.results))
    state: dict[str, Any] = {}
    install_stack_dumps()
    start_heartbeat(Path(args.results).parent / "heartbeat.json")
    # each check's budget: a little over the sum of its own waits' deadlines, so that only a
    # hang (in a call without a deadline) meets it
    checks = [
        ("kernel", check_kernel, 60),
        ("privileges", check_privileges(args.memwarden), 1560),
        ("unit-start", check_unit_start(args.memwarden, project, state), 840),
        ("throttle", check_throttle(args.leaksim, state), 480),
        ("unit-stop", check_unit_stop(state), 240),
    ]
    for name, step, budget in checks:
        if args.only and name not in args.only:
            continue
        results.check(name, step, budget)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""In a Debian 6.1 guest with systemd as PID 1 and cgroup v2: the shipped unit under a real
systemd (notify, journal, clean stop), the agent's answer to missing privileges, and
memory.high throttling of a real anonymous leak. The guest half is guest_checks.py."""

from __future__ import annotations

import json
from typing import Any

from conftest import FIGURES, Guest

MIB = 1 << 20


def brief(facts: dict[str, Any]) -> str:
    return json.dumps(facts, indent=1, default=str)[:5000]


def test_guest_is_a_61_kernel_with_systemd_and_cgroup2_memory(guest: Guest) -> None:
    facts = guest.check("kernel")
    FIGURES["guest up after (guest uptime at the check)"] = f"{facts['uptime_seconds']:.1f} s"
    assert facts["release"].startswith("6.1."), facts
    assert facts["pid1"] == "systemd", facts
    assert facts["cgroup2"] and "memory" in facts["controllers"], facts
    assert facts["btf"], facts


def test_agent_without_bpf_capabilities_exits_2_and_says_what_is_missing(guest: Guest) -> None:
    run = guest.check("privileges")["no_bpf"]
    assert (run["code"], run["status"]) == ("exited", "2"), f"expected exit 2:\n{brief(run)}"
    assert "CAP_BPF" in run["stderr"] and "CAP_PERFMON" in run["stderr"], run["stderr"]


def test_agent_needs_sys_admin_where_perf_event_paranoid_is_3_and_says_so(guest: Guest) -> None:
    # the unit's first set (CAP_BPF CAP_PERFMON CAP_SYS_RESOURCE) made the agent SIGSEGV on
    # Debian's 6.1: perf_event_paranoid=3 refuses perf_event_open without CAP_SYS_ADMIN
    facts = guest.check("privileges")
    assert facts["perf_event_paranoid"] == 3, "the Debian guest kernel should default to perf_event_paranoid=3"
    run = facts["bpf_perfmon_only"]
    assert (run["code"], run["status"]) == ("exited", "2"), f"expected exit 2, not a crash:\n{brief(run)}"
    assert "CAP_SYS_ADMIN" in run["stderr"] and "perf_event_paranoid" in run["stderr"], run["stderr"]


def test_agent_that_cannot_attach_exits_2_instead_of_crashing(guest: Guest) -> None:
    # past the preflight, the program loads and attaching fails (seccomp refuses
    # perf_event_open): the error path that freed the ring buffer twice
    run = guest.check("privileges")["attach_denied"]
    assert (run["code"], run["status"]) == ("exited", "2"), f"expected exit 2, not a crash:\n{brief(run)}"
    assert "cannot attach" in run["stderr"] and "perf_event_open" in run["stderr"], run["stderr"]


def test_unit_starts_and_reports_ready(guest: Guest) -> None:
    facts = guest.check("unit-start")
    FIGURES["agent start under systemd (systemctl start until READY=1)"] = f"{facts['start_seconds']} s"
    properties = facts["properties"]
    assert facts["systemctl_start_exit"] == 0, brief(facts)
    # Type=notify: active/running only once READY=1 arrived
    assert (properties["ActiveState"], properties["SubState"]) == ("active", "running"), brief(facts)
    assert properties["NRestarts"] == "0", brief(facts)


def test_unit_writes_json_events_and_stats_to_the_journal(guest: Guest) -> None:
    facts = guest.check("unit-start")
    assert "agent.started" in facts["event_types"], brief(facts)
    stats = facts["first_stats"]
    assert stats is not None, f"no stats line in the journal:\n{brief(facts)}"
    assert stats["events"] > 0 and stats["processes_tracked"] > 0, stats


def test_throttle_writes_memory_high_on_the_leaking_cgroup(guest: Guest) -> None:
    facts = guest.check("throttle")
    FIGURES["throttle: first memory.high write after leak start"] = f"{facts['seconds_to_first_write']} s"
    written = int(facts["first_memory_high"])
    # written at or above what the group holds, never above memory.max (384 MiB)
    assert 100 * MIB <= written <= 384 * MIB, brief(facts)
    throttles = [e for e in facts["events"] if e["type"] == "response.throttle" and e.get("cgroup") == "/memwarden-vm-leak"]
    assert throttles, f"no response.throttle event for /memwarden-vm-leak:\n{brief(facts['events'])}"


def test_throttle_slows_the_leak(guest: Guest) -> None:
    facts = guest.check("throttle")
    before, after = facts["rate_before"], facts["rate_after"]
    FIGURES["throttle: leak rate before / first 20 s / 40-60 s after the write"] = (
        f"{(before or 0) / MIB:.2f} / {(facts['rate_first_20s'] or 0) / MIB:.2f} / {(after or 0) / MIB:.2f} MiB/s")
    FIGURES["throttle: largest overage of memory.current over memory.high"] = f"{(facts['largest_overage'] or 0) / MIB:.1f} MiB"
    FIGURES["throttle: memory.events high at write / 60 s later"] = (
        f"{facts['memory_events_high_at_write']} / {facts['memory_events_high_after']}")
    assert before is not None and before > 0.7 * MIB, f"the leak did not run at ~1 MiB/s before throttling:\n{brief(facts)}"
    assert after is not None and after < 0.5 * before, f"memory.high did not slow the leak ({before:.0f} -> {after} B/s)"
    assert facts["memory_events_high_after"] > facts["memory_events_high_at_write"], (
        "memory.events high did not rise: the kernel never throttled the group")
    assert "leak_exit" not in facts, f"the leak died under throttling (OOM?): {facts['leak_exit']}"


def test_throttle_leaves_the_healthy_cgroup_alone(guest: Guest) -> None:
    facts = guest.check("throttle")
    assert facts["healthy_high_values"] == ["max"], brief(facts)
    assert not [e for e in facts["events"] if e["type"] == "response.throttle" and e.get("cgroup") == "/memwarden-vm-healthy"]


def test_unit_stops_cleanly_and_restores_memory_high(guest: Guest) -> None:
    facts = guest.check("unit-stop")
    FIGURES["systemctl stop"] = f"{facts['stop_seconds']} s"
    properties = facts["properties"]
    assert facts["was_active"] == "active", brief(facts)
    assert facts["systemctl_stop_exit"] == 0, brief(facts)
    # Result=success: exit 0 within TimeoutStopSec (a kill, a crash or a non-zero exit
    # would say timeout, signal, core-dump or exit-code)
    assert (properties["Result"], properties["ExecMainStatus"]) == ("success", "0"), brief(facts)
    assert "Deactivated successfully" in facts["journal_tail"], facts["journal_tail"]
    assert "agent.stopping" in facts["last_types"], facts["last_types"]
    assert facts["leak_memory_high"] == "max", f"memory.high not restored on stop:\n{brief(facts)}"
    assert any(e.get("reason") == "agent_stopping" for e in facts["restores"]), brief(facts)

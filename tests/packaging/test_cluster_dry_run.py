"""Server-side dry-run apply of every rendered manifest against a real kube-apiserver
(scripts/test-cluster: etcd + kube-apiserver on loopback). The API server runs its own
validation, defaulting and admission on each object and persists nothing."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from conftest import NAMESPACE, ROOT, VALUE_SETS, manifests, require

FIELD_MANAGER = "memwarden-chart-test"

# Minimal CRDs for the prometheus-operator kinds the chart renders (the real ones are
# large; the dry run checks the chart's objects, not the operator's schema).
CRDS = [
    {"kind": "ServiceMonitor", "plural": "servicemonitors"},
    {"kind": "PrometheusRule", "plural": "prometheusrules"},
]

PLURALS = {
    "ServiceAccount": "serviceaccounts",
    "ConfigMap": "configmaps",
    "Service": "services",
    "DaemonSet": "daemonsets",
    "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings",
    "ServiceMonitor": "servicemonitors",
    "PrometheusRule": "prometheusrules",
    "NetworkPolicy": "networkpolicies",
}
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding"}


class Cluster:
    def __init__(self, env: dict[str, str]) -> None:
        self.api = env["KUBE_API"].rstrip("/")
        self.session = requests.Session()
        # no environment: REQUESTS_CA_BUNDLE would override the cluster's CA, a proxy its loopback address
        self.session.trust_env = False
        self.session.verify = env["KUBE_CA_FILE"]
        self.session.headers["Authorization"] = "Bearer " + Path(env["KUBE_TOKEN_FILE"]).read_text().strip()

    def path(self, manifest: dict[str, Any]) -> str:
        api_version = manifest["apiVersion"]
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        plural = PLURALS[manifest["kind"]]
        name = manifest["metadata"]["name"]
        if manifest["kind"] in CLUSTER_SCOPED:
            return f"{base}/{plural}/{name}"
        namespace = manifest["metadata"].get("namespace", NAMESPACE)
        return f"{base}/namespaces/{namespace}/{plural}/{name}"

    def apply(self, manifest: dict[str, Any], dry_run: bool = True) -> requests.Response:
        params = {"fieldManager": FIELD_MANAGER, "force": "true"}
        if dry_run:
            params["dryRun"] = "All"
        return self.session.patch(
            self.api + self.path(manifest),
            params=params,
            data=json.dumps(manifest),
            headers={"Content-Type": "application/apply-patch+yaml"},
            timeout=30,
        )

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.api + path, timeout=30)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    script = Path(os.environ.get("MEMWARDEN_TEST_CLUSTER", ROOT / "scripts" / "test-cluster"))
    require(script.is_file(), f"{script} is missing (the identity work's test cluster)")
    state = Path(tempfile.mkdtemp(prefix="memwarden-chart-cluster-")) / "state"
    try:
        started = subprocess.run([str(script), "start", str(state)], capture_output=True, text=True, timeout=1800)
        assert started.returncode == 0, f"test-cluster start failed:\n{started.stderr[-4000:]}"
        env = dict(line.split("=", 1) for line in (state / "env").read_text().splitlines() if "=" in line)
        cluster = Cluster(env)
        # the release namespace and the operator's CRDs are created for real: dry-run objects
        # need an existing namespace and a known kind
        namespace = cluster.session.post(
            cluster.api + "/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}, timeout=30
        )
        assert namespace.status_code == 201, namespace.text
        for crd in CRDS:
            created = cluster.session.post(cluster.api + "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd_manifest(**crd), timeout=30)
            assert created.status_code == 201, created.text
        for crd in CRDS:
            wait_for(cluster, f"/apis/monitoring.coreos.com/v1/namespaces/{NAMESPACE}/{crd['plural']}", f"CRD {crd['kind']} established")
        yield cluster
    finally:
        stopped = subprocess.run([str(script), "stop", str(state)], capture_output=True, text=True, timeout=300)
        assert stopped.returncode == 0, stopped.stderr
        state.parent.rmdir()


def crd_manifest(kind: str, plural: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": kind + "List"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }


def wait_for(cluster: Cluster, path: str, what: str, seconds: float = 60) -> None:
    """Polls `path` until it answers 200 (deadline `seconds`): a new CRD is served a moment after it is created."""
    import time

    deadline = time.monotonic() + seconds
    while True:
        answer = cluster.get(path)
        if answer.status_code == 200:
            return
        assert time.monotonic() < deadline, f"{what}: {path} still answers {answer.status_code} after {seconds} s"
        time.sleep(0.2)


def subset(expected: Any, actual: Any, where: str = "") -> list[str]:
    """Where `actual` lacks or changes something of `expected` (the server may add defaults)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: {actual!r} is not an object"]
        problems = []
        for key, value in expected.items():
            if key in actual:
                problems += subset(value, actual[key], f"{where}.{key}")
            elif value not in (False, 0, "", [], {}, None):  # the API omits empty and zero values
                problems.append(f"{where}.{key}: dropped by the server")
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{where}: {actual!r} != {expected!r}"]
        return [p for i, (e, a) in enumerate(zip(expected, actual)) for p in subset(e, a, f"{where}[{i}]")]
    if expected != actual and str(expected) != str(actual):
        return [f"{where}: {actual!r} != {expected!r}"]
    return []


@pytest.mark.parametrize("name", VALUE_SETS)
def test_server_side_dry_run_apply(cluster: Cluster, name: str) -> None:
    objects = manifests(VALUE_SETS[name])
    assert objects
    for manifest in objects:
        label = f"{manifest['kind']}/{manifest['metadata']['name']}"
        answer = cluster.apply(manifest)
        assert answer.status_code in (200, 201), f"{label}: {answer.status_code} {answer.text[:2000]}"
        returned = answer.json()
        # the server kept every field the chart set: nothing unknown to it was pruned
        lost = subset({k: v for k, v in manifest.items() if k != "metadata"}, returned)
        lost += subset(manifest["metadata"].get("labels", {}), returned["metadata"].get("labels", {}), ".metadata.labels")
        assert lost == [], f"{label}: {lost}"
        # and persisted nothing
        assert cluster.get(cluster.path(manifest)).status_code == 404, f"{label} exists after a dry run"


def test_server_rejects_a_broken_daemonset(cluster: Cluster) -> None:
    """The dry run is a real check: the same DaemonSet with a port out of range is refused."""
    daemonset = next(m for m in manifests() if m["kind"] == "DaemonSet")
    daemonset["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = 70000
    answer = cluster.apply(daemonset)
    assert answer.status_code == 422, answer.text[:500]
    assert "containerPort" in answer.text

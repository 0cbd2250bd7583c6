"""A real node: the Helm chart's DaemonSet pod under a kubelet in a Debian 6.1 guest, its
/metrics, a per-pod leak.suspected in the agent's pod log, memory.high throttling through the
chart's values, and the restore on uninstall. One boot (MEMWARDEN_VM_PROFILE=cluster);
the guest half is cluster_guest.py, which says how the node is put together.

Host side: the kubelet and kube-apiserver built from Debian's kubernetes source
(scripts/kube-build, cached), the images built without a Docker daemon (scripts/oci-image),
etcd + kube-apiserver on the host's loopback (scripts/test-cluster; the guest reaches them as
10.0.2.2), the chart rendered with the Helm v4 SDK (it renders; it does not install: the guest
applies the manifests with server-side apply)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import FIGURES, GUEST_TIMEOUT, ROOT, Guest, require

CHART = ROOT / "charts" / "memwarden"
NAMESPACE = "memwarden"
RELEASE = "mw"
IMAGE = {"repository": "localhost/memwarden/memwarden", "tag": "test", "pullPolicy": "Never"}
# helm upgrade's values: a throttle rule for the leaking pod's namespace
THROTTLE_VALUES: dict[str, Any] = {
    "image": IMAGE,
    "features": {"throttle": True},
    "policy": {
        "apiVersion": "memwarden.io/v1",
        "kind": "MemwardenPolicy",
        "defaults": {"response": {"mode": "observe"}},
        "rules": [{
            "name": "leaky-throttle",
            "match": {"namespace": "leaky"},
            "budget": "limit",
            "detectors": {"profile": "accelerated"},
            "response": {"mode": "throttle", "throttle": {"fromTier": "warning", "minSuspected": "5s", "interval": "2s"}},
        }],
    },
}
CLUSTER_TIMEOUT = int(os.environ.get("MEMWARDEN_VM_CLUSTER_TIMEOUT", "2400"))
MIB = 1 << 20


def timed(name: str, function: Any, *args: Any) -> Any:
    started = time.monotonic()
    try:
        return function(*args)
    finally:
        FIGURES.setdefault("cluster phases", []).append(f"cluster: phase {name}: {time.monotonic() - started:.1f} s")


def run(args: list[str], timeout: float = 3600) -> str:
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    for line in result.stderr.splitlines():
        if " phase " in line:
            FIGURES.setdefault("cluster phases", []).append(line)
    assert result.returncode == 0, f"{' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}"
    return result.stdout.strip().splitlines()[-1]


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    import helm_python as helm
    import yaml

    with helm.Chart.load(str(CHART)) as chart:
        rendered = chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    order = ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ConfigMap", "Service", "DaemonSet"]
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects += [d for d in yaml.safe_load_all(text) if d]
    return sorted(objects, key=lambda o: order.index(o["kind"]) if o["kind"] in order else len(order))


@pytest.fixture(scope="module")
def control_plane() -> Iterator[dict[str, str]]:
    require(shutil.which("etcd") is not None, "etcd is not installed (Debian package etcd-server; scripts/setup-tests)")
    state = Path(tempfile.mkdtemp(prefix="memwarden-vm-cluster-")) / "state"
    script = ROOT / "scripts" / "test-cluster"
    try:
        # the ServiceAccount admission plugin on: the agent's pod gets its token mounted
        # (the guest creates the token Secret the missing token controller would)
        os.environ["KUBE_APISERVER_SERVICE_ACCOUNTS"] = "on"
        try:
            timed("control-plane", run, [str(script), "start", str(state)], 900)
        finally:
            del os.environ["KUBE_APISERVER_SERVICE_ACCOUNTS"]
        env = dict(line.split("=", 1) for line in (state / "env").read_text().splitlines() if "=" in line)
        yield env
    finally:
        subprocess.run([str(script), "stop", str(state)], capture_output=True, timeout=120)
        shutil.rmtree(state.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(binaries: dict[str, Path], control_plane: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Guest:
    require(os.geteuid() == 0, "the cluster VM needs root (mmdebstrap, qemu's 9p shares)")
    for tool, package in (("qemu-system-x86_64", "qemu-system-x86"), ("mmdebstrap", "mmdebstrap"), ("go", "golang-go")):
        require(shutil.which(tool) is not None, f"{tool} is not installed (Debian package {package}; scripts/setup-tests installs it)")
    kube_bin = Path(timed("kube-build", run, [str(ROOT / "scripts" / "kube-build"), "kubelet"], 5400)).parent
    images = ROOT / ".build" / "oci"
    images.mkdir(parents=True, exist_ok=True)
    timed("image-memwarden", run, [str(ROOT / "scripts" / "oci-image"), "memwarden", str(images / "memwarden.tar"),
                                   "--binary", str(binaries["memwarden"])], 1200)
    timed("image-leaksim", run, [str(ROOT / "scripts" / "oci-image"), "leaksim", str(images / "leaksim.tar"),
                                 "--binary", str(binaries["leaksim"])])
    timed("image-pause", run, [str(ROOT / "scripts" / "oci-image"), "pause", str(images / "pause.tar")])

    out = tmp_path_factory.mktemp("vm-cluster")
    given = out / "input"
    given.mkdir()
    api_port = int(control_plane["KUBE_API"].rsplit(":", 1)[1])
    shutil.copy(control_plane["KUBE_CA_FILE"], given / "ca.crt")
    (given / "settings.json").write_text(json.dumps({
        "api_port": api_port, "token": Path(control_plane["KUBE_TOKEN_FILE"]).read_text().strip(),
        "ca": Path(control_plane["KUBE_CA_FILE"]).read_text(), "namespace": NAMESPACE, "port": 9808,
        "images": "/mnt/project/" + str(images.relative_to(ROOT)),
    }))
    (given / "chart-defaults.json").write_text(json.dumps(timed("render", render, {"image": IMAGE})))
    (given / "chart-throttle.json").write_text(json.dumps(render(THROTTLE_VALUES)))

    started = time.monotonic()
    env = {**os.environ, "MEMWARDEN_VM_PROFILE": "cluster"}
    process = subprocess.Popen(
        [str(ROOT / "scripts" / "vm"), "run", "--timeout", str(CLUSTER_TIMEOUT), "--memory", "3584", "--out", str(out),
         "--share", f"kube={kube_bin}", "--",
         "python3", "tests/vm/cluster_guest.py", "--input", "/mnt/out/input", "--results", "/mnt/out/results"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        _, stderr = process.communicate(timeout=CLUSTER_TIMEOUT + 900)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, stderr = process.communicate()
        stderr += f"\n(killed: scripts/vm ran longer than {CLUSTER_TIMEOUT + 900} s)"
    FIGURES["cluster scripts/vm run"] = f"{time.monotonic() - started:.0f} s, exit {process.returncode}"
    FIGURES.setdefault("cluster phases", []).extend(line for line in stderr.splitlines() if line.startswith("vm: phase"))
    return Guest(out, process.returncode, stderr)


def brief(facts: dict[str, Any]) -> str:
    return json.dumps(facts, indent=1, default=str)[:6000]


def test_kubelet_registers_the_node_and_it_becomes_ready(cluster: Guest) -> None:
    facts = cluster.check("node")
    FIGURES["cluster node phases (guest)"] = json.dumps(facts["phases"])
    assert {"localhost/memwarden/memwarden:test", "localhost/memwarden/leaksim:test", "localhost/memwarden/pause:test"} <= set(facts["images"])


def test_chart_pod_becomes_ready_least_privileged_and_serves_metrics(cluster: Guest) -> None:
    facts = cluster.check("agent-ready")
    FIGURES["install to agent pod Ready"] = f"{facts['seconds_to_ready']} s"
    context = facts["security_context"]
    assert context["privileged"] is False and context["allowPrivilegeEscalation"] is False, brief(context)
    assert context["capabilities"] == {"drop": ["ALL"], "add": ["BPF", "PERFMON"]}, brief(context)
    assert facts["metrics_sample"], f"/metrics answered without memwarden_ metrics:\n{brief(facts)}"


def test_leak_suspected_in_the_agent_pod_log_names_the_pod(cluster: Guest) -> None:
    facts = cluster.check("throttle")
    FIGURES["leak pod start to leak.suspected"] = f"{facts['seconds_to_leak_suspected']} s"
    event = facts["leak_suspected"]
    assert (event.get("namespace"), event.get("pod"), event.get("container")) == ("leaky", "leak", "sim"), brief(event)
    assert event.get("pod_uid") == facts["pod_uids"]["leak"], brief(event)
    assert not facts["healthy_events"], f"the healthy pod got events:\n{brief(facts['healthy_events'])}"


def test_the_leak_gets_a_forecast_in_the_pod_log(cluster: Guest) -> None:
    # the leak's events in the agent's log (leak.suspected, then leak.updated) carry
    # seconds_to_limit, the time left before the pod's memory limit
    facts = cluster.check("throttle")
    forecasts = [e for e in facts["leak_events"] if "seconds_to_limit" in e]
    FIGURES["first forecast"] = (f"{forecasts[0]['type']}: seconds_to_limit {forecasts[0]['seconds_to_limit']}"
                                 if forecasts else "none")
    assert forecasts, f"no leak event for the pod carries seconds_to_limit:\n{brief(facts['leak_events'])}"


def test_throttle_through_the_chart_writes_memory_high_and_slows_the_leak(cluster: Guest) -> None:
    facts = cluster.check("throttle")
    before, after = facts["rate_before"], facts["rate_after"]
    FIGURES["throttle"] = (f"ratio {before / after:.1f}x; " if before and after else "") + (f"first memory.high write {facts['seconds_to_first_write']} s after the leak started; "
                           f"growth {before} MiB/s before, {after} MiB/s in the last 20 s of a minute after")
    assert facts["memory_events_high_after"] > facts["memory_events_high_at_write"], brief(facts)
    assert before and after is not None and after * 5 <= before, f"the leak did not slow 5x: {before} -> {after} MiB/s"
    assert facts["healthy_high_values"] == ["max"], brief(facts)


def test_agent_pod_without_bpf_capabilities_exits_2_and_crash_loops_with_its_reason(cluster: Guest) -> None:
    facts = cluster.check("no-bpf")
    assert facts["exit_code"] == 2, brief(facts)
    assert "CAP_BPF" in facts["log"], f"the pod log does not name the missing capability:\n{facts['log']}"


def test_uninstall_restores_memory_high(cluster: Guest) -> None:
    facts = cluster.check("uninstall")
    assert set(facts["leak_memory_high"].values()) <= {"max", None}, brief(facts)
    assert facts["restores"], f"the agent's log had no response.restore before the pod went:\n{brief(facts)}"
    assert facts["healthy_memory_high"] in ("max", None), brief(facts)

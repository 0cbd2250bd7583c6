"""The Helm chart, rendered offline with the Helm v4 SDK and checked against the
Kubernetes schemas of several versions and against what the agent needs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from conftest import CHART, NAMESPACE, ROOT, VALUE_SETS, find, manifests, one, render, require, run_flags

KUBERNETES_VERSIONS = ["1.27", "1.30", "1.33"]
# prometheus-operator kinds: no schema in kubernetes-validate, checked below instead
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(objects, "DaemonSet")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["memwarden"]
    return pod["containers"][0]


def mounts(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in container(objects)["volumeMounts"]}


def volumes(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in one(objects, "DaemonSet")["spec"]["template"]["spec"]["volumes"]}


@pytest.mark.parametrize("name", VALUE_SETS)
def test_lint_is_clean(name: str) -> None:
    report = helm.lint(str(CHART), VALUE_SETS[name], strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", VALUE_SETS)
def test_manifests_validate_against_kubernetes(name: str, version: str) -> None:
    objects = manifests(VALUE_SETS[name])
    assert any(o["kind"] == "DaemonSet" for o in objects)
    for manifest in objects:
        if manifest["kind"] in CUSTOM_KINDS:
            continue
        try:
            # strict: a field the API does not know is an error, not silently dropped
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{manifest['kind']}/{manifest['metadata'].get('name')} on {version}: {error.message} at {list(error.path)}")


def test_defaults_are_least_privilege() -> None:
    objects = manifests()
    agent = container(objects)
    security = agent["securityContext"]
    assert security["privileged"] is False
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["BPF", "PERFMON"]}
    pod = one(objects, "DaemonSet")["spec"]["template"]["spec"]
    for shared in ("hostPID", "hostNetwork", "hostIPC"):
        assert not pod.get(shared), shared
    read_only = {path: m.get("readOnly", False) for path, m in mounts(objects).items()}
    assert read_only == {
        "/etc/memwarden": True,
        "/host/proc": True,
        "/host/sys/fs/cgroup": True,
        "/sys/kernel/btf": True,
        "/sys/kernel/tracing": True,
        "/var/lib/memwarden": False,
        "/tmp": False,
    }
    assert volumes(objects)["state"]["hostPath"] == {"path": "/var/lib/memwarden", "type": "DirectoryOrCreate"}
    assert volumes(objects)["tmp"]["emptyDir"]["medium"] == "Memory"


@pytest.mark.parametrize(
    ("values", "capabilities", "writable_cgroup"),
    [
        ({}, ["BPF", "PERFMON"], None),
        ({"kernel": {"legacyMemlock": True}}, ["BPF", "PERFMON", "SYS_RESOURCE"], None),
        ({"kernel": {"restrictedPerfEvents": True}}, ["BPF", "PERFMON", "SYS_ADMIN"], None),
        ({"features": {"throttle": True}}, ["BPF", "PERFMON"], "/kubepods.slice"),
        ({"features": {"throttle": True, "throttleSubtree": "/kubepods"}}, ["BPF", "PERFMON"], "/kubepods"),
    ],
)
def test_privileges_follow_features(values: dict[str, Any], capabilities: list[str], writable_cgroup: str | None) -> None:
    objects = manifests(values)
    agent = container(objects)
    assert agent["securityContext"]["capabilities"]["add"] == capabilities
    # the host's cgroupfs is read-only whatever the features; throttling adds only the pods'
    # subtree read-write, and tells the agent to refuse targets outside it
    assert mounts(objects)["/host/sys/fs/cgroup"]["readOnly"] is True
    writable = {path: m for path, m in mounts(objects).items() if path.startswith("/host/sys/fs/cgroup/")}
    flags = [a for a in agent["args"] if a.startswith("--writable-cgroup")]
    if writable_cgroup is None:
        assert writable == {} and flags == [] and "cgroup-writable" not in volumes(objects)
    else:
        mount = writable["/host/sys/fs/cgroup" + writable_cgroup]
        assert mount["readOnly"] is False and list(writable) == ["/host/sys/fs/cgroup" + writable_cgroup]
        assert volumes(objects)[mount["name"]]["hostPath"] == {"path": "/sys/fs/cgroup" + writable_cgroup, "type": "Directory"}
        assert flags == [f"--writable-cgroup={writable_cgroup}"]
    # everything else on the host stays read-only whatever the features
    for path in ("/host/proc", "/sys/kernel/btf", "/sys/kernel/tracing", "/etc/memwarden"):
        assert mounts(objects)[path]["readOnly"] is True, path


@pytest.mark.parametrize(
    ("features", "rules"),
    [
        ({}, [("", ["pods"], ["get", "list", "watch"])]),
        ({"annotations": True}, [("", ["pods"], ["get", "list", "watch", "patch"])]),
        (
            {"events": True},
            [("", ["pods"], ["get", "list", "watch"]), ("events.k8s.io", ["events"], ["create", "patch"])],
        ),
        (
            {"events": True, "annotations": True},
            [("", ["pods"], ["get", "list", "watch", "patch"]), ("events.k8s.io", ["events"], ["create", "patch"])],
        ),
    ],
)
def test_cluster_role_grants_exactly_the_enabled_features(features: dict[str, bool], rules: list[tuple[str, list[str], list[str]]]) -> None:
    objects = manifests({"features": features})
    role = one(objects, "ClusterRole")
    rendered = [(r["apiGroups"][0], r["resources"], r["verbs"]) for r in role["rules"]]
    assert rendered == rules
    assert all(len(r["apiGroups"]) == 1 for r in role["rules"])
    binding = one(objects, "ClusterRoleBinding")
    account = one(objects, "ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}]


@pytest.mark.parametrize("subtree", ["kubepods.slice", "/kubepods/../system.slice", "/", "/kube pods"])
def test_a_throttle_subtree_that_is_not_a_clean_absolute_cgroup_path_is_refused(subtree: str) -> None:
    with pytest.raises(Exception, match="throttleSubtree"):
        manifests({"features": {"throttle": True, "throttleSubtree": subtree}})


@pytest.mark.parametrize(("api_listen", "flag"), [("0.0.0.0:9809", "--listen=0.0.0.0:9809"), ("", "--listen=")])
def test_the_api_listens_on_loopback_unless_told_otherwise(api_listen: str, flag: str) -> None:
    # the pod's address gets /metrics and the probes only (--metrics-listen); the API that
    # names every tenant's pods stays on loopback by default
    assert "--listen=127.0.0.1:9809" in container(manifests())["args"]
    args = container(manifests({"agent": {"apiListen": api_listen}}))["args"]
    assert flag in args and "--metrics-listen=0.0.0.0:9808" in args


@pytest.mark.parametrize("api_listen", ["localhost:9809", "127.0.0.1", "0.0.0.0:9809 --dry-run"])
def test_an_api_listen_that_is_not_addr_port_is_refused(api_listen: str) -> None:
    with pytest.raises(Exception, match="apiListen"):
        manifests({"agent": {"apiListen": api_listen}})


@pytest.mark.parametrize(
    ("values", "peers"),
    [
        ({"networkPolicy": {"enabled": False, "from": []}}, None),
        ({"networkPolicy": {"enabled": True, "from": []}}, []),
        (
            {"networkPolicy": {"enabled": True, "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}},
            [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        ),
    ],
)
def test_network_policy_opens_only_the_metrics_port(values: dict[str, Any], peers: list[dict[str, Any]] | None) -> None:
    objects = manifests(values)
    if peers is None:
        assert find(objects, "NetworkPolicy") == []
        return
    policy = one(objects, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["podSelector"]["matchLabels"] == one(objects, "DaemonSet")["spec"]["selector"]["matchLabels"]
    [rule] = policy["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert rule.get("from", []) == peers


def test_without_kubernetes_there_is_no_role_and_no_token() -> None:
    objects = manifests(VALUE_SETS["no-kubernetes"])
    assert find(objects, "ClusterRole") == [] and find(objects, "ClusterRoleBinding") == []
    assert find(objects, "ServiceAccount") == [] and find(objects, "Service") == []
    pod = one(objects, "DaemonSet")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "default"
    assert "--kubernetes=off" in container(objects)["args"]


def test_agent_arguments_environment_and_probes() -> None:
    objects = manifests({"agent": {"port": 9911, "logLevel": "debug"}})
    agent = container(objects)
    assert agent["args"] == [
        "run",
        "--policy=/etc/memwarden/policy.yaml",
        "--listen=127.0.0.1:9809",
        "--metrics-listen=0.0.0.0:9911",
        "--host-proc=/host/proc",
        "--host-cgroup=/host/sys/fs/cgroup",
        "--state-file=/var/lib/memwarden/state.json",
        "--kubernetes=auto",
        "--log-level=debug",
    ]
    assert agent["env"][0] == {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
    assert agent["ports"] == [{"name": "http", "containerPort": 9911, "protocol": "TCP"}]
    assert agent["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert agent["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert set(agent["resources"]) == {"requests", "limits"}
    pod = one(objects, "DaemonSet")["spec"]["template"]["spec"]
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["priorityClassName"] == "system-node-critical"
    service = one(objects, "Service")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["ports"][0]["port"] == 9911


@pytest.mark.parametrize("name", VALUE_SETS)
def test_policy_is_a_directory_mount_never_a_sub_path(name: str) -> None:
    objects = manifests(VALUE_SETS[name])
    for manifest in objects:
        text = json.dumps(manifest)
        assert "subPath" not in text, f"{manifest['kind']} uses subPath: ConfigMap updates would never arrive"
    policy_mount = mounts(objects)["/etc/memwarden"]
    assert policy_mount["name"] == "policy" and set(policy_mount) == {"name", "mountPath", "readOnly"}
    config_map = volumes(objects)["policy"]["configMap"]
    # whatever the key in the ConfigMap, the agent reads /etc/memwarden/policy.yaml
    assert [item["path"] for item in config_map["items"]] == ["policy.yaml"]


def test_inline_policy_round_trips_into_the_config_map() -> None:
    policy = {
        "apiVersion": "memwarden.io/v1",
        "kind": "MemwardenPolicy",
        "defaults": {"response": {"mode": "annotate"}, "tiers": {"warning": "75%"}},
        "rules": [{"name": "web", "match": {"namespace": "shop", "container": ["web", "nginx"]}, "budget": "1Gi"}],
        "outputs": {"kubernetes": {"annotations": True}},
    }
    objects = manifests({"policy": policy, "features": {"annotations": True}})
    config_map = one(objects, "ConfigMap")
    assert yaml.safe_load(config_map["data"]["policy.yaml"]) == policy
    assert volumes(objects)["policy"]["configMap"]["name"] == config_map["metadata"]["name"]


def test_default_policy_observes() -> None:
    policy = yaml.safe_load(one(manifests(), "ConfigMap")["data"]["policy.yaml"])
    assert policy["apiVersion"] == "memwarden.io/v1"
    assert policy["defaults"]["response"]["mode"] == "observe"


def test_existing_config_map_replaces_the_charts_own() -> None:
    objects = manifests(VALUE_SETS["existing-policy"])
    assert find(objects, "ConfigMap") == []
    assert volumes(objects)["policy"]["configMap"] == {
        "name": "site-policy",
        "items": [{"key": "memwarden.yaml", "path": "policy.yaml"}],
    }
    agent = container(objects)
    assert agent["image"] == "ghcr.io/memwarden/memwarden@sha256:" + "ab" * 32
    assert agent["args"][-3:] == ["--dry-run", "--stats-interval", "30"]
    assert "priorityClassName" not in one(objects, "DaemonSet")["spec"]["template"]["spec"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"policy": {"apiVersion": "memwarden.io/v1", "outputs": {"kubernetes": {"events": True}}}}, "features.events"),
        ({"policy": {"apiVersion": "memwarden.io/v1", "outputs": {"kubernetes": {"annotations": True}}}}, "features.annotations"),
        (
            {"policy": {"apiVersion": "memwarden.io/v1", "rules": [{"name": "x", "match": {"namespace": "a"}, "response": {"mode": "throttle"}}]}},
            "features.throttle",
        ),
        ({"agent": {"kubernetes": "off"}, "features": {"events": True}}, "agent.kubernetes is off"),
    ],
)
def test_policy_asking_for_more_than_features_grant_is_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError) as error:
        render(values)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"agent": {"kubernetes": "yes"}}, "/agent/kubernetes"),
        ({"agent": {"port": 70000}}, "/agent/port"),
        ({"agent": {"logLevel": "verbose"}}, "/agent/logLevel"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"policy": {"apiVersion": "memwarden.io/v2"}}, "/policy/apiVersion"),
        ({"features": {"throttle": "yes"}}, "/features/throttle"),
        ({"serviceMonitor": {"enabled": True, "interval": "often"}}, "/serviceMonitor/interval"),
        ({"agnet": {}}, "agnet"),
    ],
)
def test_schema_rejects_bad_values(values: dict[str, Any], where: str) -> None:
    with helm.Chart.load(str(CHART)) as chart:
        with pytest.raises(helm.HelmValuesError) as error:
            chart.validate_schema(values)
    assert where in str(error.value)


def test_every_value_is_documented() -> None:
    """Every value in values.yaml has a comment right above it. A key without a value
    of its own is a section (its children carry the comments) unless it is commented,
    then it is a documented default block (a list or map) and its children are exempt."""
    import re

    undocumented = []
    exempt_below: int | None = None  # indent of a documented block whose children are its value
    previous = ""
    for number, line in enumerate((CHART / "values.yaml").read_text().splitlines(), start=1):
        stripped = line.strip()
        key = re.match(r"^( *)([A-Za-z_][\w.-]*):(.*)$", line)
        if key:
            indent, value = len(key.group(1)), key.group(3).strip()
            if exempt_below is not None and indent <= exempt_below:
                exempt_below = None
            if exempt_below is None:
                commented = previous.startswith("#")
                if value and not commented:
                    undocumented.append(f"line {number}: {stripped}")
                if not value and commented:
                    exempt_below = indent
        previous = stripped  # the line right above: a blank line ends a comment's reach
    assert undocumented == []


def test_prometheus_rule_carries_the_alert_rules_and_promtool_accepts_them(tmp_path: Path) -> None:
    objects = manifests(VALUE_SETS["monitoring"])
    rule = one(objects, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    source = yaml.safe_load((CHART / "files" / "memwarden-rules.yaml").read_text())
    assert rule["spec"]["groups"] == source["groups"]
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert alerts, "no alerts"
    # every rule reads memwarden's metrics, or the scrape status of memwarden's job, whose
    # name (the Service's, under a ServiceMonitor) must then match the rule's selector
    service = one(objects, "Service")["metadata"]["name"]
    for group in rule["spec"]["groups"]:
        for entry in group["rules"]:
            expr = entry["expr"]
            jobs = re.findall(r'job=~"([^"]+)"', expr)
            assert "memwarden_" in expr or jobs, f"{entry.get('alert')} reads no memwarden metric"
            for job in jobs:
                assert re.fullmatch(job, service), f"{entry.get('alert')}: job {service} does not match {job}"
    promtool = shutil.which("promtool")
    require(promtool is not None, "promtool (Debian package prometheus) is not installed")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts)} rules found" in result.stdout


def test_service_monitor_scrapes_the_agents_port() -> None:
    objects = manifests(VALUE_SETS["monitoring"])
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"] and endpoint["path"] == "/metrics"


def test_grafana_dashboard_config_map_holds_the_dashboard() -> None:
    objects = manifests(VALUE_SETS["monitoring"])
    dashboards = [c for c in find(objects, "ConfigMap") if c["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert len(dashboards) == 1
    dashboard = json.loads(dashboards[0]["data"]["memwarden-dashboard.json"])
    assert dashboard == json.loads((CHART / "files" / "memwarden-dashboard.json").read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert expressions and all("memwarden_" in e for e in expressions)
    assert dashboards[0]["metadata"]["annotations"] == {"grafana_folder": "memwarden"}


@pytest.mark.parametrize(
    ("chart_copy", "original"),
    [
        ("files/memwarden-rules.yaml", "deploy/prometheus/memwarden-rules.yaml"),
        ("files/memwarden-dashboard.json", "deploy/grafana/memwarden-dashboard.json"),
    ],
)
def test_chart_copies_match_deploy(chart_copy: str, original: str) -> None:
    """The chart cannot read files outside itself (.Files): it ships copies of deploy/."""
    source = ROOT / original
    assert source.exists(), f"{original} is missing: the chart's copy {chart_copy} has nothing to match"
    assert (CHART / chart_copy).read_bytes() == source.read_bytes(), f"copy {original} to charts/memwarden/{chart_copy}"


@pytest.mark.parametrize("name", VALUE_SETS)
def test_notes_render(name: str) -> None:
    notes = render(VALUE_SETS[name])["memwarden/templates/NOTES.txt"]
    assert f"-n {NAMESPACE} rollout status daemonset/" in notes
    assert "{{" not in notes


@pytest.mark.parametrize("name", [n for n in VALUE_SETS if "existingPolicyConfigMap" not in VALUE_SETS[n]])
def test_rendered_policy_passes_the_agents_own_validation(name: str, release_binary: Path, tmp_path: Path) -> None:
    """`memwarden check-config` (the policy work) reads the rendered file as the agent will."""
    help_text = subprocess.run([str(release_binary), "--help"], capture_output=True, text=True).stdout
    assert "check-config" in help_text, "`memwarden --help` lists no check-config command"
    path = tmp_path / "policy.yaml"
    policy = [c for c in find(manifests(VALUE_SETS[name]), "ConfigMap") if c["metadata"]["name"].endswith("-policy")]
    assert len(policy) == 1
    path.write_text(policy[0]["data"]["policy.yaml"])
    result = subprocess.run([str(release_binary), "check-config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", VALUE_SETS)
def test_agent_arguments_are_flags_the_agent_knows(name: str, release_binary: Path) -> None:
    known = run_flags(release_binary)
    arguments = container(manifests(VALUE_SETS[name]))["args"]
    assert arguments[0] == "run"
    used = {a.split("=", 1)[0] for a in arguments[1:] if a.startswith("--")}
    assert used <= known, f"unknown to `memwarden run`: {sorted(used - known)}"


def test_service_account_token_and_state_dir_survive_a_container_restart() -> None:
    # the cluster VM's kill -9: the agent reads its token from the mounted service-account
    # Secret and its originals from a hostPath state file, both outside the container
    objects = manifests(VALUE_SETS["cluster-vm"])
    pod = one(objects, "DaemonSet")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True
    assert pod["serviceAccountName"] == one(objects, "ServiceAccount")["metadata"]["name"]
    state = next(v for v in pod["volumes"] if v["name"] == "state")
    assert state["hostPath"] == {"path": "/var/lib/memwarden", "type": "DirectoryOrCreate"}
    assert "--state-file=/var/lib/memwarden/state.json" in container(objects)["args"]
    assert mounts(objects)["/var/lib/memwarden"].get("readOnly", False) is False

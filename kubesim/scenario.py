"""Scenario files: a cluster described as real manifests plus what differs from healthy.

A scenario is YAML:

    description: one line
    extends: other.yaml            # start from another scenario (lists append, maps merge)
    kubernetes: "1.10"             # served version; Leases exist from 1.14
    manifests: [manifests/istio-0.5.1.yaml, ...]   # under kubesim/data/
    files: [istio-analyzers-1.28.10/testdata/x.yaml, /abs/path.yaml]   # objects as they are (under
                                   # kubesim/data/ or absolute); kinds no CRD serves are left out, as the API
                                   # server would refuse them
    namespaces: {default: {istio-injection: enabled}}
    nodes: 3
    objects: [...]                 # extra objects
    patches: [{kind, name, namespace?, merge: {...} | delete: true | edit: {field, replace, with}}]
    jobs: {ns/job: {failed: N} | {applies: [ns/configmap, key]}}   # what a Job did when it ran
    workloads: {ns/deployment: {replicas: N, ready: N, restarts: {container: N}, inject: {flag: value}}}
    proxy: [{service: ns/name:port, path, file|body|json, status?, edits?: [{drop|replace|with|append}]}]
                                   # an entry with edits only edits the base scenario's payload
    logs: [{namespace, selector?, container, lines: [...]}]
    faults: [{path: regex, status?, body?, delay?}]
    clock: {apiserver: seconds, nodes: {node-name: seconds}}
    latency_ms: 0
    expect: {check-id: warn|fail|error}  # the verdicts that are not pass (or a skip by version)
    modern: {native_sidecars?, istiod_patches?, connected?}   # istiod-era mesh: kubesim/modern.py
    pod_proxy: [{pods: ns/k=v, port, path, file|body|json, status?, edits?}]   # pods/NAME:PORT/proxy/PATH
    daemonsets: {ns/name: {absent: [node], unready: [node]}}
    workloads.<key>: {terminated: {c: {reason, exitCode}}, waiting: {c: reason}, proxy_version, injected,
                      redirection}   # modern only
    logs[].previous: true          # served for ?previous=true only (modern only)
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kubesim import modern
from kubesim.store import Store, load_manifest, stable_suffix

DATA = Path(__file__).parent / "data"
SCENARIOS = Path(__file__).parent / "scenarios"
SIDECAR = "istio-proxy"


@dataclass
class Payload:
    status: int
    body: bytes
    content_type: str


@dataclass
class LogRule:
    namespace: str
    selector: dict
    container: str
    lines: list[str]


@dataclass
class Fault:
    path: re.Pattern
    status: int | None = None
    body: str | None = None
    delay: float = 0.0


@dataclass
class Scenario:
    name: str
    description: str
    store: Store
    kubernetes: tuple[int, int]
    proxies: dict[tuple[str, str, str, str], Payload] = field(default_factory=dict)
    logs: list[LogRule] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    apiserver_offset: float = 0.0
    node_offsets: dict[str, float] = field(default_factory=dict)
    latency_ms: float = 0.0
    expect: dict[str, str] = field(default_factory=dict)  # check id → verdict, for checks that do not pass
    modern: object = None  # kubesim.modern.ModernState when the scenario has a `modern:` key

    def pod_log(self, pod: dict, container: str) -> str:
        meta = pod["metadata"]
        lines = []
        if container == SIDECAR:
            lines += default_sidecar_log(meta["name"])
        for rule in self.logs:
            if rule.namespace == meta.get("namespace") and rule.container == container and _matches(
                    rule.selector, meta.get("labels") or {}):
                lines += rule.lines
        return "".join(line.rstrip("\n") + "\n" for line in lines)


def _matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == str(v) for k, v in selector.items())


def default_sidecar_log(pod: str) -> list[str]:
    """What a healthy 0.5-0.8 sidecar prints: pilot-agent's start, then Envoy's access log."""
    return [
        "2018-06-01T10:00:01.000000Z\tinfo\tEpoch 0 starting",
        f"2018-06-01T10:00:01.100000Z\tinfo\tEnvoy command: [-c /etc/istio/proxy/envoy-rev0.json --restart-epoch 0"
        f" --drain-time-s 45 --parent-shutdown-time-s 60 --service-cluster {pod.rsplit('-', 2)[0]}]",
        '[2018-06-01T10:05:12.321Z] "GET /productpage HTTP/1.1" 200 - 0 5719 47 45 "-" "curl/7.47.0"'
        ' "d6a3e1b8-5c2d-9f5e-8a6e-3f0c2b1a9d7e" "productpage:9080" "127.0.0.1:9080"',
        '[2018-06-01T10:05:13.654Z] "GET /details/0 HTTP/1.1" 200 - 0 178 4 3 "-" "python-requests/2.18.4"'
        ' "0f5cd0aa-6f26-9ac8-8fb5-4f1d8b9d2c11" "details:9080" "127.0.0.1:9080"',
    ]


def load(path: str | Path, overrides: dict | None = None) -> Scenario:
    """A scenario file (a path, or a name under kubesim/scenarios/), with ``overrides`` merged on top."""
    path = Path(path)
    if not path.exists():
        path = SCENARIOS / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    spec = _merge(_resolve(path), overrides or {})
    return build(path.stem, spec)


def names() -> list[str]:
    """Every scenario under kubesim/scenarios/ (files starting with _ are fragments)."""
    return sorted(p.stem for p in SCENARIOS.glob("*.yaml") if not p.name.startswith("_"))


def _resolve(path: Path) -> dict:
    spec = yaml.safe_load(path.read_text()) or {}
    base = spec.pop("extends", None)
    if not base:
        return spec
    return _merge(_resolve(path.parent / base), spec)


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = out[key] + value
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def build(name: str, spec: dict) -> Scenario:
    store = Store()
    major, minor = (int(x) for x in str(spec.get("kubernetes", "1.10")).split(".")[:2])
    for manifest in spec.get("manifests") or []:
        for obj in load_manifest((DATA / manifest).read_text()):
            store.add(obj)
    for obj in spec.get("objects") or []:
        store.add(obj)
    for path in spec.get("files") or []:
        for obj in load_manifest((DATA / path).read_text()):
            if obj.get("kind") == "Node":  # its kubelet posts a status
                obj.setdefault("status", {}).setdefault("conditions", [{"type": "Ready", "status": "True"}])
            if obj.get("kind") == "List" or store.resource_for_kind(obj["kind"], obj.get("apiVersion", "v1")):
                store.add(obj)
    for ns, labels in (spec.get("namespaces") or {}).items():
        existing = store.get("v1", "namespaces", None, ns) or store.add(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        existing["metadata"].setdefault("labels", {}).update(labels or {})
    for ns in ("default", "kube-system", "kube-public"):
        if not store.get("v1", "namespaces", None, ns):
            store.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    for patch in spec.get("patches") or []:
        _apply_patch(store, patch)
    clock = spec.get("clock") or {}
    scenario = Scenario(
        name=name, description=spec.get("description", ""), store=store, kubernetes=(major, minor),
        apiserver_offset=float(clock.get("apiserver", 0)),
        node_offsets={k: float(v) for k, v in (clock.get("nodes") or {}).items()},
        latency_ms=float(spec.get("latency_ms", 0)), expect=dict(spec.get("expect") or {}),
    )
    nodes = _add_nodes(store, int(spec.get("nodes", 3)), (major, minor))
    _add_apiserver(store, nodes[0], spec.get("apiserver") or {})
    modern_settings = (spec.get("modern") or {}) if "modern" in spec else None
    _run_controllers(store, nodes, spec.get("workloads") or {}, modern_settings)
    _run_jobs(store, spec.get("jobs") or {})
    if "modern" in spec:  # istiod-era behaviour: see kubesim/modern.py
        modern.apply(scenario, spec, nodes, DATA)
    for entry in spec.get("proxy") or []:
        key = _proxy_key(entry)
        scenario.proxies[key] = _payload(entry, scenario.proxies.get(key))
    for entry in [e for e in spec.get("logs") or [] if not e.get("previous")]:  # previous: see kubesim.modern
        scenario.logs.append(LogRule(entry["namespace"], _selector(entry.get("selector", "")), entry["container"],
                                     list(entry.get("lines") or [])))
    for entry in spec.get("faults") or []:
        scenario.faults.append(Fault(re.compile(entry["path"]), entry.get("status"), entry.get("body"),
                                     float(entry.get("delay", 0))))
    return scenario


def _selector(text: str) -> dict:
    return dict(part.split("=", 1) for part in text.split(",") if "=" in part)


def _find(store: Store, kind: str, name: str, namespace: str | None):
    for (api, plural), resource in store.resources.items():
        if resource.kind == kind:
            obj = store.get(api, plural, namespace if resource.namespaced else None, name)
            if obj is not None:
                return api, plural, obj
    raise ValueError(f"patch target {kind} {namespace or ''}/{name} not found")


def _apply_patch(store: Store, patch: dict) -> None:
    api, plural, obj = _find(store, patch["kind"], patch["name"], patch.get("namespace"))
    if patch.get("delete"):
        store.remove(api, plural, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        return
    if "edit" in patch:  # a text edit inside one string field, e.g. the mesh config in ConfigMap istio
        field_path = patch["edit"]["field"]  # "data.mesh", or a list when a key has dots
        *parents, leaf = field_path if isinstance(field_path, list) else field_path.split(".")
        holder = obj
        for key in parents:
            holder = holder[key]
        holder[leaf] = _edit(holder[leaf], patch["edit"])
    _merge_patch(obj, patch.get("merge") or {})


def _merge_patch(target: dict, patch: dict) -> None:
    """RFC 7386 JSON merge patch, as kubectl patch --type merge applies it."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _add_nodes(store: Store, count: int, version: tuple[int, int]) -> list[str]:
    names = [f"node-{i + 1}" for i in range(count)]
    for i, name in enumerate(names):
        store.add({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {"podCIDR": f"10.244.{i}.0/24"},
            "status": {
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "kubelet is posting ready status"}],
                "addresses": [{"type": "InternalIP", "address": f"10.0.0.{10 + i}"},
                              {"type": "Hostname", "address": name}],
                "nodeInfo": {"kubeletVersion": f"v{version[0]}.{version[1]}.0", "osImage": "Ubuntu 16.04.4 LTS",
                             "containerRuntimeVersion": "docker://17.3.2"},
            },
        })
        if version >= (1, 14):
            store.add({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                       "metadata": {"name": name, "namespace": "kube-node-lease"},
                       "spec": {"holderIdentity": name, "leaseDurationSeconds": 40}})
    return names


def _add_apiserver(store: Store, node: str, overrides: dict) -> None:
    """kubeadm's static pod, mirrored into kube-system as kube-apiserver-<node>."""
    pod = load_manifest((DATA / "k8s/kube-apiserver-pod.yaml").read_text())[0]
    pod["metadata"]["name"] = f"kube-apiserver-{node}"
    pod["spec"]["nodeName"] = node
    if overrides.get("env"):
        pod["spec"]["containers"][0]["env"] = [{"name": k, "value": v} for k, v in overrides["env"].items()]
    _set_running(pod, restarts={})
    store.add(pod)


def _run_controllers(store: Store, nodes: list[str], workloads: dict, modern_settings: dict | None = None) -> None:
    mesh = _mesh_config(store)
    injected = {n["metadata"]["name"] for n in store.list("v1", "namespaces")
                if (n["metadata"].get("labels") or {}).get("istio-injection") == "enabled"}
    counter = 0
    for deployment in store.list("apps/v1", "deployments"):
        meta = deployment["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        facts = workloads.get(key) or {}
        replicas = int(facts.get("replicas", deployment["spec"].get("replicas") or 1))
        deployment["spec"]["replicas"] = replicas
        ready = int(facts.get("ready", replicas))
        template = deployment["spec"]["template"]
        rs_hash = stable_suffix(key, length=10)
        for i in range(replicas):
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": copy.deepcopy(template.get("metadata") or {}),
                   "spec": copy.deepcopy(template["spec"])}
            pod["metadata"].update(name=f"{meta['name']}-{rs_hash}-{stable_suffix(key, str(i))}",
                                   namespace=meta["namespace"])
            pod["metadata"]["ownerReferences"] = [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "controller": True, "blockOwnerDeletion": True,
                "name": f"{meta['name']}-{rs_hash}", "uid": f"{stable_suffix(key, 'rs', length=8)}-0000-4000-8000-0"}]
            if modern_settings is not None:
                modern.inject(store, pod, facts, modern_settings)
            elif meta["namespace"] in injected and not _has(pod, SIDECAR):
                _inject(pod, mesh, facts.get("inject") or {})
            pod["spec"]["nodeName"] = nodes[counter % len(nodes)]
            counter += 1
            _set_running(pod, restarts=facts.get("restarts") or {}, ready=i < ready)
            store.add(pod)
        deployment["status"] = {"replicas": replicas, "readyReplicas": ready, "availableReplicas": ready,
                                "updatedReplicas": replicas, "observedGeneration": 1}
    for i, service in enumerate(store.list("v1", "services")):
        spec = service.setdefault("spec", {})
        if spec.get("clusterIP") != "None":
            spec["clusterIP"] = f"10.{96 + i // 250}.{i % 250}.{10 + i % 200}"


def _run_jobs(store: Store, jobs: dict) -> None:
    """Jobs complete; one that ``applies`` a ConfigMap's manifest (kubectl apply -f) creates its objects."""
    for job in store.list("batch/v1", "jobs"):
        facts = jobs.get(f"{job['metadata']['namespace']}/{job['metadata']['name']}") or {}
        if facts.get("failed"):
            job["status"] = {"failed": int(facts["failed"]), "startTime": "2018-06-01T10:00:00Z",
                             "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}
            continue
        job["status"] = {"succeeded": 1, "startTime": "2018-06-01T10:00:00Z", "completionTime": "2018-06-01T10:01:00Z"}
        if facts.get("applies"):
            config_map, key = facts["applies"]
            ns, name = config_map.split("/")
            for obj in load_manifest(store.get("v1", "configmaps", ns, name)["data"][key]):
                obj.setdefault("metadata", {}).setdefault("namespace", ns)
                store.add(obj)


def _has(pod: dict, container: str) -> bool:
    return any(c.get("name") == container for c in pod["spec"].get("containers", []))


def _mesh_config(store: Store) -> dict:
    config_map = store.get("v1", "configmaps", "istio-system", "istio") or {}
    return yaml.safe_load((config_map.get("data") or {}).get("mesh", "")) or {}


def _inject(pod: dict, mesh: dict, overrides: dict) -> None:
    """Add the sidecar the way the injector's template does: proxy settings copied in at creation."""
    proxy = mesh.get("defaultConfig") or {}
    app = (pod["metadata"].get("labels") or {}).get("app", "istio-proxy")
    flags = {
        "--configPath": proxy.get("configPath", "/etc/istio/proxy"),
        "--binaryPath": proxy.get("binaryPath", "/usr/local/bin/envoy"),
        "--serviceCluster": app,
        "--drainDuration": proxy.get("drainDuration", "45s"),
        "--parentShutdownDuration": proxy.get("parentShutdownDuration", "1m0s"),
        "--discoveryAddress": proxy.get("discoveryAddress", "istio-pilot.istio-system:15003"),
        "--discoveryRefreshDelay": proxy.get("discoveryRefreshDelay", "1s"),
        "--zipkinAddress": proxy.get("zipkinAddress", "zipkin.istio-system:9411"),
        "--connectTimeout": proxy.get("connectTimeout", "10s"),
        "--proxyAdminPort": str(proxy.get("proxyAdminPort", 15000)),
        "--controlPlaneAuthPolicy": proxy.get("controlPlaneAuthPolicy", "NONE"),
    }
    flags.update(overrides)
    args = ["proxy", "sidecar"] + [str(x) for flag, value in flags.items() for x in (flag, value)]
    pod["spec"].setdefault("initContainers", []).append(
        {"name": "istio-init", "image": "docker.io/istio/proxy_init", "args": ["-p", "15001", "-u", "1337"]})
    pod["spec"]["containers"].append({"name": SIDECAR, "image": "docker.io/istio/proxy", "args": args})
    pod["metadata"].setdefault("annotations", {})["sidecar.istio.io/status"] = json.dumps(
        {"initContainers": ["istio-init"], "containers": [SIDECAR]})


def _set_running(pod: dict, restarts: dict, ready: bool = True) -> None:
    statuses = []
    for c in pod["spec"].get("containers", []):
        count = int(restarts.get(c["name"], 0))
        status = {"name": c["name"], "ready": ready, "restartCount": count, "image": c.get("image", ""),
                  "imageID": f"docker-pullable://{c.get('image', '')}", "started": True,
                  "containerID": f"docker://{stable_suffix(pod['metadata']['name'], c['name'], length=12)}",
                  "state": {"running": {"startedAt": "2018-06-01T10:00:05Z"}}}
        if count:
            status["lastState"] = {"terminated": {"exitCode": 134, "reason": "Error",
                                                  "finishedAt": "2018-06-01T10:00:04Z"}}
        statuses.append(status)
    pod["status"] = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "containerStatuses": statuses,
        "podIP": f"10.244.0.{int(stable_suffix(pod['metadata']['name'], length=2).encode().hex(), 16) % 250}",
        "startTime": "2018-06-01T10:00:00Z",
    }


def _proxy_key(entry: dict) -> tuple[str, str, str, str]:
    ns, rest = entry["service"].split("/", 1)
    name, port = rest.rsplit(":", 1)
    return ns, name, port, entry.get("path", "").lstrip("/")


def _payload(entry: dict, earlier: Payload | None) -> Payload:
    """An entry's body; an entry with only ``edits`` edits the one a base scenario set."""
    if earlier is not None and not {"file", "json", "body"} & entry.keys():
        body = earlier.body.decode()
    elif "file" in entry:
        body = (DATA / entry["file"]).read_text()
    elif "json" in entry:
        body = json.dumps(entry["json"])
    else:
        body = str(entry.get("body", ""))
    for edit in entry.get("edits") or []:
        body = _edit(body, edit)
    content_type = entry.get("content_type") or (
        "application/json" if body.lstrip()[:1] in "[{" else "text/plain; version=0.0.4")
    return Payload(int(entry.get("status", 200)), body.encode(), content_type)


def _edit(text: str, edit: dict) -> str:
    if "drop" in edit:
        pattern = re.compile(edit["drop"])
        kept = [line for line in text.splitlines(keepends=True) if not pattern.search(line)]
        if len(kept) == len(text.splitlines()):
            raise ValueError(f"drop matched nothing: {edit['drop']!r}")
        return "".join(kept)
    if "replace" in edit:
        edited, count = re.subn(edit["replace"], edit.get("with", ""), text, flags=re.M)
        if not count:  # a scenario whose edit matches nothing would silently test the wrong thing
            raise ValueError(f"edit matched nothing: {edit['replace']!r}")
        return edited
    if "append" in edit:
        return text.rstrip("\n") + "\n" + "\n".join(edit["append"]) + "\n"
    raise ValueError(f"unknown edit {edit}")

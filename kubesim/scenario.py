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
    patches: [{kind, name, namespace?, merge: {...} | delete: true | edit: {field, replace, with}
               | env: {container?, set: {NAME: value}}}]   # env: a workload's container environment
    jobs: {ns/job: {failed: N} | {applies: [ns/configmap, key]}}   # what a Job did when it ran
    workloads: {ns/deployment: {replicas: N, ready: N, restarts: {container: N}, inject: {flag: value}}}
    proxy: [{service: ns/name:port, path, file|body|json|generate, status?, edits?: [{drop|replace|with|append}]}]
                                   # generate: pilot-registration builds Pilot's v1/registration from the cluster
                                   # an entry with edits only edits the base scenario's payload
    proxy[].content_length: N      # the Content-Length header sent instead of the body's length, then the
                                   # connection is closed: N > body is a short read (IncompleteRead, kubectl
                                   # "unexpected EOF"); N < body: urllib3 keeps N bytes, aiohttp rejects the rest
    pod_metrics: [{pods: ns | ns/k=v | "*", usage: {container|"*": {cpu: 250m|1234567n, memory: 12345Ki}}}]
                                   # metrics-server: serves metrics.k8s.io/v1beta1 PodMetrics (Running pods that
                                   # some entry covers; later entries win) and NodeMetrics (sums); absent: no group
    kube_inject: [ns]              # namespaces whose Deployments went through `istioctl kube-inject` (the sidecar
                                   # is in the Deployment's template, whatever the namespace's labels)
    patches[].after_jobs: true     # applied after the Jobs ran (e.g. someone deleted what the post-install Job made)
    logs: [{namespace, selector?, container, lines: [...]}]
    faults: [{path: regex, status?, body?, delay?}]
    rbac: deploy/rbac/clusterrole.yaml   # the client holds only that ClusterRole (path from the repository root):
                                   # every other read answers 403 as the API server's RBAC authorizer would
    clock: {apiserver: seconds, nodes: {node-name: seconds}}
    latency_ms: 0
    expect: {check-id: warn|fail|error}  # the verdicts that are not pass (or a skip by version)
    modern: {native_sidecars?, istiod_patches?, connected?}   # istiod-era mesh: kubesim/modern.py
    modern.validation_armed: false  # istiod never switched its validating webhooks from Ignore to Fail
    modern.ca_bundles: {webhook-configuration-name: modern/other-root-cert.pem}   # that configuration keeps another
                                   # CA's caBundle (istiod does not or cannot patch it)
    modern.targets_down: [{pods: ns/k=v, error: "sample limit exceeded"}]   # Prometheus' targets of those pods are
                                   # down with that lastError (every job); the mesh config's enablePrometheusMerge and
                                   # the pod annotation prometheus.istio.io/merge-metrics decide the scrape annotations
    pod_proxy: [{pods: ns/k=v, port, path, file|body|json, status?, edits?, node?}]   # pods/NAME:PORT/proxy/PATH
    daemonsets: {ns/name: {absent: [node], unready: [node]}}
    workloads.<key>.refused: x509|connection-refused|no-endpoints|deadline|service-unavailable|<error text>
                                   # modern: the first Istio injection webhook matching the pod template refuses the
                                   # Deployment's pods with that client error: no pod (``created: N`` existed before),
                                   # FailedCreate Events on its ReplicaSet, Deployment condition ReplicaFailure;
                                   # ``recovered: true``: the refusals are over (all pods exist, the Events remain)
    workloads.<key>: {terminated: {c: {reason, exitCode}}, waiting: {c: reason}, proxy_version, injected,
                      redirection, revision}   # modern only; with ready: N below replicas only the unready
                      # replicas crash (their ports refuse pods/proxy with 503); revision: injected by that revision
                      # when created (it may be gone since). StatefulSets get pods NAME-0.. like Deployments do.
    logs[].previous: true          # served for ?previous=true only (modern only)
    logs[].node: node-2            # only the pods on that node (one ztunnel or istio-cni pod)

Ambient (modern; istio-1.28.0-ambient.yaml renders istiod, istio-cni and ztunnel with the ambient profile):
    namespaces/pods labelled istio.io/dataplane-mode=ambient are enrolled by istio-cni: annotation
        ambient.istio.io/redirection=enabled when the node's istio-cni and ztunnel pods are Ready; `pending` and a
        failed sandbox (pod Pending/ContainerCreating, kubelet FailedCreatePodSandBox event) when ztunnel is missing;
        a failed sandbox without annotation when istio-cni is; a pod with a sidecar is never enrolled.
        Break a node with daemonsets: {istio-system/ztunnel: {absent: [node-2]}} (or unready).
    workloads.<key>.redirection: enabled|pending|none   # force the annotation (pods enrolled before a failure)
    modern.ztunnel: {node-2: {lost: N, pending: N}}     # ztunnel holds N fewer captured pods than are annotated
                                                        # (workload_manager_active_proxy_count), N pending
    modern.prometheus: ns/name      # the Service of the Prometheus to serve /api/v1/targets for (default: prometheus)
    Gateways with gatewayClassName istio-waypoint get istiod's ServiceAccount/Deployment/Service (files/waypoint.yaml)
        and status (Accepted; Programmed True while a waypoint pod is Ready, else False AddressNotUsable); Services
        using a waypoint (istio.io/use-waypoint on the Service or namespace) get condition istio.io/WaypointBound;
        AuthorizationPolicies selecting ambient pods get ZtunnelAccepted (UnsupportedValue when they use HTTP fields).
    workloads.<ns>/<waypoint>: {ready: 0, waiting: {istio-proxy: CrashLoopBackOff}}  # a waypoint that is not ready
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kubesim import modern
from kubesim.rbac import ClusterRole
from kubesim.store import Resource, Store, load_manifest, stable_suffix

DATA = Path(__file__).parent / "data"
SCENARIOS = Path(__file__).parent / "scenarios"
SIDECAR = "istio-proxy"


@dataclass
class Payload:
    status: int
    body: bytes
    content_type: str
    content_length: int | None = None  # a Content-Length that disagrees with the body (a broken upstream)


@dataclass
class LogRule:
    namespace: str
    selector: dict
    container: str
    lines: list[str]
    node: str | None = None  # only the pods on this node (a DaemonSet's pod)


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
    rbac: ClusterRole | None = None  # the only role the client holds; None: it may read everything

    def pod_log(self, pod: dict, container: str) -> str:
        meta = pod["metadata"]
        lines = []
        if container == SIDECAR and self.modern is not None and (meta.get("labels") or {}).get("app") == "ztunnel":
            lines += modern.ztunnel_log(pod)
        elif container == SIDECAR:
            lines += default_sidecar_log(meta["name"])
        for rule in self.logs:
            if rule.namespace == meta.get("namespace") and rule.container == container and _matches(
                    rule.selector, meta.get("labels") or {}) and rule.node in (None, pod["spec"].get("nodeName")):
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
    for patch in [p for p in spec.get("patches") or [] if not p.get("after_jobs")]:
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
    if modern_settings is not None:  # what istiod creates before pods exist (waypoint Deployments)
        modern.prepare(store, spec)
    _run_controllers(store, nodes, spec.get("workloads") or {}, modern_settings, set(spec.get("kube_inject") or []))
    _run_jobs(store, spec.get("jobs") or {})
    for patch in [p for p in spec.get("patches") or [] if p.get("after_jobs")]:
        _apply_patch(store, patch)
    if spec.get("pod_metrics") is not None:  # null undoes an inherited metrics-server
        _add_pod_metrics(store, spec["pod_metrics"])
    if "modern" in spec:  # istiod-era behaviour: see kubesim/modern.py
        modern.apply(scenario, spec, nodes, DATA)
    for pod in store.list("v1", "pods"):
        _managed_fields(pod)
    for entry in spec.get("proxy") or []:
        if entry.get("generate") == "pilot-registration":
            entry = {**entry, "_registration": pilot_registration(store)}
        key = _proxy_key(entry)
        scenario.proxies[key] = _payload(entry, scenario.proxies.get(key))
    for entry in [e for e in spec.get("logs") or [] if not e.get("previous")]:  # previous: see kubesim.modern
        selector = modern.equality_selector(entry.get("selector", ""))
        scenario.logs.append(LogRule(entry["namespace"], selector, entry["container"],
                                     list(entry.get("lines") or []), entry.get("node")))
    if spec.get("rbac"):
        scenario.rbac = ClusterRole.load(Path(__file__).resolve().parents[1] / spec["rbac"])
    for entry in spec.get("faults") or []:
        scenario.faults.append(Fault(re.compile(entry["path"]), entry.get("status"), entry.get("body"),
                                     float(entry.get("delay", 0))))
    return scenario


def _field_set(value) -> dict:
    """Server-side apply's FieldsV1 set of a value: f:<key> per map key, k:{"name":…} per named list item."""
    if isinstance(value, dict):
        return {".": {}, **{f"f:{k}": _field_set(v) for k, v in value.items()}}
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        key = next((k for k in ("name", "type", "ip", "containerPort") if all(k in v for v in value)), None)
        if key:
            return {".": {}, **{f'k:{{"{key}":{json.dumps(v[key])}}}': _field_set(v) for v in value}}
    return {}


def _managed_fields(pod: dict) -> None:
    """The field ownership a real API server keeps on every pod (metadata.managedFields): what the controller
    manager wrote (metadata and spec) and what the kubelet wrote (status). Clients read past it; it weighs."""
    meta = pod["metadata"]
    if "managedFields" in meta:
        return
    when = meta.get("creationTimestamp", "2025-11-01T10:00:00Z")
    written = {k: v for k, v in meta.items() if k in ("generateName", "labels", "annotations", "ownerReferences")}
    meta["managedFields"] = [
        {"apiVersion": "v1", "fieldsType": "FieldsV1", "manager": "kube-controller-manager", "operation": "Update",
         "time": when, "fieldsV1": {"f:metadata": _field_set(written), "f:spec": _field_set(pod.get("spec") or {})}},
        {"apiVersion": "v1", "fieldsType": "FieldsV1", "manager": "kubelet", "operation": "Update",
         "subresource": "status", "time": when, "fieldsV1": {"f:status": _field_set(pod.get("status") or {})}},
    ]


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
    if "env" in patch:  # set environment variables of a workload's container: {container?, set: {NAME: value}}
        containers = obj["spec"]["template"]["spec"]["containers"]
        container = next(c for c in containers if c["name"] == patch["env"].get("container", containers[0]["name"]))
        for name, value in (patch["env"].get("set") or {}).items():
            env = container.setdefault("env", [])
            existing = next((e for e in env if e.get("name") == name), None)
            if existing is None:
                env.append({"name": name, "value": str(value)})
            else:
                existing.clear()
                existing.update(name=name, value=str(value))
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


def _run_controllers(store: Store, nodes: list[str], workloads: dict, modern_settings: dict | None = None,
                     kube_inject: set[str] = frozenset()) -> None:
    mesh = modern.mesh_config(store)
    injected = {n["metadata"]["name"] for n in store.list("v1", "namespaces")
                if (n["metadata"].get("labels") or {}).get("istio-injection") == "enabled"}
    counter = 0
    for deployment in store.list("apps/v1", "deployments") + store.list("apps/v1", "statefulsets"):
        meta = deployment["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        stateful = deployment["kind"] == "StatefulSet"  # pods NAME-0, NAME-1, … owned by the StatefulSet
        facts = workloads.get(key) or {}
        replicas = int(facts.get("replicas", deployment["spec"].get("replicas") or 1))
        deployment["spec"]["replicas"] = replicas
        # refused (modern): the injection webhook refuses the ReplicaSet's pods; ``created`` of them existed before
        refused = modern_settings is not None and facts.get("refused") and not facts.get("recovered")
        created = int(facts.get("created", 0)) if refused else replicas
        ready = min(int(facts.get("ready", replicas)), created)
        template = deployment["spec"]["template"]
        if meta["namespace"] in kube_inject and not _has(template, SIDECAR):
            _inject(template, mesh, facts.get("inject") or {})  # kube-inject rewrites the manifest itself
        rs_hash = stable_suffix(key, length=10)
        for i in range(created):
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": copy.deepcopy(template.get("metadata") or {}),
                   "spec": copy.deepcopy(template["spec"])}
            name = f"{meta['name']}-{i}" if stateful else f"{meta['name']}-{rs_hash}-{stable_suffix(key, str(i))}"
            pod["metadata"].update(name=name, namespace=meta["namespace"])
            pod["metadata"]["ownerReferences"] = [{
                "apiVersion": "apps/v1", "kind": "StatefulSet" if stateful else "ReplicaSet", "controller": True,
                "blockOwnerDeletion": True, "name": meta["name"] if stateful else f"{meta['name']}-{rs_hash}",
                "uid": f"{stable_suffix(key, 'rs', length=8)}-0000-4000-8000-0"}]
            if modern_settings is not None:
                modern.inject(store, pod, facts, modern_settings)
            elif meta["namespace"] in injected and not _has(pod, SIDECAR):
                _inject(pod, mesh, facts.get("inject") or {})
            pod["spec"]["nodeName"] = nodes[counter % len(nodes)]
            counter += 1
            _set_running(pod, restarts=facts.get("restarts") or {}, ready=i < ready)
            store.add(pod)
        deployment["status"] = {"replicas": created, "readyReplicas": ready, "availableReplicas": ready,
                                "updatedReplicas": created, "observedGeneration": 1}
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


def _add_pod_metrics(store: Store, entries: list[dict]) -> None:
    """What metrics-server answers: one PodMetrics per Running pod it has usage for, one NodeMetrics per node.

    Shape as kubernetes-sigs/metrics-server pkg/api/pod.go builds it: name, namespace and a fresh
    creationTimestamp (no labels), timestamp and window, containers[].usage in the pod's container order.
    """
    api = "metrics.k8s.io/v1beta1"
    store.resources[(api, "pods")] = Resource(api, "pods", "PodMetrics", True, "")
    store.resources[(api, "nodes")] = Resource(api, "nodes", "NodeMetrics", False, "")
    per_node: dict[str, list[dict]] = {}
    for pod in store.list("v1", "pods"):
        meta = pod["metadata"]
        usage: dict = {}
        for entry in entries:
            if modern.covers(entry["pods"], pod):
                usage.update(entry.get("usage") or {})
        if not usage or pod.get("status", {}).get("phase") != "Running":
            continue
        containers = [{"name": c["name"], "usage": dict(usage.get(c["name"]) or usage.get("*") or {})}
                      for c in pod["spec"]["containers"]]
        containers = [c for c in containers if c["usage"]]
        store.objects.setdefault((api, "pods"), {})[(meta["namespace"], meta["name"])] = {
            "kind": "PodMetrics", "apiVersion": api,
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "timestamp": None, "window": "30s", "containers": containers}  # times stamped when served
        per_node.setdefault(pod["spec"].get("nodeName", ""), []).extend(containers)
    for node in store.list("v1", "nodes"):
        name = node["metadata"]["name"]
        used = per_node.get(name, [])
        cpu = 150_000_000 + sum(_nanocores(c["usage"].get("cpu", "0")) for c in used)  # + kubelet, kube-proxy
        memory = 900 * 2**20 + sum(_bytes(c["usage"].get("memory", "0")) for c in used)
        store.objects.setdefault((api, "nodes"), {})[("", name)] = {
            "kind": "NodeMetrics", "apiVersion": api, "metadata": {"name": name}, "timestamp": None,
            "window": "30s", "usage": {"cpu": f"{cpu}n", "memory": f"{memory // 1024}Ki"}}
    store._sorted.clear()


def _nanocores(text: str) -> int:
    text = str(text)
    for suffix, factor in (("n", 1), ("u", 10**3), ("m", 10**6)):
        if text.endswith(suffix):
            return int(float(text[:-1]) * factor)
    return int(float(text) * 10**9)  # whole cores


def _bytes(text: str) -> int:
    text = str(text)
    for suffix, factor in (("Ki", 2**10), ("Mi", 2**20), ("Gi", 2**30)):
        if text.endswith(suffix):
            return int(float(text[:-2]) * factor)
    return int(float(text))


def _proxy_key(entry: dict) -> tuple[str, str, str, str]:
    ns, rest = entry["service"].split("/", 1)
    name, port = rest.rsplit(":", 1)
    return ns, name, port, entry.get("path", "").lstrip("/")


def pilot_registration(store: Store) -> list[dict]:
    """Pilot's v1 registration answer for this cluster: a service key per Service port (FQDN|port name) with the
    ready pods' IPs and target ports as hosts (shape: pilot/0.7.1-all-sds.json.golden)."""
    pods = [p for p in store.list("v1", "pods") if p.get("status", {}).get("phase") == "Running"
            and all(c.get("ready") for c in p.get("status", {}).get("containerStatuses") or [])]
    answer = []
    for svc in store.list("v1", "services"):
        meta, spec = svc["metadata"], svc.get("spec") or {}
        selector = spec.get("selector") or {}
        backends = [p for p in pods if selector and p["metadata"]["namespace"] == meta["namespace"]
                    and _matches(selector, p["metadata"].get("labels") or {})]
        for port in spec.get("ports") or []:
            target = port.get("targetPort", port["port"])
            answer.append({"service-key": f"{meta['name']}.{meta['namespace']}.svc.cluster.local|"
                                          f"{port.get('name') or port['port']}",
                           "hosts": [{"ip_address": p["status"].get("podIP"),
                                      "port": target if isinstance(target, int) else port["port"]}
                                     for p in backends]})
    return answer


def _payload(entry: dict, earlier: Payload | None) -> Payload:
    """An entry's body; an entry with only ``edits`` edits the one a base scenario set."""
    if earlier is not None and not {"file", "json", "body"} & entry.keys():
        body = earlier.body.decode()
    elif "file" in entry:
        body = (DATA / entry["file"]).read_text()
    elif entry.get("generate") == "pilot-registration":
        body = json.dumps(entry["_registration"], indent=1)
    elif "json" in entry:
        body = json.dumps(entry["json"])
    else:
        body = str(entry.get("body", ""))
    for edit in entry.get("edits") or []:
        body = _edit(body, edit)
    content_type = entry.get("content_type") or (
        "application/json" if body.lstrip()[:1] in "[{" else "text/plain; version=0.0.4")
    length = entry.get("content_length", earlier.content_length if earlier else None)
    return Payload(int(entry.get("status", 200)), body.encode(), content_type,
                   int(length) if length is not None else None)


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

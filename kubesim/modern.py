"""istiod-era behaviour of the simulated cluster (a scenario with a ``modern:`` key).

What a live istiod mesh adds on top of the objects: the injector follows its webhooks' selectors,
istiod publishes its root certificate and patches its webhooks, DaemonSets (istio-cni, ztunnel)
run a pod per node, istio-cni marks ambient pods as captured, and every component answers on its
ports through the API server's pod proxy (``pods/NAME:PORT/proxy/PATH``) with payloads derived
from the cluster's state. Metric names are Istio's source names (see kubesim/data/SOURCES.md §modern);
the values are ours.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field

from kubesim.store import Store, stable_suffix

SIDECAR = "istio-proxy"
SYSTEM_NAMESPACES = {"kube-system", "kube-public", "kube-node-lease", "local-path-storage"}
ROOT_CERT = "modern/root-cert.pem"
CA_ROOT_CONFIGMAP = "istio-ca-root-cert"


@dataclass
class Override:
    namespace: str
    selector: dict
    port: str
    path: str
    status: int | None
    body: str | None
    edits: list
    node: str | None = None  # only the pod on this node (one ztunnel of the DaemonSet)


@dataclass
class ModernState:
    settings: dict
    overrides: list[Override] = field(default_factory=list)
    previous_logs: list[tuple[str, dict, str, list[str]]] = field(default_factory=list)


# Selectors -------------------------------------------------------------------------------------

def selector_matches(selector: dict | None, labels: dict) -> bool:
    """A metav1.LabelSelector (matchLabels and matchExpressions); None or {} matches everything."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _labels(obj: dict) -> dict:
    return (obj.get("metadata") or {}).get("labels") or {}


def equality_selector(text: str) -> dict:
    """A scenario's `k=v,k2=v2` label selector as a dict (equality terms only)."""
    return dict(part.split("=", 1) for part in text.split(",") if "=" in part)


# Injection -------------------------------------------------------------------------------------

def injection_webhook(store: Store, pod: dict, namespace: dict | None) -> tuple[dict, dict] | None:
    """(configuration, webhook) of the first Istio injection webhook the API server would call for this pod
    (configurations in name order, webhooks in their order)."""
    if pod["metadata"].get("namespace") in SYSTEM_NAMESPACES or pod["spec"].get("hostNetwork"):
        return None
    ns_labels = _labels(namespace or {})
    for config in store.list("admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations"):
        for hook in config.get("webhooks") or []:
            if not str(hook.get("name", "")).endswith("sidecar-injector.istio.io"):
                continue
            if selector_matches(hook.get("namespaceSelector"), ns_labels) and selector_matches(
                    hook.get("objectSelector"), _labels(pod)):
                return config, hook
    return None


def injecting_revision(store: Store, pod: dict, namespace: dict | None) -> str | None:
    """The revision whose webhook would inject this pod, as the API server would call it."""
    found = injection_webhook(store, pod, namespace)
    return _labels(found[0]).get("istio.io/rev", "default") if found else None


def istiod_deployment(store: Store, revision: str) -> dict | None:
    for d in store.list("apps/v1", "deployments"):
        if _labels(d).get("app") == "istiod" or d["metadata"]["name"].startswith("istiod"):
            if _labels(d).get("istio.io/rev", "default") == revision:
                return d
    return None


def _image(deployment: dict | None) -> tuple[str, str]:
    """(hub, tag) of a Deployment's first container."""
    if not deployment:
        return "docker.io/istio", "1.28.0"
    image = deployment["spec"]["template"]["spec"]["containers"][0].get("image", "")
    repo, _, tag = image.rpartition(":")
    return repo.rsplit("/", 1)[0], tag


def _env(deployment: dict | None, name: str) -> str | None:
    for c in ((deployment or {}).get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []):
        for var in c.get("env") or []:
            if var.get("name") == name:
                return str(var.get("value"))
    return None


def has_cni(store: Store) -> bool:
    return any(_labels(d).get("k8s-app") == "istio-cni-node" for d in store.list("apps/v1", "daemonsets"))


def _minor(version: str) -> tuple[int, int]:
    return tuple(int(x) for x in re.findall(r"\d+", version)[:2]) or (1, 28)


def _native_sidecars(store: Store, istiod: dict | None, tag: str) -> bool:
    """ENABLE_NATIVE_SIDECARS: false up to 1.26, ``auto`` from 1.27 (native where the kubelet is 1.33 or newer;
    pkg/kube/inject/webhook.go DetectNativeSidecar; the pod is not scheduled yet, so every node must qualify)."""
    mode = _env(istiod, "ENABLE_NATIVE_SIDECARS") or ("auto" if _minor(_image(istiod)[1]) >= (1, 27) else "false")
    if mode != "auto":
        return mode == "true"
    nodes = store.list("v1", "nodes")
    return bool(nodes) and all(_minor(n["status"]["nodeInfo"]["kubeletVersion"]) >= (1, 33) for n in nodes)


def inject(store: Store, pod: dict, facts: dict, settings: dict) -> None:
    """Mutate a new pod the way istiod's injector would (shape of the release's golden injected pod)."""
    namespace = store.get("v1", "namespaces", None, pod["metadata"]["namespace"])
    # ``revision``: the pod was injected by that revision when it was created (it may be gone since)
    revision = str(facts["revision"]) if facts.get("revision") else injecting_revision(store, pod, namespace)
    if facts.get("injected") is False or (revision is None and not facts.get("injected")):
        return
    if any(c.get("name") == SIDECAR for c in pod["spec"].get("containers", [])):
        return  # gateways carry their proxy in the template
    revision = revision or "default"
    istiod = istiod_deployment(store, revision)
    hub, tag = _image(istiod)
    tag = str(facts.get("proxy_version") or tag)
    control_ns = (istiod or {}).get("metadata", {}).get("namespace", "istio-system")
    native = settings.get("native_sidecars")
    if native is None:
        native = _native_sidecars(store, istiod, tag)
    init_name = "istio-validation" if has_cni(store) else "istio-init"
    init = {"name": init_name, "image": f"{hub}/proxyv2:{tag}",
            "args": ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*",
                     "-x", "", "-b", "*", "-d", "15090,15021,15020"] + (["--run-validation", "--skip-rule-apply"]
                                                                        if init_name == "istio-validation" else [])}
    proxy = {"name": SIDECAR, "image": f"{hub}/proxyv2:{tag}",
             "args": ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local", "--proxyLogLevel=warning",
                      "--proxyComponentLogLevel=misc:error", "--log_output_level=default:info"],
             "env": [{"name": "PILOT_CERT_PROVIDER", "value": "istiod"},
                     {"name": "CA_ADDRESS", "value": f"istiod{'' if revision == 'default' else '-' + revision}"
                                                     f".{control_ns}.svc:15012"},
                     {"name": "ISTIO_META_CLUSTER_ID", "value": "Kubernetes"}],
             "ports": [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
             "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}}}
    spec = pod["spec"]
    spec.setdefault("initContainers", []).append(init)
    if native:
        spec["initContainers"].append({**proxy, "restartPolicy": "Always"})
    else:
        spec["containers"].append(proxy)
    meta = pod["metadata"]
    labels = meta.setdefault("labels", {})
    labels.setdefault("security.istio.io/tlsMode", "istio")
    labels.setdefault("service.istio.io/canonical-name", labels.get("app", meta["name"]))
    labels.setdefault("service.istio.io/canonical-revision", labels.get("version", "latest"))
    annotations = meta.setdefault("annotations", {})
    annotations["sidecar.istio.io/status"] = json.dumps({
        "initContainers": [init_name] + ([SIDECAR] if native else []), "containers": [] if native else [SIDECAR],
        "volumes": ["workload-socket", "credential-socket", "workload-certs", "istio-envoy", "istio-data",
                    "istio-podinfo", "istio-token", "istiod-ca-cert"],
        "imagePullSecrets": None, "revision": revision})
    _prometheus_merge(annotations, proxy, mesh_config(store, control_ns, revision))
    annotations.setdefault("istio.io/rev", revision)


def mesh_config(store: Store, namespace: str = "istio-system", revision: str = "default") -> dict:
    """The revision's mesh config (ConfigMap istio or istio-<rev>, key mesh); {} when there is none."""
    import yaml

    name = "istio" if revision == "default" else f"istio-{revision}"
    config_map = store.get("v1", "configmaps", namespace, name) or store.get("v1", "configmaps", namespace, "istio")
    return yaml.safe_load(((config_map or {}).get("data") or {}).get("mesh") or "") or {}


def _prometheus_merge(annotations: dict, proxy: dict, mesh: dict) -> None:
    """The injector's metrics merge (pkg/kube/inject/webhook.go applyPrometheusMerge): the app's prometheus.io
    annotations move into the proxy's ISTIO_PROMETHEUS_ANNOTATIONS and point at the agent's 15020 instead.
    Off for the pod with annotation prometheus.istio.io/merge-metrics false, else when the mesh config's
    enablePrometheusMerge is false (enablePrometheusMerge in the same file; default on)."""
    if annotations.get("prometheus.io/scrape", "true").lower() in ("false", "0", "f"):
        return
    merge = annotations.get("prometheus.istio.io/merge-metrics", mesh.get("enablePrometheusMerge", True))
    if str(merge).lower() in ("false", "0", "f"):
        return
    if annotations.get("prometheus.io/port") == "15020":
        return
    app = {k: annotations.pop(f"prometheus.io/{k}") for k in ("scrape", "port", "path")
           if f"prometheus.io/{k}" in annotations}
    if app:
        proxy["env"].append({"name": "ISTIO_PROMETHEUS_ANNOTATIONS", "value": json.dumps(app, separators=(",", ":"))})
    annotations.update({"prometheus.io/port": "15020", "prometheus.io/path": "/stats/prometheus",
                        "prometheus.io/scrape": "true"})


# After the controllers ran ---------------------------------------------------------------------

def apply(scenario, spec: dict, nodes: list[str], data_dir) -> None:
    """Everything a live istiod mesh does once pods exist; fills ``scenario.modern``."""
    store: Store = scenario.store
    settings = dict(spec.get("modern") or {})
    state = ModernState(settings)
    scenario.modern = state
    workloads = spec.get("workloads") or {}
    for ns in sorted({o["metadata"]["namespace"] for objs in store.objects.values() for o in objs.values()
                      if o["metadata"].get("namespace")}):  # the namespaces objects live in exist
        if not store.get("v1", "namespaces", None, ns):
            store.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    _run_daemonsets(store, nodes, spec.get("daemonsets") or {})
    _pod_ips(store, nodes)
    _container_states(store, workloads)
    if settings.get("istiod_patches", True):
        foreign = {name: (data_dir / path).read_text() for name, path in (settings.get("ca_bundles") or {}).items()}
        _istiod_patches(store, (data_dir / ROOT_CERT).read_text(), settings.get("validation_armed", True), foreign)
    _redirect_ambient(scenario, workloads)
    _ambient_status(store)
    _deployment_status(store)
    _refusals(store, workloads)
    _status_fields(store)
    for entry in spec.get("pod_proxy") or []:
        ns, _, selector = entry["pods"].partition("/")
        body = None
        if "file" in entry:
            body = (data_dir / entry["file"]).read_text()
        elif "json" in entry:
            body = json.dumps(entry["json"])
        elif "body" in entry:
            body = str(entry["body"])
        state.overrides.append(Override(ns, equality_selector(selector), str(entry["port"]),
                                        str(entry.get("path", "")).lstrip("/"), entry.get("status"), body,
                                        list(entry.get("edits") or []), entry.get("node")))
    for entry in spec.get("logs") or []:
        if entry.get("previous"):
            state.previous_logs.append((entry["namespace"], equality_selector(entry.get("selector", "")),
                                        entry["container"], list(entry.get("lines") or [])))
    _prometheus_targets(scenario)


def _ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _run_daemonsets(store: Store, nodes: list[str], facts_by_key: dict) -> None:
    for ds in store.list("apps/v1", "daemonsets"):
        meta = ds["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        facts = facts_by_key.get(key) or {}
        absent, unready = set(facts.get("absent") or []), set(facts.get("unready") or [])
        template = ds["spec"]["template"]
        ready = 0
        for i, node in enumerate(nodes):
            if node in absent:
                continue
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": copy.deepcopy(template.get("metadata") or {}),
                   "spec": copy.deepcopy(template["spec"])}
            pod["metadata"].update(name=f"{meta['name']}-{stable_suffix(key, node)}", namespace=meta["namespace"])
            pod["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "DaemonSet", "controller": True,
                                                   "name": meta["name"], "uid": f"{stable_suffix(key, length=8)}-ds"}]
            pod["spec"]["nodeName"] = node
            ok = node not in unready
            ready += ok
            statuses = [{"name": c["name"], "ready": ok, "restartCount": 0 if ok else 7, "image": c.get("image", ""),
                         "started": ok,
                         "state": {"running": {"startedAt": "2025-11-01T10:00:05Z"}} if ok else
                         {"waiting": {"reason": "CrashLoopBackOff"}}} for c in pod["spec"].get("containers", [])]
            pod["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ok else "False"}],
                             "containerStatuses": statuses, "hostIP": f"10.0.0.{10 + i}",
                             "podIP": f"10.0.0.{10 + i}" if pod["spec"].get("hostNetwork") else
                             f"10.244.{i}.{200 + len(meta['name']) % 50}",
                             "startTime": "2025-11-01T10:00:00Z"}
            store.add(pod)
        ds["status"] = {"desiredNumberScheduled": len(nodes), "currentNumberScheduled": len(nodes) - len(absent),
                        "numberReady": ready, "numberAvailable": ready, "updatedNumberScheduled": len(nodes),
                        "numberMisscheduled": 0, "observedGeneration": 1}


def _pod_ips(store: Store, nodes: list[str]) -> None:
    """One address per pod, from its node's pod CIDR (10.244.<node>.0/24); host-network pods keep the node's."""
    index = {name: i for i, name in enumerate(nodes)}
    used: dict[str, int] = {}
    for pod in store.list("v1", "pods"):
        node = pod["spec"].get("nodeName")
        status = pod.setdefault("status", {})
        if node not in index:
            continue
        status["hostIP"] = f"10.0.0.{10 + index[node]}"
        if pod["spec"].get("hostNetwork"):
            status["podIP"] = status["hostIP"]
        else:
            used[node] = used.get(node, 0) + 1
            status["podIP"] = f"10.244.{index[node]}.{(used[node] % 250) + 4}" if used[node] < 250 else \
                f"10.{245 + used[node] // 250}.{index[node]}.{used[node] % 250 + 4}"
        status["podIPs"] = [{"ip": status["podIP"]}]


def _owner_key(pod: dict) -> str | None:
    owner = next(iter(pod["metadata"].get("ownerReferences") or []), {})
    if owner.get("kind") == "StatefulSet":
        return f"{pod['metadata']['namespace']}/{owner['name']}"
    if owner.get("kind") != "ReplicaSet":
        return None
    return f"{pod['metadata']['namespace']}/{owner['name'].rsplit('-', 1)[0]}"


def _container_states(store: Store, workloads: dict) -> None:
    """Termination reasons, waiting states and native-sidecar statuses the generic controller leaves out."""
    for pod in store.list("v1", "pods"):
        facts = workloads.get(_owner_key(pod) or "") or {}
        status = pod.setdefault("status", {})
        restarts = facts.get("restarts") or {}
        native = [c for c in pod["spec"].get("initContainers") or [] if c.get("restartPolicy") == "Always"]
        if native and not status.get("initContainerStatuses"):
            ready = _ready(pod)
            status["initContainerStatuses"] = [
                {"name": c["name"], "ready": ready, "restartCount": int(restarts.get(c["name"], 0)),
                 "image": c.get("image", ""), "started": True,
                 "state": {"running": {"startedAt": "2025-11-01T10:00:03Z"}},
                 **({"lastState": {"terminated": {"exitCode": 134, "reason": "Error",
                                                  "finishedAt": "2025-11-01T10:00:02Z"}}}
                    if restarts.get(c["name"]) else {})}
                for c in native]
        every = (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or [])
        if "ready" in facts and _ready(pod):
            continue  # ``ready: N`` with waiting/terminated: the N ready replicas are the healthy ones
        for cs in every:
            term = (facts.get("terminated") or {}).get(cs["name"])
            if term:
                cs["lastState"] = {"terminated": {"exitCode": int(term.get("exitCode", 1)),
                                                  "reason": term.get("reason", "Error"),
                                                  "finishedAt": "2025-11-01T10:00:02Z"}}
                cs["restartCount"] = max(cs.get("restartCount", 0), 1)
            waiting = (facts.get("waiting") or {}).get(cs["name"])
            if waiting:
                cs["state"] = {"waiting": {"reason": waiting, "message": "back-off 5m0s restarting failed container"}}
                cs["ready"] = False
                cs["restartCount"] = max(cs.get("restartCount", 0), 5)
                status["conditions"] = [{"type": "Ready", "status": "False"}]


def _istiod_patches(store: Store, root_pem: str, arm_validation: bool, foreign: dict[str, str]) -> None:
    """istiod publishes its root cert to every namespace and writes it into its webhooks (``foreign``: webhook
    configurations left with another CA's bundle, e.g. from a previous install)."""
    import base64

    for ns in store.list("v1", "namespaces"):
        name = ns["metadata"]["name"]
        if not store.get("v1", "configmaps", name, CA_ROOT_CONFIGMAP):
            store.add({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": CA_ROOT_CONFIGMAP, "namespace": name,
                                    "labels": {"istio.io/config": "true"}},
                       "data": {"root-cert.pem": root_pem}})
    for plural in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
        for config in store.list("admissionregistration.k8s.io/v1", plural):
            bundle = base64.b64encode(foreign.get(config["metadata"]["name"], root_pem).encode()).decode()
            for hook in config.get("webhooks") or []:
                if not str(hook.get("name", "")).endswith("istio.io"):
                    continue
                client = hook.setdefault("clientConfig", {})
                if not client.get("caBundle"):
                    client["caBundle"] = bundle
                if arm_validation and plural.startswith("validating") and hook.get("failurePolicy") == "Ignore":
                    hook["failurePolicy"] = "Fail"


SANDBOX_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff"


def _node_agents(store: Store) -> dict[str, dict[str, bool]]:
    """Per node: is its ztunnel / istio-cni node agent pod there and Ready."""
    out: dict[str, dict[str, bool]] = {}
    for pod in store.list("v1", "pods"):
        role = "ztunnel" if _labels(pod).get("app") == "ztunnel" else (
            "cni" if _labels(pod).get("k8s-app") == "istio-cni-node" else None)
        if role:
            out.setdefault(pod["spec"].get("nodeName"), {})[role] = _ready(pod)
    return out


def ambient_enrolled(store: Store, pod: dict) -> bool:
    """The enablement selector istio-cni renders (AMBIENT_ENABLEMENT_SELECTOR): pod label ambient, or namespace label
    ambient without pod label none; never system namespaces or host-network pods. A sidecar wins (podHasSidecar)."""
    namespace = store.get("v1", "namespaces", None, pod["metadata"]["namespace"]) or {}
    pod_mode = _labels(pod).get("istio.io/dataplane-mode")
    mode = pod_mode or _labels(namespace).get("istio.io/dataplane-mode")
    return (mode == "ambient" and pod_mode != "none" and pod["metadata"]["namespace"] not in SYSTEM_NAMESPACES
            and not pod["spec"].get("hostNetwork"))


def _redirect_ambient(scenario, workloads: dict) -> None:
    """istio-cni enrols ambient pods (cni/pkg/nodeagent/meshdataplane_linux.go AddPodToMesh): with the node's agent
    and ztunnel ready the pod is annotated ``enabled``; with the agent ready but no ztunnel connected it is annotated
    ``pending`` and the CNI ADD fails; without a ready agent the plugin cannot reach it and the ADD fails. A pod whose
    sandbox cannot be set up stays Pending (ContainerCreating) with kubelet's FailedCreatePodSandBox events.
    Pods with a sidecar are never enrolled. ``workloads.<key>.redirection`` forces the annotation (a pod that was
    enrolled before the node lost its agents keeps running)."""
    store = scenario.store
    agents = _node_agents(store)
    if not any("cni" in a for a in agents.values()):
        return
    for pod in store.list("v1", "pods"):
        annotations = pod["metadata"].setdefault("annotations", {})
        if not ambient_enrolled(store, pod) or "sidecar.istio.io/status" in annotations:
            continue
        value = (workloads.get(_owner_key(pod) or "") or {}).get("redirection")
        node = agents.get(pod["spec"].get("nodeName"), {})
        if value is not None:
            if value != "none":
                annotations["ambient.istio.io/redirection"] = value
            continue
        if node.get("cni") and node.get("ztunnel"):
            annotations["ambient.istio.io/redirection"] = "enabled"
            continue
        if node.get("cni"):
            annotations["ambient.istio.io/redirection"] = "pending"
            error = "unable to push CNI event (status code 500): no ztunnel connection\n"
        else:
            error = ('failed to send event request: Post "http://unix/cmdadd": dial unix '
                     '/var/run/istio-cni/pluginevent.sock: connect: connection refused')
        _sandbox_failed(store, pod, f'Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup '
                                    f'network for sandbox "{SANDBOX_ID}": plugin type="istio-cni" name="istio-cni" '
                                    f'failed (add): {error}')


def _sandbox_failed(store: Store, pod: dict, message: str) -> None:
    status = pod["status"]
    status.update(phase="Pending", conditions=[{"type": "PodScheduled", "status": "True"},
                                               {"type": "Initialized", "status": "False"},
                                               {"type": "ContainersReady", "status": "False"},
                                               {"type": "Ready", "status": "False"}])
    status.pop("podIP", None)
    status.pop("podIPs", None)
    for cs in status.get("containerStatuses") or []:
        cs.update(ready=False, started=False, restartCount=0, state={"waiting": {"reason": "ContainerCreating"}})
        cs.pop("containerID", None)
        cs.pop("lastState", None)
        cs.pop("imageID", None)  # never pulled into a running sandbox
    meta = pod["metadata"]
    store.add({"apiVersion": "v1", "kind": "Event", "type": "Warning", "reason": "FailedCreatePodSandBox",
               "metadata": {"name": f"{meta['name']}.{stable_suffix(meta['name'], 'sandbox', length=16)}",
                            "namespace": meta["namespace"]},
               "involvedObject": {"kind": "Pod", "namespace": meta["namespace"], "name": meta["name"],
                                  "uid": meta.get("uid", ""), "apiVersion": "v1"},
               "source": {"component": "kubelet", "host": pod["spec"].get("nodeName")},
               "reportingComponent": "kubelet", "reportingInstance": pod["spec"].get("nodeName"),
               "firstTimestamp": "2025-11-01T10:01:00Z", "lastTimestamp": "2025-11-01T10:09:30Z", "count": 27,
               "message": message})


def _status_fields(store: Store) -> None:
    """Fields every container status carries (the real client requires image and imageID)."""
    for pod in store.list("v1", "pods"):
        status = pod.get("status") or {}
        for cs in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
            cs.setdefault("image", "")
            started = "running" in (cs.get("state") or {}) or cs.get("restartCount")
            digest = stable_suffix(cs["image"], length=12).encode().hex()
            cs.setdefault("imageID", f"{cs['image'].rpartition(':')[0]}@sha256:{digest}" if started else "")
            cs.setdefault("restartCount", 0)
            cs.setdefault("ready", False)


def _deployment_status(store: Store) -> None:
    """Deployments count the replicas that are Ready after the node agents had their say."""
    for d in store.list("apps/v1", "deployments"):
        key = f"{d['metadata']['namespace']}/{d['metadata']['name']}"
        pods = [p for p in store.list("v1", "pods", d["metadata"]["namespace"]) if _owner_key(p) == key]
        if pods and d.get("status"):
            ready = sum(_ready(p) for p in pods)
            d["status"].update(readyReplicas=ready, availableReplicas=ready)


# Pods the injection webhook refuses ----------------------------------------------------------------

# The error the API server's webhook client reports after `Post "URL": ` (Go's net/http and crypto/tls, the API
# server's service resolver, an HTTP(S) proxy refusing CONNECT); anything else is taken as the text itself.
CALL_ERRORS = {
    "x509": "tls: failed to verify certificate: x509: certificate signed by unknown authority",
    "connection-refused": "dial tcp {cluster_ip}:{port}: connect: connection refused",
    "no-endpoints": 'no endpoints available for service "{service}"',
    "deadline": "context deadline exceeded",
    "service-unavailable": "Service Unavailable",
}


def _refusals(store: Store, workloads: dict) -> None:
    """``workloads.<key>.refused``: the ReplicaSet controller's FailedCreate Events with the message the API server
    returns for a failing webhook call with failurePolicy Fail (k8s.io/apiserver admission/plugin/webhook/mutating
    dispatcher.go: ErrCallingWebhook "failed calling webhook %q: failed to call webhook: %w", wrapped by
    NewInternalError; the controller's "Error creating: %v"), and the Deployment's ReplicaFailure condition (the
    ReplicaSet's, copied by the Deployment controller). ``recovered``: the pods were created once the webhook
    answered again; only the Events (kept for --event-ttl, 1h) tell."""
    for key, facts in workloads.items():
        if not facts.get("refused"):
            continue
        ns, name = key.split("/", 1)
        deployment = store.get("apps/v1", "deployments", ns, name)
        template = deployment["spec"]["template"]
        pod = {"metadata": {"namespace": ns, "labels": dict(_labels(template))}, "spec": template["spec"]}
        config, hook = injection_webhook(store, pod, store.get("v1", "namespaces", None, ns))
        service = (hook.get("clientConfig") or {}).get("service") or {}
        port = service.get("port", 443)
        found = store.get("v1", "services", service.get("namespace"), service.get("name")) or {}
        error = CALL_ERRORS.get(str(facts["refused"]), str(facts["refused"])).format(
            cluster_ip=(found.get("spec") or {}).get("clusterIP", ""), port=port, service=service.get("name"))
        url = (f"https://{service.get('name')}.{service.get('namespace')}.svc:{port}{service.get('path', '')}"
               f"?timeout={hook.get('timeoutSeconds', 10)}s")
        failure = (f'Internal error occurred: failed calling webhook "{hook["name"]}": failed to call webhook: '
                   f'Post "{url}": {error}')
        replica_set = f"{name}-{stable_suffix(key, length=10)}"
        recovered = bool(facts.get("recovered"))
        involved = {"kind": "ReplicaSet", "namespace": ns, "name": replica_set, "apiVersion": "apps/v1",
                    "uid": f"{stable_suffix(key, 'rs', length=8)}-0000-4000-8000-0"}
        store.add({"apiVersion": "v1", "kind": "Event", "type": "Warning", "reason": "FailedCreate",
                   "metadata": {"name": f"{replica_set}.{stable_suffix(key, 'failed', length=16)}", "namespace": ns,
                                "creationTimestamp": "2025-11-01T10:01:10Z"},
                   "involvedObject": involved, "source": {"component": "replicaset-controller"},
                   "reportingComponent": "replicaset-controller", "reportingInstance": "",
                   "firstTimestamp": "2025-11-01T10:01:10Z",
                   "lastTimestamp": "2025-11-01T10:02:40Z" if recovered else "2025-11-01T10:09:40Z",
                   "count": 4 if recovered else 17, "message": f"Error creating: {failure}"})
        pods = [p for p in store.list("v1", "pods", ns) if _owner_key(p) == key]
        for p in pods if recovered else []:
            p["metadata"]["creationTimestamp"] = "2025-11-01T10:02:55Z"
            store.add({"apiVersion": "v1", "kind": "Event", "type": "Normal", "reason": "SuccessfulCreate",
                       "metadata": {"name": f"{replica_set}.{stable_suffix(p['metadata']['name'], length=16)}",
                                    "namespace": ns, "creationTimestamp": "2025-11-01T10:02:55Z"},
                       "involvedObject": involved, "source": {"component": "replicaset-controller"},
                       "reportingComponent": "replicaset-controller", "reportingInstance": "",
                       "firstTimestamp": "2025-11-01T10:02:55Z", "lastTimestamp": "2025-11-01T10:02:55Z",
                       "count": 1, "message": f"Created pod: {p['metadata']['name']}"})
        if recovered:
            continue
        status = deployment["status"]
        status["unavailableReplicas"] = deployment["spec"]["replicas"] - status.get("availableReplicas", 0)
        since = {"lastUpdateTime": "2025-11-01T10:01:10Z", "lastTransitionTime": "2025-11-01T10:01:10Z"}
        status["conditions"] = [
            {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
             "message": "Deployment does not have minimum availability.", **since},
            {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": failure, **since},
            {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
             "message": f'ReplicaSet "{replica_set}" is progressing.', **since}]


# Waypoints, bindings and policy status (what istiod writes) ------------------------------------

WAYPOINT_CLASS = "istio-waypoint"


def _waypoints(store: Store) -> list[dict]:
    return [g for api, plural in list(store.resources)
            if plural == "gateways" and api.startswith("gateway.networking.k8s.io")
            for g in store.list(api, plural) if (g.get("spec") or {}).get("gatewayClassName") == WAYPOINT_CLASS]


def prepare(store: Store, spec: dict) -> None:
    """Before the controllers run: istiod's GatewayClasses and, per waypoint Gateway, the ServiceAccount, Deployment
    and Service of files/waypoint.yaml (istio-discovery chart 1.28.0; the Deployment is then run like any other)."""
    gatewayclasses = next((api for api, plural in store.resources if plural == "gatewayclasses"
                           and api == "gateway.networking.k8s.io/v1"), None)
    ambient = any(_env(d, "PILOT_ENABLE_AMBIENT") == "true" for d in store.list("apps/v1", "deployments")
                  if _labels(d).get("app") == "istiod")
    if gatewayclasses:
        classes = [("istio", "istio.io/gateway-controller", "The default Istio GatewayClass")]
        if ambient:
            classes.append((WAYPOINT_CLASS, "istio.io/mesh-controller", "The default Istio waypoint GatewayClass"))
        for name, controller, description in classes:
            store.add({"apiVersion": gatewayclasses, "kind": "GatewayClass", "metadata": {"name": name},
                       "spec": {"controllerName": controller, "description": description},
                       "status": {"conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                                                  "message": "Handled by Istio controller", "observedGeneration": 1,
                                                  "lastTransitionTime": "2025-11-01T10:00:00Z"}]}})
    istiod = next((d for d in store.list("apps/v1", "deployments") if _labels(d).get("app") == "istiod"), None)
    hub, tag = _image(istiod)
    for gw in _waypoints(store):
        name, ns = gw["metadata"]["name"], gw["metadata"]["namespace"]
        labels = {"gateway.networking.k8s.io/gateway-name": name,
                  "gateway.networking.k8s.io/gateway-class-name": WAYPOINT_CLASS}
        owner = [{"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "Gateway", "name": name,
                  "uid": gw["metadata"].get("uid", "")}]
        for_ = _labels(gw).get("istio.io/waypoint-for")
        store.add({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": owner}})
        store.add({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {
            "name": name, "namespace": ns, "labels": {**labels, "gateway.istio.io/managed": "istio.io-mesh-controller"},
            "ownerReferences": owner}, "spec": {
            "selector": {"matchLabels": {"gateway.networking.k8s.io/gateway-name": name}},
            "template": {"metadata": {
                "annotations": {"istio.io/rev": "default", "prometheus.io/path": "/stats/prometheus",
                                "prometheus.io/port": "15020", "prometheus.io/scrape": "true"},
                "labels": {"sidecar.istio.io/inject": "false", "istio.io/dataplane-mode": "none",
                           "service.istio.io/canonical-name": name, "service.istio.io/canonical-revision": "latest",
                           **labels, "gateway.istio.io/managed": "istio.io-mesh-controller",
                           **({"istio.io/waypoint-for": for_} if for_ else {})}},
                "spec": {"serviceAccountName": name, "containers": [{
                    "name": SIDECAR, "image": f"{hub}/proxyv2:{tag}",
                    "args": ["proxy", "waypoint", "--domain", "$(POD_NAMESPACE).svc.cluster.local",
                             "--serviceCluster", f"{name}.$(POD_NAMESPACE)", "--proxyLogLevel", "warning",
                             "--proxyComponentLogLevel", "misc:error", "--log_output_level", "default:info"],
                    "ports": [{"containerPort": 15020, "name": "metrics", "protocol": "TCP"},
                              {"containerPort": 15021, "name": "status-port", "protocol": "TCP"},
                              {"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
                    "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}}}]}}}})
        ports = [{"name": str(ln.get("name")), "port": int(ln.get("port")), "protocol": "TCP",
                  "appProtocol": "all" if ln.get("protocol") == "HBONE" else str(ln.get("protocol", "")).lower()}
                 for ln in (gw.get("spec") or {}).get("listeners") or []]
        store.add({"apiVersion": "v1", "kind": "Service", "metadata": {
            "name": name, "namespace": ns, "labels": labels, "ownerReferences": owner,
            "annotations": {"networking.istio.io/traffic-distribution": "PreferClose"}},
            "spec": {"ipFamilyPolicy": "PreferDualStack", "type": "ClusterIP",
                     "ports": [{"name": "status-port", "port": 15021, "protocol": "TCP", "appProtocol": "tcp"}] + ports,
                     "selector": {"gateway.networking.k8s.io/gateway-name": name}}})


def _condition(kind: str, status: bool, reason: str, message: str) -> dict:
    return {"type": kind, "status": "True" if status else "False", "reason": reason, "message": message,
            "observedGeneration": 1, "lastTransitionTime": "2025-11-01T10:00:10Z"}


def _ambient_status(store: Store) -> None:
    """Gateway, Service and AuthorizationPolicy status as istiod writes it for ambient (conversion.go
    setProgrammedCondition, ambient/status.go, model/service.go conditions, ambient/authorization.go)."""
    programmed = {}
    for gw in _waypoints(store):
        name, ns = gw["metadata"]["name"], gw["metadata"]["namespace"]
        pods = [p for p in store.list("v1", "pods", ns)
                if _labels(p).get("gateway.networking.k8s.io/gateway-name") == name]
        service = store.get("v1", "services", ns, name) or {}
        host = f"{name}.{ns}.svc.cluster.local"
        ok = any(_ready(p) for p in pods)
        programmed[(ns, name)] = ok
        gw["status"] = {
            "conditions": [
                _condition("Accepted", True, "Accepted", "Resource accepted"),
                _condition("Programmed", True, "Programmed",
                           f"Resource programmed, assigned to service(s) {host}:15008")
                if ok else _condition("Programmed", False, "AddressNotUsable",
                                      f"Failed to assign to any requested addresses: hostname \"{host}\" has no ready "
                                      "endpoints")],
            "addresses": [{"type": "Hostname", "value": host}] + (
                [{"type": "IPAddress", "value": service["spec"].get("clusterIP")}] if ok and service else []),
            "listeners": [{"name": ln.get("name"), "attachedRoutes": 0, "supportedKinds": [],
                           "conditions": [_condition("Accepted", True, "Accepted", "No errors found"),
                                          _condition("Programmed", True, "Programmed", "No errors found")]}
                          for ln in (gw.get("spec") or {}).get("listeners") or []]}
    namespaces = {n["metadata"]["name"]: _labels(n) for n in store.list("v1", "namespaces")}
    for svc in store.list("v1", "services"):
        ns = svc["metadata"]["namespace"]
        wanted = _labels(svc).get("istio.io/use-waypoint") or namespaces.get(ns, {}).get("istio.io/use-waypoint")
        if not wanted or wanted == "none" or _labels(svc).get("gateway.networking.k8s.io/gateway-name"):
            continue
        wp_ns = _labels(svc).get("istio.io/use-waypoint-namespace") or namespaces.get(ns, {}).get(
            "istio.io/use-waypoint-namespace") or ns
        ref = f"{wp_ns}/{wanted}"
        if programmed.get((wp_ns, wanted)):
            cond = _condition("istio.io/WaypointBound", True, "WaypointAccepted",
                              f"Successfully attached to waypoint {ref}")
        else:
            cond = _condition("istio.io/WaypointBound", False, "WaypointIsNotReady", f'waypoint "{ref}" is not ready')
        svc.setdefault("status", {})["conditions"] = [cond]
    ambient_pods = [p for p in store.list("v1", "pods") if ambient_enrolled(store, p)
                    and "sidecar.istio.io/status" not in (p["metadata"].get("annotations") or {})]
    root = "istio-system"
    for api, plural in list(store.resources):
        if plural != "authorizationpolicies":
            continue
        for policy in store.list(api, plural):
            spec, ns = policy.get("spec") or {}, policy["metadata"]["namespace"]
            if spec.get("targetRef") or spec.get("targetRefs"):
                continue  # bound to a waypoint or gateway; ztunnel does not take it
            selector = spec.get("selector")
            selected = [p for p in ambient_pods if (ns == root or p["metadata"]["namespace"] == ns)
                        and selector_matches(selector, _labels(p))]
            if not selected:
                continue
            found = sorted({field for rule in spec.get("rules") or [] for field in _l7_fields(rule)})
            if found:
                boilerplate = ("DENY policy with HTTP attributes is enforced without the HTTP rules. This will be more "
                               "restrictive than requested.") if spec.get("action") == "DENY" else (
                    "Within an ALLOW policy, rules matching HTTP attributes are omitted. This will be more restrictive "
                    "than requested.")
                cond = _condition("ZtunnelAccepted", True, "UnsupportedValue",
                                  f"ztunnel does not support HTTP attributes (found: {', '.join(found)}). In ambient "
                                  f"mode you must use a waypoint proxy to enforce HTTP rules. {boilerplate}")
            else:
                cond = _condition("ZtunnelAccepted", True, "Accepted", "attached to ztunnel")
            policy["status"] = {"conditions": [cond]}


def _l7_fields(rule: dict) -> list[str]:
    out = []
    for to in rule.get("to") or []:
        op = to.get("operation") or {}
        out += [k for k in ("hosts", "notHosts", "methods", "notMethods", "paths", "notPaths") if op.get(k)]
    for src in rule.get("from") or []:
        source = src.get("source") or {}
        out += [k for k in ("requestPrincipals", "notRequestPrincipals") if source.get(k)]
    out += [w["key"] for w in rule.get("when") or [] if str(w.get("key", "")).startswith("request.")]
    return out


# Payloads -----------------------------------------------------------------------------------------

def _proxy_container(pod: dict) -> dict | None:
    for c in pod["spec"].get("containers", []) + [
            c for c in pod["spec"].get("initContainers") or [] if c.get("restartPolicy") == "Always"]:
        if c.get("name") == SIDECAR:
            return c
    return None


def _tag(container: dict | None) -> str:
    """The build version of an image: its tag without the image variant (``1.28.0-distroless`` runs 1.28.0)."""
    tag = (container or {}).get("image", ":1.28.0").rpartition(":")[2]
    return re.sub(r"-(distroless|debug)$", "", tag)


def _revision(pod: dict) -> str:
    status = (pod["metadata"].get("annotations") or {}).get("sidecar.istio.io/status")
    if status:
        try:
            return json.loads(status).get("revision") or "default"
        except ValueError:
            pass
    return _labels(pod).get("istio.io/rev", "default")


def _running(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running"


def xds_clients(store: Store) -> list[tuple[str, str]]:
    """(revision, version) of every running xDS client: sidecars, gateways, waypoints, ztunnels."""
    out = []
    for pod in store.list("v1", "pods"):
        if not _running(pod):
            continue
        proxy = _proxy_container(pod)
        if proxy is not None and _labels(pod).get("app") != "ztunnel":
            out.append((_revision(pod), _tag(proxy)))
        elif _labels(pod).get("app") == "ztunnel":
            out.append(("default", _tag(pod["spec"]["containers"][0])))
    return out


def _metric(name: str, kind: str, samples: list[tuple[dict, float]], help_text: str = "") -> str:
    lines = [f"# HELP {name} {help_text or name}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        rendered = ",".join(f'{k}="{v}"' for k, v in labels.items())
        lines.append(f"{name}{{{rendered}}} {value:g}" if rendered else f"{name} {value:g}")
    return "\n".join(lines) + "\n"


def _istiod_metrics(scenario, pod: dict) -> str:
    store = scenario.store
    revision = _labels(pod).get("istio.io/rev", "default")
    replicas = sorted(p["metadata"]["name"] for p in store.list("v1", "pods", pod["metadata"]["namespace"])
                      if _labels(p).get("app") == "istiod" and _ready(p)
                      and _labels(p).get("istio.io/rev", "default") == revision)
    clients = [v for rev, v in xds_clients(store) if rev == revision]
    wanted = scenario.modern.settings.get("connected")
    if wanted is not None and clients:
        clients = (clients * (int(wanted) // len(clients) + 1))[:int(wanted)]
    index = replicas.index(pod["metadata"]["name"]) if pod["metadata"]["name"] in replicas else -1
    mine = [v for i, v in enumerate(clients) if replicas and i % len(replicas) == index]
    by_version: dict[str, int] = {}
    for version in mine:
        by_version[version] = by_version.get(version, 0) + 1
    tag = _tag(pod["spec"]["containers"][0])
    minor = tuple(int(x) for x in re.findall(r"\d+", tag)[:2]) or (1, 28)
    text = _metric("pilot_xds", "gauge", [({"version": v}, n) for v, n in sorted(by_version.items())]
                   or [({"version": tag}, 0)], "Number of endpoints connected to this pilot using XDS.")
    pushes = [({"type": t}, 40 + len(mine)) for t in ("cds", "eds", "lds", "rds")]
    text += _metric("pilot_xds_pushes", "counter", pushes, "Pilot build and send errors for lds, rds, cds and eds.")
    text += _metric("pilot_info", "gauge", [({"version": f"{tag}-{stable_suffix(tag, length=8)}-Clean"}, 1)],
                    "Pilot version and build information.")
    text += _metric("sidecar_injection_success_total", "counter", [({}, 25)],
                    "Total number of successful sidecar injection requests.")
    if minor >= (1, 23):
        text += _metric("citadel_server_root_cert_expiry_seconds", "gauge", [({}, 315360000)],
                        "The time remaining, in seconds, before the root cert will expire.")
    text += _metric("citadel_server_root_cert_expiry_timestamp", "gauge", [({}, 2077000000)],
                    "The unix timestamp, in seconds, when the root cert will expire.")
    return text


def _agent_metrics(pod: dict) -> str:
    text = _metric("istio_agent_cert_expiry_seconds", "gauge",
                   [({"resource_name": "default"}, 72000), ({"resource_name": "ROOTCA"}, 315000000)],
                   "The time remaining, in seconds, before the certificate chain will expire.")
    text += _metric("istio_agent_process_max_fds", "gauge", [({}, 1048576)], "Maximum number of open file descriptors.")
    text += _metric("istio_agent_process_open_fds", "gauge", [({}, 42)], "Number of open file descriptors.")
    text += _metric("istio_agent_istiod_connection_failures", "counter", [({}, 0)],
                    "The total number of connection failures to istiod")
    return text


def _envoy_metrics(pod: dict, proxy: dict) -> str:
    labels = _labels(pod)
    workload = labels.get("app", pod["metadata"]["name"])
    ns = pod["metadata"]["namespace"]
    text = _metric("istio_build", "gauge", [({"component": "proxy", "tag": _tag(proxy)}, 1)],
                   "Istio component build info")
    text += _metric("istio_requests_total", "counter", [({
        "reporter": "destination", "source_workload": "istio-ingressgateway",
        "source_workload_namespace": "istio-system",
        "destination_workload": workload, "destination_workload_namespace": ns,
        "destination_service": f"{workload}.{ns}.svc.cluster.local", "request_protocol": "http",
        "response_code": "200", "response_flags": "-", "connection_security_policy": "mutual_tls"}, 12)])
    return text


def _openmetric(name: str, kind: str, help_text: str, samples: list[tuple[dict, float]]) -> str:
    """prometheus-client (Rust, 0.23) text: help ends with a period, counters get ``_total`` on their samples."""
    lines = [f"# HELP {name} {help_text}.", f"# TYPE {name} {kind}"]
    sample = f"{name}_total" if kind == "counter" else name
    for labels, value in samples:
        rendered = ",".join(f'{k}="{v}"' for k, v in labels.items())
        lines.append(f"{sample}{{{rendered}}} {value:g}" if rendered else f"{sample} {value:g}")
    return "\n".join(lines) + "\n"


def _ztunnel_metrics(scenario, pod: dict) -> str:
    """ztunnel's 15020/metrics (src/inpod/metrics.rs under ``workload_manager``, src/proxy/metrics.rs under ``istio``):
    the node's captured pods as its active proxies, less the ones ``modern.ztunnel.<node>.lost`` says it lost."""
    store = scenario.store
    node = pod["spec"].get("nodeName")
    facts = ((scenario.modern.settings.get("ztunnel") or {}).get(node) or {})
    captured = [p for p in store.list("v1", "pods") if p["spec"].get("nodeName") == node
                and (p["metadata"].get("annotations") or {}).get("ambient.istio.io/redirection") == "enabled"]
    active = max(len(captured) - int(facts.get("lost", 0)), 0)
    pending = int(facts.get("pending", 0))
    text = _openmetric("workload_manager_active_proxy_count", "gauge",
                       "The total number current workloads with active proxies (unstable)", [({}, active)])
    text += _openmetric("workload_manager_pending_proxy_count", "gauge",
                        "The total number current workloads with pending proxies (unstable)", [({}, pending)])
    text += _openmetric("workload_manager_proxies_started", "counter",
                        "The total number of proxies that were started (unstable)", [({}, active + pending)])
    text += _openmetric("workload_manager_proxies_stopped", "counter",
                        "The total number of proxies that were stopped (unstable)", [({}, 0)])
    text += _openmetric("istio_build", "gauge", "Istio component build info",
                        [({"component": "ztunnel", "tag": _tag(pod["spec"]["containers"][0])}, 1)])
    traffic = []
    for dst in captured[:active]:
        labels = _labels(dst)
        ns = dst["metadata"]["namespace"]
        app = labels.get("app", dst["metadata"]["name"])
        traffic.append(({"reporter": "destination", "source_workload": "unknown", "source_canonical_service": "unknown",
                         "source_canonical_revision": "unknown", "source_workload_namespace": "unknown",
                         "source_principal": "unknown", "source_app": "unknown", "source_version": "unknown",
                         "source_cluster": "unknown", "destination_service": f"{app}.{ns}.svc.cluster.local",
                         "destination_service_namespace": ns, "destination_service_name": app,
                         "destination_workload": _owner_key(dst).split("/")[1] if _owner_key(dst) else app,
                         "destination_canonical_service": app,
                         "destination_canonical_revision": labels.get("version", "latest"),
                         "destination_workload_namespace": ns,
                         "destination_principal": f"spiffe://cluster.local/ns/{ns}/sa/default",
                         "destination_app": app, "destination_version": labels.get("version", "unknown"),
                         "destination_cluster": "Kubernetes", "request_protocol": "tcp", "response_flags": "-",
                         "connection_security_policy": "mutual_tls"}, 20))
    for event in ("opened", "closed"):
        text += _openmetric(f"istio_tcp_connections_{event}", "counter",
                            f"The total number of TCP connections {event}", traffic)
    return text + "# EOF\n"


def ztunnel_log(pod: dict) -> list[str]:
    """What a healthy ztunnel prints at start (tracing format: time, level, target, message, fields)."""
    return ["2025-11-01T10:00:05.102342Z\tinfo\tztunnel\tversion: version.BuildInfo{Version:\"1.28.0\", "
            "GitRevision:\"b8d1df54465060428c2a2a38286e360beb85fb31\", RustVersion:\"1.88.0\", "
            "BuildProfile:\"release\", "
            "BuildStatus:\"Clean\", GitTag:\"1.28.0\", IstioVersion:\"1.28.0\"}",
            "2025-11-01T10:00:05.231018Z\tinfo\txds::client:xds{id=1}\tStream established",
            "2025-11-01T10:00:05.240990Z\tinfo\txds::client:xds{id=1}\treceived response\t"
            "type_url=\"type.googleapis.com/"
            "istio.workload.Address\" size=42 removes=0",
            f"2025-11-01T10:00:05.301554Z\tinfo\tinpod::statemanager\tztunnel connected to istio-cni on node "
            f"{pod['spec'].get('nodeName')}"]


def _refused(pod: dict, port: str) -> bool:
    """The container that listens on ``port`` is not running (crash loop): nothing accepts the connection."""
    status = pod.get("status") or {}
    statuses = {cs["name"]: cs for cs in (status.get("containerStatuses") or [])
                + (status.get("initContainerStatuses") or [])}
    labels = _labels(pod)
    if port in ("15020", "15021", "15090") and SIDECAR in statuses:
        name = SIDECAR
    elif labels.get("app") in ("istiod", "ztunnel") or labels.get("k8s-app") == "istio-cni-node":
        name = pod["spec"]["containers"][0]["name"]
    else:
        return False
    return "running" not in ((statuses.get(name) or {}).get("state") or {"running": {}})


def _default(scenario, pod: dict, port: str, path: str) -> tuple[int, str]:
    labels = _labels(pod)
    ready = _ready(pod)
    if not _running(pod):
        return 503, "pod is not running\n"
    if _refused(pod, port):  # the API server's proxy answers with a Status, as kube-apiserver does
        return 503, json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": f"error trying to reach service: dial tcp "
                                           f"{(pod.get('status') or {}).get('podIP')}:{port}: connect: "
                                           "connection refused", "reason": "ServiceUnavailable", "code": 503})
    if labels.get("app") == "istiod":
        if port == "8080" and path == "ready":
            return (200, "") if ready else (503, "not ready\n")
        if port == "15014" and path == "metrics":
            return 200, _istiod_metrics(scenario, pod)
        if port == "15014" and path == "version":
            return 200, _tag(pod["spec"]["containers"][0]) + "\n"
        if port == "15014" and path.startswith("debug"):
            return 401, "Unauthorized\n"
    if labels.get("app") == "ztunnel":
        if port == "15020" and path in ("metrics", "stats/prometheus"):
            return 200, _ztunnel_metrics(scenario, pod)
        if port == "15021" and path == "healthz/ready":
            return (200, "") if ready else (503, "not ready\n")
    if labels.get("k8s-app") == "istio-cni-node":
        if port == "8000" and path in ("readyz", "healthz"):
            return (200, "") if ready else (503, "not ready\n")
        if port == "15014" and path == "metrics":
            return 200, _metric("istio_cni_install_ready", "gauge", [({}, 1 if ready else 0)])
    proxy = _proxy_container(pod)
    if proxy is not None:
        if port in ("15020", "15021") and path == "healthz/ready":
            return (200, "") if ready else (503, "Envoy proxy is NOT ready\n")
        if port == "15020" and path in ("stats/prometheus", "metrics"):
            return 200, _agent_metrics(pod) + _envoy_metrics(pod, proxy)
        if port == "15090" and path == "stats/prometheus":
            return 200, _envoy_metrics(pod, proxy)
    return 404, "404 page not found\n"


def pod_proxy(scenario, pod: dict, port: str, path: str) -> tuple[int, bytes, str]:
    from kubesim.scenario import _edit

    status, body = _default(scenario, pod, port, path)
    for rule in scenario.modern.overrides:
        if rule.namespace == pod["metadata"]["namespace"] and rule.port == port and rule.path == path and all(
                _labels(pod).get(k) == v for k, v in rule.selector.items()) and rule.node in (
                None, pod["spec"].get("nodeName")):
            if rule.body is not None:
                body = rule.body
            if rule.status is not None:
                status = int(rule.status)
            for edit in rule.edits:
                body = _edit(body, edit)
    content_type = "application/json" if body.lstrip()[:1] in "[{" else "text/plain; version=0.0.4"
    if body.rstrip().endswith("# EOF"):  # ztunnel answers in OpenMetrics
        content_type = "application/openmetrics-text;charset=utf-8;version=1.0.0"
    return status, body.encode(), content_type


def previous_log(scenario, pod: dict, container: str) -> str | None:
    """Lines of the container's previous instance, or None when it never terminated."""
    lines = []
    for ns, selector, name, rule_lines in scenario.modern.previous_logs:
        if ns == pod["metadata"]["namespace"] and name == container and all(
                _labels(pod).get(k) == v for k, v in selector.items()):
            lines += rule_lines
    statuses = (pod.get("status") or {}).get("containerStatuses", []) + (pod.get("status") or {}).get(
        "initContainerStatuses", [])
    restarted = any(s.get("name") == container and s.get("restartCount") for s in statuses)
    if not lines and not restarted:
        return None
    return "".join(line.rstrip("\n") + "\n" for line in lines)


def _sanitize(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def _discovered(pod: dict) -> list[dict]:
    """Prometheus' kubernetes_sd ``role: pod``: one target per declared container port (app containers, then init
    containers), a port-less one for a container without ports; discovered labels as Prometheus names them."""
    meta, status = pod["metadata"], pod.get("status") or {}
    owner = next(iter(meta.get("ownerReferences") or []), {})
    common = {"__meta_kubernetes_namespace": meta["namespace"], "__meta_kubernetes_pod_name": meta["name"],
              "__meta_kubernetes_pod_ip": status.get("podIP", ""),
              "__meta_kubernetes_pod_host_ip": status.get("hostIP", ""),
              "__meta_kubernetes_pod_node_name": pod["spec"].get("nodeName", ""),
              "__meta_kubernetes_pod_phase": status.get("phase", ""),
              "__meta_kubernetes_pod_ready": "true" if _ready(pod) else "false",
              "__meta_kubernetes_pod_uid": meta.get("uid", ""),
              "__meta_kubernetes_pod_controller_kind": owner.get("kind", ""),
              "__meta_kubernetes_pod_controller_name": owner.get("name", "")}
    for prefix, values in (("label", meta.get("labels") or {}), ("annotation", meta.get("annotations") or {})):
        for key, value in values.items():
            common[f"__meta_kubernetes_pod_{prefix}_{_sanitize(key)}"] = str(value)
            common[f"__meta_kubernetes_pod_{prefix}present_{_sanitize(key)}"] = "true"
    out = []
    containers = [(c, False) for c in pod["spec"].get("containers") or []] + [
        (c, True) for c in pod["spec"].get("initContainers") or []]
    for container, init in containers:
        base = {**common, "__meta_kubernetes_pod_container_name": container["name"],
                "__meta_kubernetes_pod_container_image": container.get("image", ""),
                "__meta_kubernetes_pod_container_init": "true" if init else "false"}
        ports = container.get("ports") or []
        if not ports and not init:
            out.append({**base, "__address__": common["__meta_kubernetes_pod_ip"]})
        for port in ports:
            out.append({**base, "__address__": f"{common['__meta_kubernetes_pod_ip']}:{port['containerPort']}",
                        "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                        "__meta_kubernetes_pod_container_port_number": str(port["containerPort"]),
                        "__meta_kubernetes_pod_container_port_protocol": port.get("protocol", "TCP")})
    return out


def covers(pods: str, pod: dict) -> bool:
    """Whether a scenario's ``pods: ns | ns/k=v,k2=v2 | "*"`` takes in this pod."""
    ns, _, selector = str(pods).partition("/")
    return ns in ("*", pod["metadata"]["namespace"]) and all(
        _labels(pod).get(k) == v for k, v in equality_selector(selector).items())


def _relabel(labels: dict, rules: list[dict]) -> dict | None:
    """Prometheus relabel_configs (replace, keep, drop, labelmap, labeldrop, labelkeep); None when dropped.
    Accepts the operator's camelCase keys too (sourceLabels, targetLabel)."""
    labels = dict(labels)
    for rule in rules:
        action = rule.get("action", "replace").lower()
        pattern = rule.get("regex", "(.*)")  # a string field in Prometheus' Go config: YAML ``true`` means "true"
        regex = re.compile(f"^(?:{str(pattern).lower() if isinstance(pattern, bool) else pattern})$")
        sources = rule.get("source_labels") or rule.get("sourceLabels") or []
        value = rule.get("separator", ";").join(labels.get(name, "") for name in sources)
        replacement = re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", str(rule.get("replacement", "$1")))
        target = rule.get("target_label") or rule.get("targetLabel")
        if action == "keep" and not regex.match(value):
            return None
        if action == "drop" and regex.match(value):
            return None
        if action == "replace" and target and (match := regex.match(value)):
            result = match.expand(replacement)
            if result:
                labels[target] = result
            else:
                labels.pop(target, None)
        if action == "labelmap":
            for name in list(labels):
                if match := regex.match(name):
                    labels[match.expand(replacement)] = labels[name]
        if action == "labeldrop":
            labels = {k: v for k, v in labels.items() if not regex.match(k)}
        if action == "labelkeep":
            labels = {k: v for k, v in labels.items() if regex.match(k) or k.startswith("__")}
    return labels


def _scrape_jobs(store: Store, namespace: str) -> list[dict]:
    """The pod-role jobs Prometheus runs: the sample add-on's prometheus.yml, and what the operator generates from
    PodMonitors (job ``<ns>/<name>``, pool ``podMonitor/<ns>/<name>/<i>``)."""
    import yaml

    jobs = []
    for cm in store.list("v1", "configmaps", namespace):
        text = (cm.get("data") or {}).get("prometheus.yml")
        for job in (yaml.safe_load(text) or {}).get("scrape_configs") or [] if text else []:
            if any(sd.get("role") == "pod" for sd in job.get("kubernetes_sd_configs") or []):
                jobs.append({"name": job["job_name"], "job": job["job_name"], "rules": job.get("relabel_configs") or [],
                             "path": job.get("metrics_path", "/metrics"), "interval": job.get("scrape_interval", "15s"),
                             "select": lambda pod: True})
    for api, plural in store.resources:
        if plural != "podmonitors":
            continue
        for monitor in store.list(api, plural):
            meta, spec = monitor["metadata"], monitor.get("spec") or {}
            namespaces = spec.get("namespaceSelector") or {}
            for i, endpoint in enumerate(spec.get("podMetricsEndpoints") or []):
                def select(pod, spec=spec, namespaces=namespaces, ns=meta["namespace"]):
                    in_ns = namespaces.get("any") or pod["metadata"]["namespace"] in (
                        namespaces.get("matchNames") or [ns])
                    return in_ns and selector_matches(spec.get("selector"), _labels(pod))
                rules = list(endpoint.get("relabelings") or [])
                if endpoint.get("port"):
                    rules.insert(0, {"action": "keep", "sourceLabels": ["__meta_kubernetes_pod_container_port_name"],
                                     "regex": endpoint["port"]})
                jobs.append({"name": f"podMonitor/{meta['namespace']}/{meta['name']}/{i}",
                             "job": f"{meta['namespace']}/{meta['name']}", "rules": rules,
                             "path": endpoint.get("path", "/metrics"), "interval": endpoint.get("interval", "30s"),
                             "select": select})
    return jobs


def _prometheus_targets(scenario) -> None:
    """Prometheus' /api/v1/targets: its pod-role jobs applied to the pods with Prometheus' own discovery and
    relabelling (so ``discoveredLabels`` hold the container port that was discovered and ``labels`` the relabelled
    address), every target up but those of ``modern.targets_down``. The server is Service ``prometheus``, or the one
    ``modern.prometheus`` names."""
    from kubesim.scenario import Payload

    store = scenario.store
    wanted = scenario.modern.settings.get("prometheus") or "/prometheus"
    ns, _, name = wanted.rpartition("/")
    service = next((s for s in store.list("v1", "services") if s["metadata"]["name"] == name
                    and (not ns or s["metadata"]["namespace"] == ns)), None)
    if service is None:
        return
    targets, seen = [], set()
    down = scenario.modern.settings.get("targets_down") or []  # [{pods: ns/k=v, error}]: those scrapes fail
    for job in _scrape_jobs(store, service["metadata"]["namespace"]):
        for pod in store.list("v1", "pods"):
            if not _running(pod) or not job["select"](pod):
                continue
            for discovered in _discovered(pod):
                discovered = {**discovered, "job": job["job"], "__metrics_path__": job["path"], "__scheme__": "http",
                              "__scrape_interval__": job["interval"], "__scrape_timeout__": "10s"}
                labels = _relabel(discovered, job["rules"])
                if labels is None:
                    continue
                address = labels["__address__"] if ":" in labels["__address__"] else labels["__address__"] + ":80"
                final = {k: v for k, v in labels.items() if not k.startswith("__")}
                final.setdefault("instance", address)
                key = (job["name"], tuple(sorted(final.items())))
                if key in seen:  # Prometheus keeps one target per label set
                    continue
                seen.add(key)
                url = f"{labels['__scheme__']}://{address}{labels['__metrics_path__']}"
                error = next((rule.get("error", "") for rule in down if covers(rule["pods"], pod)), None)
                targets.append({"discoveredLabels": discovered, "labels": final, "scrapePool": job["name"],
                                "scrapeUrl": url, "globalUrl": url, "lastError": error or "",
                                "lastScrape": "2025-11-01T10:05:44.723715405Z", "lastScrapeDuration": 0.004,
                                "health": "up" if error is None else "down", "scrapeInterval": job["interval"],
                                "scrapeTimeout": "10s"})
    body = json.dumps({"status": "success", "data": {"activeTargets": targets, "droppedTargets": []}})
    port = str(service["spec"]["ports"][0]["port"])
    scenario.proxies[(service["metadata"]["namespace"], name, port, "api/v1/targets")] = Payload(
        200, body.encode(), "application/json")

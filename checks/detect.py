"""What an istiod mesh runs: revisions, proxies and their versions, the data-plane mode of each pod.

Shared by every istiod-era check; also the `control-plane.detect` check that reports it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from checks.inputs import DEPLOYMENTS, MUTATING_WEBHOOKS, NAMESPACES, PODS, Objects
from checks.model import Context, Generation, Istio, check, passed
from checks.modern_inputs import DAEMONSETS, ISTIO_GROUPS, K8S_GATEWAYS, PodEndpoint, ServedVersions, sidecar_status

if TYPE_CHECKING:
    from checks.gather import Gatherer

ISTIOD = frozenset({Generation.ISTIOD})
SIDECAR = "istio-proxy"
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease", "local-path-storage"})
WAYPOINT_CLASS = "istio-waypoint"

ALL_PODS = Objects(PODS)
ALL_NAMESPACES = Objects(NAMESPACES)
ALL_DAEMONSETS = Objects(DAEMONSETS)
ALL_DEPLOYMENTS = Objects(DEPLOYMENTS)
GATEWAYS = Objects(K8S_GATEWAYS)
SERVED = ServedVersions()
MAX_EVIDENCE = 8
MUTATING = Objects(MUTATING_WEBHOOKS)
INJECTOR_SUFFIX = "sidecar-injector.istio.io"


def selector_matches(selector: dict | None, have: dict) -> bool:
    """metav1.LabelSelector semantics: matchLabels and matchExpressions, all must hold; empty matches all."""
    selector = selector or {}
    if any(have.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        present = key in have
        if (op == "In" and have.get(key) not in values) or (op == "NotIn" and present and have[key] in values) or \
                (op == "Exists" and not present) or (op == "DoesNotExist" and present):
            return False
    return True


def injector_hooks(configs: list[dict]) -> list[tuple[dict, dict]]:
    return [(c, h) for c in configs for h in c.get("webhooks") or []
            if str(h.get("name", "")).endswith(INJECTOR_SUFFIX)]


def serves_revision(hooks: list[tuple[dict, dict]], value: str) -> bool:
    """Whether some injection webhook takes namespaces labelled istio.io/rev=value: a revision's own, or a tag's
    (istioctl tag set writes istio-revision-tag-NAME, selecting istio.io/rev=NAME for the revision it points to)."""
    return any(selector_matches(h.get("namespaceSelector"), {"istio.io/rev": value}) for _, h in hooks)


def first_served(ctx: Context, keys: tuple) -> list[dict]:
    """The objects of a kind at the newest API version the cluster serves."""
    for key in keys:
        value = ctx.maybe(key)
        if value is not None:
            return value
    return []


# Pods ------------------------------------------------------------------------------------------

def labels(obj: dict) -> dict:
    return (obj.get("metadata") or {}).get("labels") or {}


def annotations(obj: dict) -> dict:
    return (obj.get("metadata") or {}).get("annotations") or {}


def name_of(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta.get("name", "")


def proxy_container(pod: dict) -> tuple[dict | None, bool]:
    """(the istio-proxy container, whether it is a native sidecar: an init container that keeps running)."""
    spec = pod.get("spec") or {}
    for c in spec.get("containers") or []:
        if c.get("name") == SIDECAR:
            return c, False
    for c in spec.get("initContainers") or []:
        if c.get("name") == SIDECAR and c.get("restartPolicy") == "Always":
            return c, True
    return None, False


def proxy_status(pod: dict) -> dict | None:
    """The istio-proxy container's status, wherever the container is."""
    status = pod.get("status") or {}
    for cs in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
        if cs.get("name") == SIDECAR:
            return cs
    return None


def image_tag(container: dict | None) -> str | None:
    image = (container or {}).get("image", "")
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    tag = last.rsplit(":", 1)[1].split("@")[0]
    return tag if tag[:1].isdigit() else None


def version_tuple(version: str | None) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version or "")[:3])


def is_ztunnel(pod: dict) -> bool:
    return labels(pod).get("app") == "ztunnel"


def is_cni(pod: dict) -> bool:
    return labels(pod).get("k8s-app") == "istio-cni-node"


def is_gateway(pod: dict) -> bool:
    """An ingress or egress gateway, or a gateway (waypoints too) that istiod deploys for a Gateway API Gateway."""
    return labels(pod).get("istio") in ("ingressgateway", "egressgateway") or \
        bool(labels(pod).get("gateway.istio.io/managed"))


def running(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running"


def ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def proxies(pods: list[dict]) -> list[dict]:
    """Running pods with an Envoy proxy: sidecars, native sidecars, gateways, waypoints."""
    return [p for p in pods if running(p) and proxy_container(p)[0] is not None and not is_ztunnel(p)]


def revision_of(pod: dict) -> str:
    status = sidecar_status(pod)
    return (status or {}).get("revision") or labels(pod).get("istio.io/rev") or "default"


def pod_mode(pod: dict, namespace_labels: dict) -> str:
    """sidecar, native-sidecar, ambient, ambient-pending or none."""
    container, native = proxy_container(pod)
    if container is not None:
        return "native-sidecar" if native else "sidecar"
    redirection = annotations(pod).get("ambient.istio.io/redirection")
    if redirection == "enabled":
        return "ambient"
    if redirection == "pending":
        return "ambient-pending"
    return "none"


def ambient_enrolled(pod: dict, namespace_labels: dict) -> bool:
    """Asked for ambient by label (pod first, then namespace), and no sidecar."""
    mode = labels(pod).get("istio.io/dataplane-mode") or namespace_labels.get("istio.io/dataplane-mode")
    return mode == "ambient" and pod["metadata"].get("namespace") not in SYSTEM_NAMESPACES \
        and not labels(pod).get("app") == "ztunnel"


def namespace_labels(namespaces: list[dict]) -> dict[str, dict]:
    return {n["metadata"]["name"]: labels(n) for n in namespaces}


# The control plane -----------------------------------------------------------------------------

def istiods(istio: Istio) -> dict[str, dict]:
    """{revision: Deployment} of every istiod in the control-plane namespace."""
    out = {}
    for name, d in sorted(istio.deployments.items()):
        if name == "istiod" or name.startswith("istiod-"):
            rev = labels(d).get("istio.io/rev") or (name[len("istiod-"):] if name != "istiod" else "default")
            out[rev] = d
    return out


def istiod_version(deployment: dict) -> str | None:
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []
    return next((image_tag(c) for c in containers if c.get("name") == "discovery"), None) or (
        image_tag(containers[0]) if containers else None)


def revisions(istio: Istio) -> list[dict]:
    return [{"revision": rev, "version": istiod_version(d)} for rev, d in istiods(istio).items()]


def istiod_env(deployment: dict | None, name: str) -> str | None:
    for c in (deployment or {}).get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []:
        for var in c.get("env") or []:
            if var.get("name") == name:
                return str(var.get("value"))
    return None


def istiod_pods(pods: list[dict], istio: Istio) -> list[dict]:
    return [p for p in pods if p["metadata"].get("namespace") == istio.namespace and labels(p).get("app") == "istiod"]


@dataclass(frozen=True)
class PerPod:
    """One endpoint on a bounded set of pods chosen from the pod list: {"ns/pod": Response or error}.

    ``which``: "istiod" (ready istiod pods in ``namespace``), "ztunnel", "proxies" (a sample of
    ``limit`` proxies: gateways first, then one per workload), "restarted" (proxies whose
    istio-proxy restarted, then healthy ones up to ``limit``).
    """

    which: str
    port: int
    path: str
    namespace: str = ""
    limit: int = 8

    async def fetch(self, g: Gatherer) -> dict[str, object]:
        pods = await g.get(ALL_PODS)
        chosen = choose(self.which, pods, self.namespace, self.limit)
        keys = [PodEndpoint(p["metadata"]["namespace"], p["metadata"]["name"], self.port, self.path) for p in chosen]
        values = await g.get_many(keys)
        return {f"{k.namespace}/{k.pod}": v for k, v in zip(keys, values, strict=True)}


def choose(which: str, pods: list[dict], namespace: str, limit: int) -> list[dict]:
    if which == "istiod":
        return [p for p in pods if p["metadata"].get("namespace") == namespace and labels(p).get("app") == "istiod"
                and running(p)]
    if which == "ztunnel":
        return [p for p in pods if is_ztunnel(p) and running(p)]
    found = proxies(pods)
    if which == "restarted":  # crash-looping ones included: their fd limit is the point
        hit = [p for p in found if (proxy_status(p) or {}).get("restartCount")]
        rest = [p for p in found if p not in hit]
        return hit[:limit] + _spread(rest, max(0, min(3, limit - len(hit))))
    found = [p for p in found if ready(p)]  # a pod known to be down tells nothing about the others
    gateways = [p for p in found if is_gateway(p)]
    return (gateways + _spread([p for p in found if p not in gateways], limit))[:limit]


def _spread(pods: list[dict], limit: int) -> list[dict]:
    """One pod per workload (app label) before a second one, deterministic."""
    seen, first, later = set(), [], []
    for p in sorted(pods, key=name_of):
        app = (p["metadata"]["namespace"], labels(p).get("app") or p["metadata"]["name"])
        (later if app in seen else first).append(p)
        seen.add(app)
    return (first + later)[:limit]


def sample_note(values: dict, total: int, what: str) -> str:
    return f"read {what} on {len(values)} of {total} proxies (a bounded sample: gateways first, one pod per workload)"


# The detection check ---------------------------------------------------------------------------

def _detect_inputs(istio: Istio) -> tuple:
    return ALL_PODS, ALL_NAMESPACES, ALL_DAEMONSETS, GATEWAYS, SERVED


@check(id="control-plane.detect", title="What Istio runs here",
       section="how-can-i-debug-issues-with-the-service-mesh", generations=ISTIOD, inputs=_detect_inputs,
       # what its section (general debugging) answers; not ambient's names, which no guide section is about
       signatures=("istioctl version", "istio.io/rev", "native sidecar"))
def detect(ctx: Context):
    """Reports the istiod revisions and versions, the proxies' versions, the data-plane mode of each namespace
    (sidecar, native sidecar, ambient), where ztunnel, istio-cni and waypoints run, and which versions of the Istio
    APIs the cluster serves."""
    pods = ctx.get(ALL_PODS)
    ns_labels = namespace_labels(ctx.get(ALL_NAMESPACES))
    evidence = []
    revs = revisions(ctx.istio)
    evidence.append("istiod: " + ", ".join(f"{r['revision']}={r['version'] or '?'}" for r in revs))
    versions = Counter(image_tag(proxy_container(p)[0]) or "?" for p in proxies(pods))
    if versions:
        evidence.append("proxies by version: " + ", ".join(f"{v}×{n}" for v, n in sorted(versions.items())))
    modes: dict[str, Counter] = {}
    for p in pods:
        ns = p["metadata"]["namespace"]
        if ns in SYSTEM_NAMESPACES or ns == ctx.istio.namespace or is_ztunnel(p) or is_cni(p):
            continue
        modes.setdefault(ns, Counter())[pod_mode(p, ns_labels.get(ns, {}))] += 1
    for ns, counts in sorted(modes.items()):
        evidence.append(f"namespace {ns}: " + ", ".join(f"{m}×{n}" for m, n in sorted(counts.items())))
    for ds in ctx.get(ALL_DAEMONSETS):
        if labels(ds).get("app") == "ztunnel" or labels(ds).get("k8s-app") == "istio-cni-node" or \
                ds["metadata"]["name"] in ("ztunnel", "istio-cni-node"):
            status = ds.get("status") or {}
            evidence.append(f"DaemonSet {name_of(ds)}: {status.get('numberReady', 0)}/"
                            f"{status.get('desiredNumberScheduled', 0)} ready")
    waypoints = [g for g in ctx.maybe(GATEWAYS, []) if (g.get("spec") or {}).get("gatewayClassName") == WAYPOINT_CLASS]
    if waypoints:
        evidence.append("waypoints: " + ", ".join(name_of(g) for g in waypoints))
    served = ctx.maybe(SERVED, {})
    evidence.append("served Istio APIs: " + "; ".join(
        f"{g} {','.join(served.get(g) or ['-'])}" for g in ISTIO_GROUPS))
    labelled = {rev for ls in ns_labels.values() if (rev := ls.get("istio.io/rev"))}
    orphans = sorted(labelled - {r["revision"] for r in revs})
    summary = (f"istiod {', '.join(sorted({r['version'] or '?' for r in revs}))}"
               f" ({len(revs)} revision{'s' if len(revs) != 1 else ''}), {sum(versions.values())} proxies")
    if orphans:  # what it means for injection and connection is those checks' finding; here, a fact
        evidence.append(f"namespaces label revision(s) {', '.join(orphans)}, which no istiod runs"
                        " (a tag, or see injection.selectors)")
    return passed(summary, *evidence)


def json_view(istio: Istio) -> dict:
    """What the --json `istio` object adds on an istiod mesh."""
    return {"revisions": revisions(istio)}


def dumps(value) -> str:
    return json.dumps(value, sort_keys=True)

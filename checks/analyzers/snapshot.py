"""What the analyzers read: one indexed table per kind, fetched once per run and shared by every analyzer.

Each table is an input key of its own (``Table``), wrapping the listing it indexes, so the gatherer fetches a kind
once and indexes it once however many analyzers declare it. Istio and Gateway API kinds are listed at the newest
version the API server serves (from discovery); a kind it does not serve fails as NotInstalled, which skips the
analyzers that need it. Only kinds are listed; the two ConfigMaps read (mesh config, injector values) are read by
name, and no Secret is ever read.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import yaml

from checks.detect import ALL_NAMESPACES, ALL_PODS, SERVED
from checks.errors import NotInstalled
from checks.inputs import CONFIGMAPS, MUTATING_WEBHOOKS, NODES, SERVICES, Kind, Object, Objects
from checks.modern_inputs import PREFERRED

if TYPE_CHECKING:
    from checks.gather import Gatherer

IGNORED_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease", "local-path-storage"})
NEWEST = dict(PREFERRED, **{"gateway.networking.k8s.io": ("v1", "v1beta1", "v1alpha2"),
                            "extensions.istio.io": ("v1alpha1",)})


@dataclass(frozen=True)
class Served:
    """Every object of an Istio or Gateway API kind, at the newest version served."""

    group: str
    plural: str
    kind: str  # for messages: "VirtualService"

    async def fetch(self, g: Gatherer) -> list[dict]:
        served = (await g.get(SERVED)).get(self.group) or []
        # newest first; a kind may be served at older versions only (EnvoyFilter: v1alpha3)
        for version in dict.fromkeys(v for v in NEWEST.get(self.group, ()) + tuple(served) if v in served):
            try:
                return await g.get(Objects(Kind(f"{self.group}/{version}", self.plural)))
            except NotInstalled:
                continue
        raise NotInstalled(f"{self.plural}.{self.group}")

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}"


class Index:
    """A kind's objects by namespace and name; pods also by label, so a selector costs a set intersection."""

    def __init__(self, kind: str, items: list[dict], by_label: bool = False):
        self.kind = kind
        self.items = items
        self.by_name: dict[tuple[str, str], dict] = {}
        self.by_ns: dict[str, list[dict]] = defaultdict(list)
        # (key, value) and (namespace, key, value) → positions in items
        self._postings: dict[tuple, list[int]] | None = {} if by_label else None
        for i, obj in enumerate(items):
            meta = obj.get("metadata") or {}
            ns = meta.get("namespace") or ""
            self.by_name[(ns, meta.get("name", ""))] = obj
            self.by_ns[ns].append(obj)
            if by_label:
                for pair in (meta.get("labels") or {}).items():
                    self._postings.setdefault(pair, []).append(i)
                    self._postings.setdefault((ns, *pair), []).append(i)

    def __len__(self) -> int:
        return len(self.items)

    def get(self, namespace: str, name: str) -> dict | None:
        return self.by_name.get((namespace, name))

    def in_namespace(self, namespace: str) -> list[dict]:
        return self.by_ns.get(namespace, [])

    def matching(self, labels: dict | None, namespace: str | None = None) -> list[dict]:
        """Objects whose labels include every pair of ``labels`` (a matchLabels selector; empty matches all)."""
        if not labels:
            return list(self.items) if namespace is None else list(self.in_namespace(namespace))
        if self._postings is None:
            return [o for o in (self.items if namespace is None else self.in_namespace(namespace))
                    if has_labels(o, labels)]
        scope = () if namespace is None else (namespace,)
        lists = sorted((self._postings.get((*scope, k, str(v)), ()) for k, v in labels.items()), key=len)
        if not lists[0]:
            return []
        hits = set(lists[0]).intersection(*lists[1:]) if len(lists) > 1 else lists[0]
        return [self.items[i] for i in sorted(hits)]


@dataclass(frozen=True)
class Table:
    """The Index of one listing (``source`` is an Objects or Served key)."""

    source: object
    kind: str
    by_label: bool = False
    with_system: bool = False  # for references: a policy may name kube-system, which exists in every cluster

    async def fetch(self, g: Gatherer) -> Index:
        # istioctl analyze leaves the Kubernetes system namespaces out of every analysis
        items = [o for o in await g.get(self.source) if self.with_system or (
            name(o) if self.kind == "Namespace" else namespace_of(o)) not in IGNORED_NAMESPACES]
        return Index(self.kind, items, self.by_label)

    def __str__(self) -> str:
        return str(self.source)


def _istio(group: str, plural: str, kind: str) -> Table:
    return Table(Served(group, plural, kind), kind)


PODS = Table(ALL_PODS, "Pod", by_label=True)
SERVICES_T = Table(Objects(SERVICES), "Service")
NAMESPACES = Table(ALL_NAMESPACES, "Namespace")
EVERY_NAMESPACE = Table(ALL_NAMESPACES, "Namespace", with_system=True)
NODES_T = Table(Objects(NODES), "Node")
WEBHOOKS = Table(Objects(MUTATING_WEBHOOKS), "MutatingWebhookConfiguration")
VIRTUAL_SERVICES = _istio("networking.istio.io", "virtualservices", "VirtualService")
DESTINATION_RULES = _istio("networking.istio.io", "destinationrules", "DestinationRule")
GATEWAYS = _istio("networking.istio.io", "gateways", "Gateway")
SERVICE_ENTRIES = _istio("networking.istio.io", "serviceentries", "ServiceEntry")
SIDECARS = _istio("networking.istio.io", "sidecars", "Sidecar")
ENVOY_FILTERS = _istio("networking.istio.io", "envoyfilters", "EnvoyFilter")
PROXY_CONFIGS = _istio("networking.istio.io", "proxyconfigs", "ProxyConfig")
AUTHORIZATION_POLICIES = _istio("security.istio.io", "authorizationpolicies", "AuthorizationPolicy")
REQUEST_AUTHENTICATIONS = _istio("security.istio.io", "requestauthentications", "RequestAuthentication")
PEER_AUTHENTICATIONS = _istio("security.istio.io", "peerauthentications", "PeerAuthentication")
TELEMETRIES = _istio("telemetry.istio.io", "telemetries", "Telemetry")
K8S_GATEWAYS = _istio("gateway.networking.k8s.io", "gateways", "Gateway")
HTTP_ROUTES = _istio("gateway.networking.k8s.io", "httproutes", "HTTPRoute")
GRPC_ROUTES = _istio("gateway.networking.k8s.io", "grpcroutes", "GRPCRoute")


@dataclass(frozen=True)
class MeshConfig:
    """The mesh config (ConfigMap istio, key mesh, in the control-plane namespace), {} when there is none."""

    namespace: str

    async def fetch(self, g: Gatherer) -> dict:
        cm = await g.get(Object(CONFIGMAPS, self.namespace, "istio"))
        try:
            return yaml.safe_load(((cm or {}).get("data") or {}).get("mesh") or "") or {}
        except yaml.YAMLError:
            return {}


def root_namespace(mesh: dict) -> str:
    """The mesh config's root namespace: its policies and rules apply mesh-wide."""
    return mesh.get("rootNamespace") or "istio-system"


@dataclass(frozen=True)
class InjectorValues:
    """{ConfigMap name: parsed `values`} of the injector ConfigMaps of every revision the namespaces ask for
    (istio-sidecar-injector, istio-sidecar-injector-REV), each read by name."""

    namespace: str

    async def fetch(self, g: Gatherer) -> dict[str, dict]:
        revisions = {labels_of(n).get("istio.io/rev") for n in await g.get(ALL_NAMESPACES)}
        names = ["istio-sidecar-injector"] + sorted(f"istio-sidecar-injector-{r}" for r in revisions
                                                    if r and r != "default")
        found = await g.get_many(Object(CONFIGMAPS, self.namespace, n) for n in names)
        out = {}
        for cm_name, cm in zip(names, found, strict=True):
            if isinstance(cm, Exception):
                raise cm
            if isinstance(cm, dict):
                try:
                    out[cm_name] = json.loads((cm.get("data") or {}).get("values") or "{}")
                except ValueError:
                    out[cm_name] = {}
        return out


# Small helpers over objects ----------------------------------------------------------------------------

def meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def namespace_of(obj: dict) -> str:
    return meta(obj).get("namespace") or ""


def name(obj: dict) -> str:
    return meta(obj).get("name", "")


def labels_of(obj: dict) -> dict:
    return meta(obj).get("labels") or {}


def annotations_of(obj: dict) -> dict:
    return meta(obj).get("annotations") or {}


def spec(obj: dict) -> dict:
    return obj.get("spec") or {}


def has_labels(obj: dict, wanted: dict) -> bool:
    have = labels_of(obj)
    return all(have.get(k) == str(v) for k, v in wanted.items())


def selector_text(labels: dict | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items()))


def ref(kind: str, obj_or_ns, name_: str | None = None) -> str:
    """"Kind namespace/name" (or "Kind name" for a cluster-scoped object)."""
    if name_ is None:
        ns, name_ = namespace_of(obj_or_ns), name(obj_or_ns)
    else:
        ns = obj_or_ns
    return f"{kind} {ns}/{name_}" if ns else f"{kind} {name_}"


def label_selector_matches(selector: dict | None, labels: dict) -> bool:
    """A metav1.LabelSelector (matchLabels and matchExpressions); None matches everything."""
    if selector is None:
        return True
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and present and labels[key] in values) \
                or (op == "Exists" and not present) or (op == "DoesNotExist" and present):
            return False
    return True


# Hosts ------------------------------------------------------------------------------------------------

DOMAIN = "svc.cluster.local"


def fqdn(host: str, namespace: str) -> str:
    """A short name completed in ``namespace``; wildcards and names with a dot are left as they are."""
    return host if host.startswith("*") or "." in host else f"{host}.{namespace}.{DOMAIN}"


def service_of_host(host: str, namespace: str) -> tuple[str, str] | None:
    """(namespace, name) of the Kubernetes Service a host names: a short name in ``namespace``, or NAME.NS.svc.
    cluster.local; None for any other host."""
    if "." not in host and not host.startswith("*"):
        return namespace, host
    if host.endswith("." + DOMAIN):
        parts = host[: -len(DOMAIN) - 1].split(".")
        if len(parts) >= 2:
            return parts[-1], ".".join(parts[:-1])
    return None


def host_matches(a: str, b: str) -> bool:
    """Istio's host.Name.Matches: equal, or one is a wildcard whose suffix the other ends with."""
    if a.startswith("*"):
        if b.startswith("*"):
            return b[1:].endswith(a[1:]) if len(a) < len(b) else a[1:].endswith(b[1:])
        return b.endswith(a[1:])
    if b.startswith("*"):
        return a.endswith(b[1:])
    return a == b


def export_scopes(export_to: Iterable[str] | None, namespace: str) -> set[str]:
    """The namespaces an object is visible in ("*" for all), from exportTo (empty: everywhere)."""
    values = list(export_to or [])
    if not values or "*" in values:
        return {"*"}
    return {namespace if v == "." else v for v in values}


class Hosts:
    """Every service host the mesh knows, with the namespaces that see it: Kubernetes Services (exportTo
    annotation) and ServiceEntries (spec.exportTo). ``find`` resolves a destination host as istioctl does."""

    def __init__(self, services: Index, entries: Index | None):
        self.exact: dict[tuple[str, str], dict] = {}  # (scope, fqdn) → {"ports": [...], "ref": str, ...}
        self.wildcards: list[tuple[str, str, dict]] = []
        for s in services.items:
            ns = namespace_of(s)
            anno = annotations_of(s).get("networking.istio.io/exportTo", "")
            scopes = export_scopes([x.strip() for x in anno.split(",") if x.strip()], ns) if anno else {"*"}
            entry = {"ports": [p.get("port") for p in spec(s).get("ports") or []], "ref": ref("Service", s),
                     "selector": spec(s).get("selector") or {}, "namespace": ns, "service": s}
            for scope in scopes:
                self.exact[(scope, fqdn(name(s), ns))] = entry
        for se in (entries.items if entries else ()):
            ns = namespace_of(se)
            scopes = export_scopes(spec(se).get("exportTo"), ns)
            entry = {"ports": [p.get("number") for p in spec(se).get("ports") or []], "ref": ref("ServiceEntry", se),
                     "selector": (spec(se).get("workloadSelector") or {}).get("labels") or {}, "namespace": ns,
                     "entry": se}
            for h in spec(se).get("hosts") or []:
                for scope in scopes:
                    full = fqdn(h, ns)
                    if full.startswith("*"):
                        self.wildcards.append((scope, full, entry))
                    else:
                        self.exact.setdefault((scope, full), entry)

    def find(self, host: str, namespace: str, export_to: Iterable[str] | None = None) -> dict | None:
        """What ``host``, written in an object of ``namespace`` exported to ``export_to``, resolves to."""
        full = fqdn(host, namespace)
        found = self.exact.get(("*", full))
        if found:
            return found
        for scope in (export_scopes(export_to, namespace) - {"*"}) or {namespace}:
            found = self.exact.get((scope, full))
            if found:
                return found
        bare = full.lstrip("*")
        for scope, wildcard, entry in self.wildcards:
            if scope in ("*", namespace) and bare.endswith(wildcard[1:]):
                return entry
        return None

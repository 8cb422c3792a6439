"""The simulated cluster's objects, built from real manifests like a cluster would build them.

Manifests are loaded as the API server would store them (old API versions served at
their current ones), then the controllers' work is imitated: Deployments and Jobs get
pods, pods in namespaces labelled for injection get a sidecar the way Istio's injector
adds one, Services get cluster IPs, Nodes and their Leases exist.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field

import yaml

# (apiVersion as served, plural, namespaced) by kind.
BUILTIN_KINDS: dict[str, tuple[str, str, bool]] = {
    "Pod": ("v1", "pods", True),
    "Service": ("v1", "services", True),
    "ConfigMap": ("v1", "configmaps", True),
    "Secret": ("v1", "secrets", True),
    "ServiceAccount": ("v1", "serviceaccounts", True),
    "Endpoints": ("v1", "endpoints", True),
    "Event": ("v1", "events", True),
    "Namespace": ("v1", "namespaces", False),
    "Node": ("v1", "nodes", False),
    "Deployment": ("apps/v1", "deployments", True),
    "ReplicaSet": ("apps/v1", "replicasets", True),
    "DaemonSet": ("apps/v1", "daemonsets", True),
    "StatefulSet": ("apps/v1", "statefulsets", True),
    "Job": ("batch/v1", "jobs", True),
    "HorizontalPodAutoscaler": ("autoscaling/v2", "horizontalpodautoscalers", True),
    "Ingress": ("networking.k8s.io/v1", "ingresses", True),
    "NetworkPolicy": ("networking.k8s.io/v1", "networkpolicies", True),
    "PodDisruptionBudget": ("policy/v1", "poddisruptionbudgets", True),
    "Lease": ("coordination.k8s.io/v1", "leases", True),
    "MutatingWebhookConfiguration": ("admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations", False),
    "ValidatingWebhookConfiguration": ("admissionregistration.k8s.io/v1", "validatingwebhookconfigurations", False),
    "CustomResourceDefinition": ("apiextensions.k8s.io/v1", "customresourcedefinitions", False),
    "ClusterRole": ("rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "Role": ("rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("rbac.authorization.k8s.io/v1", "rolebindings", True),
}


@dataclass(frozen=True)
class Resource:
    api: str  # "v1" or "group/version"
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    subresources: tuple[str, ...] = ()

    @property
    def group(self) -> str:
        return self.api.rsplit("/", 1)[0] if "/" in self.api else ""

    @property
    def version(self) -> str:
        return self.api.rsplit("/", 1)[-1]


SUBRESOURCES = {"pods": ("log", "proxy", "status"), "services": ("proxy", "status"), "nodes": ("proxy", "status")}


@dataclass
class Store:
    resources: dict[tuple[str, str], Resource] = field(default_factory=dict)  # (api, plural)
    objects: dict[tuple[str, str], dict[tuple[str, str], dict]] = field(default_factory=dict)
    _serial: int = 0
    _sorted: dict = field(default_factory=dict, repr=False, compare=False)  # list()'s answers, until a change

    def __post_init__(self):
        for kind, (api, plural, namespaced) in BUILTIN_KINDS.items():
            self.resources[(api, plural)] = Resource(api, plural, kind, namespaced, kind.lower(),
                                                     SUBRESOURCES.get(plural, ()))

    def resource_for_kind(self, kind: str, api_version: str) -> Resource | None:
        for r in self.resources.values():
            group = _group(api_version)
            if r.kind == kind and (r.group == group or group in _OLD_GROUPS.get(r.group, ())):
                return r
        return None

    def add(self, obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        kind = obj.get("kind", "")
        if kind == "List":
            for item in obj.get("items") or []:
                self.add(item)
            return obj
        if kind == "CustomResourceDefinition":
            self._define(obj)
        resource = self.resource_for_kind(kind, obj.get("apiVersion", "v1"))
        if resource is None:
            raise ValueError(f"no resource serves kind {kind} ({obj.get('apiVersion')})")
        if resource.kind in ("Deployment", "DaemonSet", "StatefulSet") and not obj.get("spec", {}).get("selector"):
            # extensions/v1beta1 defaulted the selector to the template's labels; apps/v1 requires one
            labels = obj["spec"]["template"].get("metadata", {}).get("labels") or {}
            obj["spec"]["selector"] = {"matchLabels": dict(labels)}
        obj["apiVersion"] = resource.api
        meta = obj.setdefault("metadata", {})
        if resource.namespaced:
            meta.setdefault("namespace", "default")
        else:
            meta.pop("namespace", None)
        self._serial += 1
        meta.setdefault("uid", hashlib.sha1(f"{kind}/{meta.get('namespace')}/{meta['name']}".encode()).hexdigest()[:8]
                        + "-0000-4000-8000-000000000000")
        meta.setdefault("resourceVersion", str(1000 + self._serial))
        if not meta.get("creationTimestamp"):
            meta["creationTimestamp"] = "2018-06-01T10:00:00Z"
        self.objects.setdefault((resource.api, resource.plural), {})[(meta.get("namespace", ""), meta["name"])] = obj
        self._sorted.clear()
        return obj

    def _define(self, crd: dict) -> None:
        spec = crd["spec"]
        versions = [v["name"] for v in spec.get("versions") or []] or [spec.get("version", "v1")]
        names = spec["names"]
        for version in versions:
            api = f"{spec['group']}/{version}"
            self.resources[(api, names["plural"])] = Resource(
                api, names["plural"], names["kind"], spec.get("scope", "Namespaced") == "Namespaced",
                names.get("singular", names["kind"].lower()))

    def list(self, api: str, plural: str, namespace: str | None = None) -> list[dict]:
        """In name order; kept between calls (until an object is added or removed), as a list of 10,000 pods is
        asked for once per page."""
        key = (api, plural, namespace)
        if key not in self._sorted:
            found = self.objects.get((api, plural), {})
            self._sorted[key] = [o for (ns, _), o in sorted(found.items()) if namespace in (None, ns)]
        return list(self._sorted[key])

    def get(self, api: str, plural: str, namespace: str | None, name: str) -> dict | None:
        return self.objects.get((api, plural), {}).get((namespace or "", name))

    def remove(self, api: str, plural: str, namespace: str | None, name: str) -> None:
        self.objects.get((api, plural), {}).pop((namespace or "", name), None)
        self._sorted.clear()


# Groups whose old names the API server still accepts for the same kinds.
_OLD_GROUPS = {"apps": ("extensions",), "networking.k8s.io": ("extensions",)}


def _group(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: the release manifests are big


def load_manifest(text: str) -> list[dict]:
    return [d for d in yaml.load_all(text, Loader=_Loader) if isinstance(d, dict) and d.get("kind")]


def stable_suffix(*parts: str, length: int = 5) -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:length])

"""Inputs of the istiod-era checks: pod-proxied endpoints, previous logs, API discovery, modern kinds."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from checks.inputs import PODS, Kind

if TYPE_CHECKING:
    from checks.gather import Gatherer
    from checks.model import Response

DAEMONSETS = Kind("apps/v1", "daemonsets")
REPLICASETS = Kind("apps/v1", "replicasets")
EVENTS = Kind("v1", "events")
VALIDATING_WEBHOOKS = Kind("admissionregistration.k8s.io/v1", "validatingwebhookconfigurations")
NETWORK_POLICIES = Kind("networking.k8s.io/v1", "networkpolicies")
K8S_GATEWAYS = Kind("gateway.networking.k8s.io/v1", "gateways")

ISTIO_GROUPS = ("networking.istio.io", "security.istio.io", "telemetry.istio.io", "extensions.istio.io")
# Newest first: what a check lists when the group serves it (v1 only from 1.22).
PREFERRED = {
    "networking.istio.io": ("v1", "v1beta1", "v1alpha3"),
    "security.istio.io": ("v1", "v1beta1"),
    "telemetry.istio.io": ("v1", "v1alpha1"),
}
ENVOY_FILTERS = Kind("networking.istio.io/v1alpha3", "envoyfilters")  # the only version ever served


@dataclass(frozen=True)
class PodEndpoint:
    """An HTTP endpoint of one pod, through the API server's pod proxy (istiod's 8080 is on no Service)."""

    namespace: str
    pod: str
    port: int
    path: str

    async def fetch(self, g: Gatherer) -> Response:
        return await g.call(g.cluster.pod_proxy, self.namespace, self.pod, self.port, self.path)

    def __str__(self) -> str:
        return f"pods/{self.pod}:{self.port}/{self.path.lstrip('/')} in {self.namespace}"


@dataclass(frozen=True)
class PreviousLog:
    """The tail of a container's previous (terminated) instance; "" when there is none."""

    namespace: str
    pod: str
    container: str
    tail_lines: int = 50

    async def fetch(self, g: Gatherer) -> str:
        path = PODS.path(self.namespace, self.pod) + "/log"
        query = {"container": self.container, "tailLines": self.tail_lines, "previous": "true"}
        response = await g.call(g.cluster.get, path, query, accept="*/*")
        if response.status == 400:  # "previous terminated container … not found"
            return ""
        if response.status >= 300:
            return ""
        return response.text()


@dataclass(frozen=True)
class ServedVersions:
    """{group: [versions]} the API server serves, from discovery (/apis): what the CRDs serve, cheaply."""

    async def fetch(self, g: Gatherer) -> dict[str, list[str]]:
        listing = await g.call(g.cluster.get_json, "/apis")
        out: dict[str, list[str]] = {}
        for group in listing.get("groups") or []:
            out[group.get("name", "")] = [v.get("version", "") for v in group.get("versions") or []]
        return out


def istio_kind(served: dict[str, list[str]], group: str, plural: str) -> Kind | None:
    """The newest served version of an Istio kind, or None when the group is not served at all."""
    versions = served.get(group) or []
    for version in PREFERRED.get(group, ()) + tuple(versions):
        if version in versions:
            return Kind(f"{group}/{version}", plural)
    return None


def sidecar_status(pod: dict) -> dict | None:
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get("sidecar.istio.io/status")
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}

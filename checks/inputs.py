"""Inputs a check can declare. Each is a hashable key that knows how to fetch itself.

The gatherer fetches every declared input once per run, concurrently; an input
may await others (sidecar logs need the pod list), which are shared too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from checks.gather import Gatherer
    from checks.model import Response


@dataclass(frozen=True)
class Kind:
    api: str  # "v1" or "group/version"
    plural: str

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/api/{self.api}" if "/" not in self.api else f"/apis/{self.api}"
        if namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


PODS = Kind("v1", "pods")
SERVICES = Kind("v1", "services")
CONFIGMAPS = Kind("v1", "configmaps")
SECRETS = Kind("v1", "secrets")
NAMESPACES = Kind("v1", "namespaces")
NODES = Kind("v1", "nodes")
DEPLOYMENTS = Kind("apps/v1", "deployments")
JOBS = Kind("batch/v1", "jobs")
LEASES = Kind("coordination.k8s.io/v1", "leases")
MUTATING_WEBHOOKS = Kind("admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations")
MIXER_RULES = Kind("config.istio.io/v1alpha2", "rules")
MIXER_PROMETHEUS_HANDLERS = Kind("config.istio.io/v1alpha2", "prometheuses")
MIXER_HANDLERS = Kind("config.istio.io/v1alpha2", "handlers")  # 1.1+: compiledAdapter handlers
MIXER_METRICS = Kind("config.istio.io/v1alpha2", "metrics")


@dataclass(frozen=True)
class Objects:
    """Every object of a kind (paginated), optionally in one namespace or by label."""

    kind: Kind
    namespace: str | None = None
    selector: str | None = None

    async def fetch(self, g: Gatherer) -> list[dict]:
        query = {"labelSelector": self.selector} if self.selector else None
        return await g.call(g.cluster.list, self.kind.path(self.namespace), query)


@dataclass(frozen=True)
class Object:
    """One named object, or None when it does not exist."""

    kind: Kind
    namespace: str | None
    name: str
    metadata_only: bool = False  # for Secrets: never receive their data

    async def fetch(self, g: Gatherer) -> dict | None:
        return await g.call(g.cluster.get_object, self.kind.path(self.namespace, self.name),
                            metadata_only=self.metadata_only)


@dataclass(frozen=True)
class Endpoint:
    """An in-mesh HTTP endpoint of a Service (through the API server's proxy)."""

    namespace: str
    service: str
    port: int | str
    path: str

    async def fetch(self, g: Gatherer) -> Response:
        return await g.call(g.cluster.service_proxy, self.namespace, self.service, self.port, self.path)

    def __str__(self) -> str:
        return f"{self.service}.{self.namespace}:{self.port}/{self.path.lstrip('/')}"


@dataclass(frozen=True)
class PodLog:
    namespace: str
    pod: str
    container: str
    tail_lines: int

    async def fetch(self, g: Gatherer) -> str:
        path = PODS.path(self.namespace, self.pod) + "/log"
        query = {"container": self.container, "tailLines": self.tail_lines}
        return (await g.call(g.cluster.get_ok, path, query, accept="*/*")).text()


SIDECAR = "istio-proxy"


def has_sidecar(pod: dict) -> bool:
    return any(c.get("name") == SIDECAR for c in pod.get("spec", {}).get("containers", []))


@dataclass(frozen=True)
class SidecarLogs:
    """The recent log of every injected pod's sidecar: {"ns/pod": text or error}."""

    tail_lines: int

    async def fetch(self, g: Gatherer) -> dict[str, object]:
        pods = await g.get(Objects(PODS))
        keys = [
            PodLog(p["metadata"]["namespace"], p["metadata"]["name"], SIDECAR, self.tail_lines)
            for p in pods
            if has_sidecar(p) and p.get("status", {}).get("phase") == "Running"
        ]
        values = await g.get_many(keys)
        return {f"{k.namespace}/{k.pod}": v for k, v in zip(keys, values, strict=True)}


@dataclass(frozen=True)
class ApiServerClock:
    """A cheap GET whose Date header tells the API server's time."""

    async def fetch(self, g: Gatherer) -> Response:
        return await g.call(g.cluster.get_ok, "/version")


@dataclass(frozen=True)
class SelectedLogs:
    """The recent log of every pod matching a selector: {"ns/pod": text or error}."""

    namespace: str
    selector: str
    tail_lines: int

    async def fetch(self, g: Gatherer) -> dict[str, object]:
        pods = await g.get(Objects(PODS, self.namespace, self.selector))
        keys = [PodLog(self.namespace, p["metadata"]["name"], p["spec"]["containers"][0]["name"], self.tail_lines)
                for p in pods]
        values = await g.get_many(keys)
        return {f"{k.namespace}/{k.pod}": v for k, v in zip(keys, values, strict=True)}

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
POD_METRICS = Kind("metrics.k8s.io/v1beta1", "pods")  # metrics-server; absent on many clusters
MUTATING_WEBHOOKS = Kind("admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations")
MIXER_RULES = Kind("config.istio.io/v1alpha2", "rules")
MIXER_PROMETHEUS_HANDLERS = Kind("config.istio.io/v1alpha2", "prometheuses")
MIXER_HANDLERS = Kind("config.istio.io/v1alpha2", "handlers")  # 1.1+: compiledAdapter handlers
MIXER_METRICS = Kind("config.istio.io/v1alpha2", "metrics")
MIXER_INSTANCES = Kind("config.istio.io/v1alpha2", "instances")  # 1.1+: compiledTemplate instances


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


# Every log read is bounded three ways, so one chatty pod cannot make a run slow or large.
LOG_TAIL_LINES = 300
LOG_LIMIT_BYTES = 256 * 1024
LOG_SINCE_SECONDS = 24 * 3600


@dataclass(frozen=True)
class PodLog:
    namespace: str
    pod: str
    container: str
    tail_lines: int = LOG_TAIL_LINES
    limit_bytes: int = LOG_LIMIT_BYTES
    since_seconds: int = LOG_SINCE_SECONDS

    async def fetch(self, g: Gatherer) -> str:
        path = PODS.path(self.namespace, self.pod) + "/log"
        query = {"container": self.container, "tailLines": self.tail_lines, "limitBytes": self.limit_bytes,
                 "sinceSeconds": self.since_seconds}
        text = (await g.call(g.cluster.get_ok, path, query, accept="*/*")).text()
        if len(text.encode()) >= self.limit_bytes and not text.endswith("\n"):
            text = text[:text.rfind("\n") + 1]  # the byte limit cut the last line short: drop it
        return text


SIDECAR = "istio-proxy"


def has_sidecar(pod: dict) -> bool:
    return any(c.get("name") == SIDECAR for c in pod.get("spec", {}).get("containers", []))


def pod_signals(pod: dict) -> list[str]:
    """What a pod's status says is wrong with it: restarts, the last termination, readiness, a waiting
    container. Empty for a pod that looks healthy."""
    status = pod.get("status") or {}
    signals = []
    for c in status.get("containerStatuses") or []:
        name = c.get("name", "?")
        if c.get("restartCount", 0) > 0:
            last = ((c.get("lastState") or {}).get("terminated") or {})
            why = f", last exit {last.get('reason', '')} ({last.get('exitCode', '?')})" if last else ""
            signals.append(f"{name} restarted {c['restartCount']} times{why}")
        waiting = (c.get("state") or {}).get("waiting")
        if waiting:
            signals.append(f"{name} waiting: {waiting.get('reason', '')}")
        elif c.get("ready") is False:
            signals.append(f"{name} not ready")
    if not signals and any(cond.get("type") == "Ready" and cond.get("status") == "False"
                           for cond in status.get("conditions") or []):
        signals.append("pod not ready")
    return signals


def workload_of(pod: dict) -> str:
    """The controller a pod belongs to (its ReplicaSet, StatefulSet…), or the pod itself."""
    meta = pod["metadata"]
    owner = next((o for o in meta.get("ownerReferences") or [] if o.get("controller")), None)
    return f'{meta["namespace"]}/{owner["kind"]}/{owner["name"]}' if owner else f'{meta["namespace"]}/{meta["name"]}'


class LogSample(dict):
    """{"ns/pod": text or error} for the sidecars read, and which ones those were out of how many."""

    def __init__(self, logs: dict, *, total: int, pointed: int, workloads: int, everyone: bool,
                 tail_lines: int = LOG_TAIL_LINES):
        super().__init__(logs)
        self.total, self.pointed, self.workloads, self.everyone = total, pointed, workloads, everyone
        self.tail_lines = tail_lines

    def coverage(self, unreadable: int = 0) -> str:
        """One evidence line: how much of the mesh the verdict rests on."""
        bound = f"the last {self.tail_lines} lines (at most {LOG_LIMIT_BYTES // 1024} KiB, " \
                f"{LOG_SINCE_SECONDS // 3600} h)"
        if self.everyone:
            how = "every sidecar (--all-pods)"
        elif len(self) == self.total:
            how = "all of them, the sample (one per workload) covers the mesh"
        else:
            parts = [f"{self.pointed} whose status points at trouble"] if self.pointed else []
            if len(self) > self.pointed:
                parts.append(f"{len(self) - self.pointed} as a sample, one per workload of {self.workloads}")
            how = " and ".join(parts) or "none"
            how += "; --all-pods (`deep` in Slack) reads every one"
        unread = f", {unreadable} of them unreadable" if unreadable else ""
        return f"read {bound} of {len(self) - unreadable} of {self.total} sidecar logs{unread}: {how}"


# A bounded sample: the pods the signals point at first, then one pod per workload, at most this many in all.
MAX_SIDECAR_LOGS = 200


@dataclass(frozen=True)
class SidecarLogs:
    """The recent log of the injected pods' sidecars that matter: {"ns/pod": text or error} as a LogSample.

    Pod status is read first (it comes with the pod list); logs are read where it points (restarts,
    a waiting or unready container), then one sidecar per workload, preferring the one whose status
    looks worst and then the longest-running (the most log to read). With the gatherer's ``all_pods``
    every running sidecar is read.
    """

    tail_lines: int = LOG_TAIL_LINES

    async def fetch(self, g: Gatherer) -> LogSample:
        pods = [p for p in await g.get(Objects(PODS))
                if has_sidecar(p) and p.get("status", {}).get("phase") == "Running"]
        pointed = [p for p in pods if pod_signals(p)]
        chosen = pods if g.all_pods else _sample(pods, pointed)
        keys = [PodLog(p["metadata"]["namespace"], p["metadata"]["name"], SIDECAR, self.tail_lines) for p in chosen]
        values = await g.get_many(keys)
        logs = {f"{k.namespace}/{k.pod}": v for k, v in zip(keys, values, strict=True)}
        return LogSample(logs, total=len(pods), pointed=min(len(pointed), len(chosen)),
                         workloads=len({workload_of(p) for p in pods}), everyone=g.all_pods,
                         tail_lines=self.tail_lines)


def _sample(pods: list[dict], pointed: list[dict]) -> list[dict]:
    """The pointed-at pods, then the best remaining pod of each workload not yet covered, up to the cap."""
    chosen = sorted(pointed, key=lambda p: -len(pod_signals(p)))[:MAX_SIDECAR_LOGS]
    covered = {workload_of(p) for p in chosen}
    for pod in sorted(pods, key=lambda p: (p.get("status", {}).get("startTime") or "", p["metadata"]["name"])):
        if len(chosen) >= MAX_SIDECAR_LOGS:
            break
        if workload_of(pod) not in covered:
            covered.add(workload_of(pod))
            chosen.append(pod)
    return chosen


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

"""A read-only Kubernetes API server on loopback, serving one scenario.

Faithful where clients look: aggregated and legacy discovery (kubectl, the Python client),
Status errors, pagination, label selectors, Table output for ``kubectl get pods``, pod
logs, the services proxy subresource (503 when no pod backs the Service), metadata-only
answers. Every request is recorded; anything but GET is refused and recorded too.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from kubesim import modern
from kubesim.rbac import request_attributes
from kubesim.scenario import Payload, Scenario
from kubesim.store import Resource

HEARTBEAT_AGE = 3.0  # seconds since each kubelet's last heartbeat, as seen by the API server


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    accept: str
    user_agent: str = ""


class Simulator:
    def __init__(self, scenario: Scenario, host: str = "127.0.0.1", port: int = 0):
        self.scenario = scenario
        self.requests: list[Request] = []
        self.in_flight = 0
        self.most_in_flight = 0  # how many requests were ever served at once: proof of a client's concurrency
        self._lock = threading.Lock()
        self._server = _Server((host, port), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="kubesim", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Simulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def write_kubeconfig(self, path: str | Path, context: str = "sim") -> Path:
        path = Path(path)
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {"token": "simulated-token"}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        }))
        return path

    # The clock of the simulated API server.
    def now(self) -> float:
        return time.time() + self.scenario.apiserver_offset


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default 5 drops SYNs when a client opens many connections at once
    daemon_threads = True


def _handler(sim: Simulator):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else every keep-alive request waits ~40 ms

        def log_message(self, *args):  # quiet
            pass

        def do_GET(self):
            with sim._lock:
                sim.in_flight += 1
                sim.most_in_flight = max(sim.most_in_flight, sim.in_flight)
            try:
                _serve(sim, self)
            finally:
                with sim._lock:
                    sim.in_flight -= 1

        def _refuse(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            parts = urlsplit(self.path)
            sim.record(Request(self.command, unquote(parts.path), parts.query, self.headers.get("Accept", "")))
            _send(sim, self, 405, _status(405, "MethodNotAllowed", "the simulated API server is read-only"))

        do_POST = do_PUT = do_PATCH = do_DELETE = _refuse

    return Handler


def _send(sim: Simulator, h, code: int, body, content_type: str = "application/json") -> None:
    declared = None
    if isinstance(body, Payload):  # a proxied answer; its upstream may have declared a wrong length
        body, declared = body.body, body.content_length
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    h.send_response_only(code)
    h.send_header("Date", formatdate(sim.now(), usegmt=True))
    h.send_header("Content-Type", content_type)
    h.send_header("Content-Length", str(len(data) if declared is None else declared))
    h.end_headers()
    h.wfile.write(data)
    if declared is not None and declared != len(data):
        h.wfile.flush()
        h.close_connection = True  # the upstream hung up: short of the declared length, or past it (dropped)


def _status(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
              "reason": reason, "code": code}
    if details:
        status["details"] = details
    return status


def _serve(sim: Simulator, h) -> None:
    parts = urlsplit(h.path)
    path = unquote(parts.path).rstrip("/") or "/"
    if path == "/_kubesim/stats":  # for benchmarks in another process; not part of the Kubernetes API
        return _send(sim, h, 200, {"requests": len(sim.requests), "most_in_flight": sim.most_in_flight,
                                   "logs": sum(r.path.endswith("/log") for r in list(sim.requests))})
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    accept = h.headers.get("Accept", "")
    sim.record(Request("GET", path, parts.query, accept, h.headers.get("User-Agent", "")))
    scenario = sim.scenario
    attributes = request_attributes(path, query) if scenario.rbac else None
    if attributes and not scenario.rbac.allows(attributes):
        return _send(sim, h, 403, _status(403, "Forbidden", scenario.rbac.forbidden(attributes),
                                          {"name": attributes.name, "group": attributes.group,
                                           "kind": attributes.resource}))
    for fault in scenario.faults:
        if fault.path.search(path):
            if fault.delay:
                time.sleep(fault.delay)  # a slow API server, as the test wants it
            if fault.status:
                body = fault.body.encode() if fault.body else _status(
                    fault.status, {401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 500: "InternalError",
                                   503: "ServiceUnavailable"}.get(fault.status, "Unknown"),
                    f"simulated fault on {path}")
                return _send(sim, h, fault.status, body)
            if fault.body is not None:
                return _send(sim, h, 200, fault.body.encode(), "application/json")
    if scenario.latency_ms:
        time.sleep(scenario.latency_ms / 1000)  # the configured network latency of every request
    try:
        code, body, content_type = _route(sim, path, query, accept)
    except _NotFound as exc:
        code, body, content_type = 404, _status(404, "NotFound", str(exc), exc.details), "application/json"
    _send(sim, h, code, body, content_type)


class _NotFound(Exception):
    def __init__(self, message: str = "the server could not find the requested resource", details: dict | None = None):
        super().__init__(message)
        self.details = details


def _route(sim: Simulator, path: str, query: dict, accept: str):
    store = sim.scenario.store
    if path == "/version":
        major, minor = sim.scenario.kubernetes
        return 200, {"major": str(major), "minor": str(minor), "gitVersion": f"v{major}.{minor}.0",
                     "platform": "linux/amd64"}, "application/json"
    if path in ("/api", "/apis"):
        return _discovery(store, path, accept)
    segments = path.strip("/").split("/")
    if segments[0] == "api" and len(segments) >= 2:
        api, rest = segments[1], segments[2:]
    elif segments[0] == "apis" and len(segments) >= 3:
        api, rest = f"{segments[1]}/{segments[2]}", segments[3:]
    else:
        raise _NotFound()
    if not rest:
        return 200, _resource_list(store, api), "application/json"
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource = store.resources.get((api, rest[0]))
    if resource is None:
        raise _NotFound()
    if len(rest) == 1:
        return 200, _list(sim, resource, namespace, query, accept), "application/json"
    name = rest[1]
    obj = store.get(api, resource.plural, namespace if resource.namespaced else None, name.split(":")[0])
    if len(rest) == 2:
        if obj is None:
            raise _NotFound(f'{resource.plural} "{name}" not found', {"name": name, "kind": resource.plural})
        return 200, _view(sim, resource, obj, accept), "application/json"
    sub = rest[2]
    if sub == "log" and resource.plural == "pods":
        if obj is None:
            raise _NotFound(f'pods "{name}" not found', {"name": name, "kind": "pods"})
        return _pod_log(sim, obj, query)
    if sub == "proxy" and resource.plural == "pods" and sim.scenario.modern is not None:
        if obj is None:
            raise _NotFound(f'pods "{name}" not found', {"name": name, "kind": "pods"})
        return modern.pod_proxy(sim.scenario, obj, name.partition(":")[2], "/".join(rest[3:]))
    if sub == "proxy" and resource.plural == "services":
        return _service_proxy(sim, namespace, name, "/".join(rest[3:]), obj)
    raise _NotFound()


def _view(sim: Simulator, resource: Resource, obj: dict, accept: str) -> dict:
    obj = _live(sim, resource, obj)
    if "as=PartialObjectMetadata" in accept:
        return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
    return obj


def _live(sim: Simulator, resource: Resource, obj: dict) -> dict:
    """Fields that change with time: the kubelets' heartbeats, stamped by each node's clock; metrics-server's
    last scrape (15 s ago) and its creationTimestamp (now), by the API server's clock."""
    if resource.group == "metrics.k8s.io":
        now = sim.now()
        return {**obj, "metadata": {**obj["metadata"], "creationTimestamp": _rfc3339(now)},
                "timestamp": _rfc3339(now - 15)}
    if resource.plural not in ("nodes", "leases"):
        return obj
    name = obj["metadata"]["name"]
    stamp = time.time() + sim.scenario.node_offsets.get(name, 0.0) - HEARTBEAT_AGE
    if resource.plural == "leases":
        return {**obj, "spec": {**obj["spec"], "renewTime": _micro(stamp)}}
    conditions = [{**c, "lastHeartbeatTime": _rfc3339(stamp), "lastTransitionTime": "2018-06-01T10:00:00Z"}
                  for c in obj["status"]["conditions"]]
    return {**obj, "status": {**obj["status"], "conditions": conditions}}


def _rfc3339(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _selected(obj: dict, label_selector: str, field_selector: str) -> bool:
    labels = obj["metadata"].get("labels") or {}
    for term in filter(None, (t.strip() for t in label_selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    for term in filter(None, (t.strip() for t in field_selector.split(","))):
        key, _, value = term.partition("=")
        current = obj
        for piece in key.split("."):
            current = current.get(piece, {}) if isinstance(current, dict) else {}
        if str(current) != value.lstrip("="):
            return False
    return True


def _list(sim: Simulator, resource: Resource, namespace: str | None, query: dict, accept: str) -> dict:
    store = sim.scenario.store
    items = store.list(resource.api, resource.plural, namespace)
    if query.get("labelSelector") or query.get("fieldSelector"):
        def labelled(o):  # metrics-server selects by the pod's labels; its PodMetrics carry none
            if resource.kind != "PodMetrics":
                return o
            return store.get("v1", "pods", o["metadata"]["namespace"], o["metadata"]["name"]) or o
        items = [o for o in items
                 if _selected(labelled(o), query.get("labelSelector", ""), query.get("fieldSelector", ""))]
    start = int(base64.b64decode(query["continue"]).decode()) if query.get("continue") else 0
    limit = int(query.get("limit") or 0)
    page = [_live(sim, resource, o) for o in (items[start:start + limit] if limit else items[start:])]
    more = bool(limit) and start + limit < len(items)
    metadata = {"resourceVersion": "9999"}
    if more:
        metadata["continue"] = base64.b64encode(str(start + limit).encode()).decode()
        metadata["remainingItemCount"] = len(items) - start - limit
    if "as=Table" in accept:
        return _table(resource, page, metadata)
    if "as=PartialObjectMetadataList" in accept:
        return {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
                "items": [{"metadata": o["metadata"]} for o in page]}
    return {"kind": f"{resource.kind}List", "apiVersion": resource.api, "metadata": metadata, "items": page}


def _table(resource: Resource, objects: list[dict], metadata: dict) -> dict:
    columns = [{"name": "Name", "type": "string", "format": "name"}]
    if resource.plural == "pods":
        columns += [{"name": n, "type": t} for n, t in
                    (("Ready", "string"), ("Status", "string"), ("Restarts", "integer"))]
    columns.append({"name": "Age", "type": "string"})
    rows = []
    for obj in objects:
        cells = [obj["metadata"]["name"]]
        if resource.plural == "pods":
            statuses = obj.get("status", {}).get("containerStatuses") or []
            cells += [f"{sum(s.get('ready', False) for s in statuses)}/{len(statuses)}",
                      obj.get("status", {}).get("phase", ""), sum(s.get("restartCount", 0) for s in statuses)]
        cells.append("42d")
        rows.append({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                                "metadata": obj["metadata"]}})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
            "columnDefinitions": columns, "rows": rows}


def _pod_log(sim: Simulator, pod: dict, query: dict):
    containers = [c["name"] for c in pod["spec"].get("containers", [])]
    if sim.scenario.modern is not None:  # init containers have logs too (native sidecars run as one)
        containers += [c["name"] for c in pod["spec"].get("initContainers") or []]
    container = query.get("container") or (containers[0] if len(containers) == 1 else None)
    if container is None:
        return 400, _status(400, "BadRequest", f"a container name must be specified for pod "
                            f"{pod['metadata']['name']}, choose one of: {containers}"), "application/json"
    if container not in containers:
        return 400, _status(400, "BadRequest", f"container {container} is not valid for pod "
                            f"{pod['metadata']['name']}"), "application/json"
    if sim.scenario.modern is not None and query.get("previous") == "true":
        previous = modern.previous_log(sim.scenario, pod, container)
        if previous is None:
            return 400, _status(400, "BadRequest", f'previous terminated container "{container}" in pod '
                                f'"{pod["metadata"]["name"]}" not found'), "application/json"
        lines = previous.splitlines(keepends=True)
    else:
        lines = sim.scenario.pod_log(pod, container).splitlines(keepends=True)
    if query.get("tailLines"):
        lines = lines[-int(query["tailLines"]):] if int(query["tailLines"]) else []
    data = "".join(lines).encode()
    if query.get("limitBytes"):  # like the kubelet: the first N bytes, even mid-line
        data = data[:int(query["limitBytes"])]
    return 200, data, "text/plain"  # sinceSeconds is accepted and ignored: scenario logs keep fixed dates


def _service_proxy(sim: Simulator, namespace: str, name: str, path: str, service: dict | None):
    service_name, _, port = name.partition(":")
    if service is None:
        raise _NotFound(f'services "{service_name}" not found', {"name": service_name, "kind": "services"})
    ports = service["spec"].get("ports") or []
    match = next((p for p in ports if str(p.get("port")) == port or p.get("name") == port or not port), None)
    if match is None:
        return 503, _status(503, "ServiceUnavailable", f"no endpoints available for service \"{name}\""), \
            "application/json"
    selector = service["spec"].get("selector") or {}
    backing = [p for p in sim.scenario.store.list("v1", "pods", namespace)
               if selector and all((p["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())
               and any(c.get("type") == "Ready" and c.get("status") == "True"
                       for c in p.get("status", {}).get("conditions", []))]
    if not backing:
        return 503, _status(503, "ServiceUnavailable", f"no endpoints available for service \"{name}\""), \
            "application/json"
    payload = sim.scenario.proxies.get((namespace, service_name, str(match.get("port")), path))
    if payload is None:
        return 404, b"404 page not found\n", "text/plain; charset=utf-8"
    return payload.status, payload, payload.content_type


# Discovery ----------------------------------------------------------------------------------------

_VERBS = ["get", "list", "watch"]


def _groups(store) -> dict[str, list[Resource]]:
    groups: dict[str, list[Resource]] = {}
    for resource in store.resources.values():
        groups.setdefault(resource.api, []).append(resource)
    return groups


def _discovery(store, path: str, accept: str):
    apis = {api: rs for api, rs in _groups(store).items() if ("/" in api) == (path == "/apis")}
    for version in ("v2", "v2beta1"):
        if f"v={version};as=APIGroupDiscoveryList" in accept.replace(" ", "") or (
                "as=APIGroupDiscoveryList" in accept and f"v={version}" in accept):
            return 200, _aggregated(apis, version), \
                f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
    if path == "/api":
        return 200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}, "application/json"
    by_group: dict[str, list[str]] = {}
    for api in sorted(apis):
        group, version = api.rsplit("/", 1)
        by_group.setdefault(group, []).append(version)
    groups = [{"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
               "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}}
              for g, vs in by_group.items()]
    return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}, "application/json"


def _aggregated(apis: dict[str, list[Resource]], version: str) -> dict:
    by_group: dict[str, dict[str, list[Resource]]] = {}
    for api, resources in sorted(apis.items()):
        group = api.rsplit("/", 1)[0] if "/" in api else ""
        by_group.setdefault(group, {})[api.rsplit("/", 1)[-1]] = resources
    items = []
    for group, versions in by_group.items():
        items.append({
            "metadata": {"name": group} if group else {"creationTimestamp": None},
            "versions": [{
                "version": v, "freshness": "Current",
                "resources": [{
                    "resource": r.plural, "singularResource": r.singular or r.kind.lower(),
                    "scope": "Namespaced" if r.namespaced else "Cluster",
                    "responseKind": {"group": group, "version": v, "kind": r.kind}, "verbs": _VERBS,
                    "subresources": [{"subresource": s, "responseKind": {"group": "", "version": "v1", "kind": "Pod"},
                                      "verbs": ["get"]} for s in r.subresources],
                } for r in sorted(rs, key=lambda r: r.plural)],
            } for v, rs in versions.items()],
        })
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}", "metadata": {},
            "items": items}


def _resource_list(store, api: str) -> dict:
    resources = _groups(store).get(api)
    if resources is None:
        raise _NotFound()
    listed = []
    for r in sorted(resources, key=lambda r: r.plural):
        listed.append({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                       "verbs": _VERBS})
        listed += [{"name": f"{r.plural}/{s}", "singularName": "", "namespaced": r.namespaced, "kind": r.kind,
                    "verbs": ["get"]} for s in r.subresources]
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": api, "resources": listed}

"""Pilot: does its registration API answer and list the mesh's services?"""

from __future__ import annotations

import json

from checks.common import body, down_reason, pod_logs_hint
from checks.errors import BadPayload
from checks.inputs import PODS, SERVICES, Endpoint, Objects
from checks.model import MIXER_ERA, Context, InputUnavailable, check, failed, passed, warned

PILOT = "istio-pilot"
# The v1 API on 8080 is plain HTTP in every version that has it (0.5 to 1.4), mTLS or not.
REGISTRATION_PORT = 8080


def registration(namespace: str) -> Endpoint:
    return Endpoint(namespace, PILOT, REGISTRATION_PORT, "v1/registration")


@check(id="pilot.registration", title="Pilot's registration API lists the mesh's services",
       section="verifying-connectivity-to-istio-pilot", generations=MIXER_ERA,
       inputs=lambda istio: (registration(istio.namespace), Objects(SERVICES), Objects(PODS)),
       signatures=("istio-pilot", "v1/registration", "service-key", "hosts", ":8080", ":15003", ":15005", ":15007",
                   ":15010", ":15011", "discovery", "dial tcp: connection refused", "xds"))
def pilot_registration(ctx: Context):
    """Calls Pilot's v1 registration API (the one the guide curls from a sidecar) and expects a list of
    services, each with its service key and hosts, that covers every Service with ready pods: one missing is a
    partial registry (a stalled watch), and sidecars get no endpoints for it."""
    ns = ctx.istio.namespace
    fix = f"kubectl -n {ns} get pods -l istio=pilot\n{pod_logs_hint(ctx.istio, PILOT, 'discovery')}"
    down = down_reason(ctx.istio, PILOT)
    if down:
        return failed(f"Pilot cannot answer: {down}", [down], fix)
    endpoint = registration(ns)
    try:
        services = json.loads(body(ctx, endpoint))
    except ValueError as exc:
        raise InputUnavailable(BadPayload(f"GET {endpoint} did not answer JSON: {exc}")) from None
    if not isinstance(services, list):
        raise InputUnavailable(BadPayload(f"GET {endpoint} did not answer a list of services"))
    if not services:
        return failed("Pilot answers but lists no service: it cannot read the service registry",
                      [f"GET {endpoint} → []"], fix)
    hosts = sum(len(s.get("hosts") or []) for s in services if isinstance(s, dict))
    sample = [f'{s.get("service-key")}: {len(s.get("hosts") or [])} hosts' for s in services[:5] if isinstance(s, dict)]
    listed = {str(s.get("service-key", "")).split("|", 1)[0] for s in services if isinstance(s, dict)}
    missing = [name for name in _served(ctx) if name not in listed]
    if missing:
        return warned(f"Pilot does not list {len(missing)} Service(s) whose pods are ready: {', '.join(missing[:5])}",
                      [f"not in {endpoint}: {name}" for name in missing[:8]] + sample,
                      fix + f"\nkubectl -n {ns} delete pod -l istio=pilot   # a fresh Pilot rebuilds its registry")
    return passed(f"Pilot lists {len(services)} service keys with {hosts} hosts", *sample)


def _served(ctx: Context) -> list[str]:
    """The FQDN of every Service that selects a running, ready pod: what Pilot's registry must hold."""
    ready = {}
    for pod in ctx.get(Objects(PODS)):
        status = pod.get("status") or {}
        if status.get("phase") == "Running" and all(c.get("ready") for c in status.get("containerStatuses") or []):
            ready.setdefault(pod["metadata"]["namespace"], []).append(pod["metadata"].get("labels") or {})
    names = []
    for svc in ctx.get(Objects(SERVICES)):
        selector = (svc.get("spec") or {}).get("selector") or {}
        meta = svc["metadata"]
        if selector and any(selector.items() <= labels.items() for labels in ready.get(meta["namespace"], [])):
            names.append(f"{meta['name']}.{meta['namespace']}.svc.cluster.local")
    return sorted(names)

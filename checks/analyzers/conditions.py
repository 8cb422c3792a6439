"""Status conditions istiod and the Gateway API controllers write back: the negative ones (IST0171)."""

from __future__ import annotations

from checks.analyzers import Finding, Snapshot, analyzer
from checks.analyzers.snapshot import (
    AUTHORIZATION_POLICIES,
    GRPC_ROUTES,
    HTTP_ROUTES,
    K8S_GATEWAYS,
    SERVICE_ENTRIES,
    SERVICES_T,
    name,
    namespace_of,
)

GATEWAY_API = {"Accepted", "Programmed", "ResolvedRefs"}
# kind → the condition types whose False status is a finding
NEGATIVE = {
    "Service": {"istio.io/WaypointBound"},
    "ServiceEntry": {"istio.io/WaypointBound"},
    "AuthorizationPolicy": {"ZtunnelAccepted", "WaypointAccepted"},
    "Gateway": GATEWAY_API,
    "HTTPRoute": GATEWAY_API,
    "GRPCRoute": GATEWAY_API,
}
FIXES = {
    "istio.io/WaypointBound": "kubectl -n {ns} get gateways.gateway.networking.k8s.io   # is the waypoint there and "
                              "Programmed?\nistioctl waypoint status -n {ns}",
    "ZtunnelAccepted": "kubectl -n {ns} get authorizationpolicy {name} -o yaml   # ztunnel enforces L4 only: move HTTP "
                       "rules to a waypoint (spec.targetRefs)",
    "WaypointAccepted": "kubectl -n {ns} get authorizationpolicy {name} -o yaml   # check spec.targetRefs against "
                        "the waypoint and Services that exist",
}
GATEWAY_FIX = "kubectl -n {ns} describe {resource} {name}   # the condition's message says what to change"


def conditions(kind: str, obj: dict) -> list[tuple[str, dict]]:
    status = obj.get("status") or {}
    if kind in ("HTTPRoute", "GRPCRoute"):
        return [(f"status.parents[{i}]", c) for i, p in enumerate(status.get("parents") or [])
                for c in p.get("conditions") or []]
    return [("status", c) for c in status.get("conditions") or []]


@analyzer(id="config.status-conditions", title="No negative status condition on mesh and gateway objects",
          section="ensure-istiod-accepts-the-policies", codes=("IST0171",), needs=lambda istio: (SERVICES_T,),
          reads=lambda istio: (SERVICE_ENTRIES, AUTHORIZATION_POLICIES, K8S_GATEWAYS, HTTP_ROUTES, GRPC_ROUTES),
          signatures=("IST0171", "NegativeConditionStatus", "istio.io/WaypointBound", "ZtunnelAccepted",
                      "WaypointAccepted", "Programmed", "ResolvedRefs"))
def status_conditions(snap: Snapshot):
    """Reads the conditions istiod writes on Services and ServiceEntries (istio.io/WaypointBound), on
    AuthorizationPolicies (ZtunnelAccepted, WaypointAccepted, and a PartiallyInvalid waypoint acceptance), and the
    Gateway API's Accepted, Programmed and ResolvedRefs on Gateways and routes: a False one means the object is
    not (fully) in effect, and its message says why."""
    for kind, key, resource in (("Service", SERVICES_T, "svc"), ("ServiceEntry", SERVICE_ENTRIES, "serviceentry"),
                                ("AuthorizationPolicy", AUTHORIZATION_POLICIES, "authorizationpolicy"),
                                ("Gateway", K8S_GATEWAYS, "gateways.gateway.networking.k8s.io"),
                                ("HTTPRoute", HTTP_ROUTES, "httproute"), ("GRPCRoute", GRPC_ROUTES, "grpcroute")):
        for obj in snap[key].items:
            ns = namespace_of(obj)
            for where, c in conditions(kind, obj):
                ctype, status, reason = c.get("type", ""), str(c.get("status", "")), c.get("reason", "")
                negative = ctype in NEGATIVE[kind] and status == "False"
                partial = kind == "AuthorizationPolicy" and ctype == "WaypointAccepted" and reason == "PartiallyInvalid"
                if not (negative or partial):
                    continue
                fix = FIXES.get(ctype, GATEWAY_FIX).format(ns=ns, name=name(obj), resource=resource)
                yield Finding(kind, ns, name(obj), "IST0171",
                              {"field": where, "type": ctype, "status": status, "reason": reason or "no reason",
                               "message": c.get("message") or "no message"}, fix,
                              evidence=(f"{where}: type={ctype} status={status} reason={reason} "
                                        f"lastTransitionTime={c.get('lastTransitionTime', '?')}",))

"""Objects the validating webhook would have refused (IST0106): they exist because validation was off.

Not Istio's whole validation: the rules below are the ones whose violation leaves an object in the cluster that
istiod ignores or half-applies (a missing host, a duplicate subset, a server without port or hosts, an action
that does not exist). Each rule names the field.
"""

from __future__ import annotations

from collections.abc import Iterator

from checks.analyzers import Finding, Snapshot, analyzer
from checks.analyzers.snapshot import (
    AUTHORIZATION_POLICIES,
    DESTINATION_RULES,
    ENVOY_FILTERS,
    GATEWAYS,
    PEER_AUTHENTICATIONS,
    REQUEST_AUTHENTICATIONS,
    SERVICE_ENTRIES,
    SIDECARS,
    TELEMETRIES,
    VIRTUAL_SERVICES,
    name,
    namespace_of,
    spec,
)

TLS_MODES = {"DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"}
SERVER_TLS = {"PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"}
MTLS_MODES = {"UNSET", "DISABLE", "PERMISSIVE", "STRICT"}
ACTIONS = {"ALLOW", "DENY", "AUDIT", "CUSTOM"}
RESOLUTIONS = {"NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"}
LOCATIONS = {"MESH_EXTERNAL", "MESH_INTERNAL"}


def _port(value) -> bool:
    return isinstance(value, int) and 0 < value <= 65535


def virtual_service(s: dict) -> Iterator[tuple[str, str]]:
    if not s.get("hosts") and s.get("gateways"):
        yield "spec.hosts", "is empty: a VirtualService bound to gateways must name its hosts"
    for kind in ("http", "tcp", "tls"):
        for i, rule in enumerate(s.get(kind) or []):
            routes = rule.get("route") or []
            if not routes and kind != "http":
                yield f"spec.{kind}[{i}].route", "is empty: the rule sends traffic nowhere"
            if kind == "http" and not routes and not (rule.get("redirect") or rule.get("directResponse")
                                                      or rule.get("delegate")):
                yield f"spec.http[{i}]", "has no route, redirect, directResponse or delegate"
            for j, r in enumerate(routes):
                d = r.get("destination") or {}
                if not d.get("host"):
                    yield f"spec.{kind}[{i}].route[{j}].destination.host", "is missing"
                if "port" in d and not _port((d.get("port") or {}).get("number")):
                    yield f"spec.{kind}[{i}].route[{j}].destination.port.number", "is not a port number (1-65535)"
                if isinstance(r.get("weight"), int) and r["weight"] < 0:
                    yield f"spec.{kind}[{i}].route[{j}].weight", "is negative"
            for j, m in enumerate(rule.get("match") or [] if kind == "http" else []):
                uri = m.get("uri") or {}
                if uri and len([k for k in ("exact", "prefix", "regex") if k in uri]) != 1:
                    yield f"spec.http[{i}].match[{j}].uri", "must set exactly one of exact, prefix, regex"


def destination_rule(s: dict) -> Iterator[tuple[str, str]]:
    if not s.get("host"):
        yield "spec.host", "is missing"
    seen = set()
    for i, subset in enumerate(s.get("subsets") or []):
        if not subset.get("name"):
            yield f"spec.subsets[{i}].name", "is missing"
        elif subset["name"] in seen:
            yield f"spec.subsets[{i}].name", f"duplicates subset {subset['name']}"
        seen.add(subset.get("name"))
    policy = s.get("trafficPolicy") or {}
    mode = (policy.get("tls") or {}).get("mode")
    if mode is not None and mode not in TLS_MODES:
        yield "spec.trafficPolicy.tls.mode", f"{mode!r} is not one of {', '.join(sorted(TLS_MODES))}"


def gateway(s: dict) -> Iterator[tuple[str, str]]:
    if not s.get("servers"):
        yield "spec.servers", "is empty: the gateway listens on nothing"
    for i, server in enumerate(s.get("servers") or []):
        port = server.get("port") or {}
        if not _port(port.get("number")):
            yield f"spec.servers[{i}].port.number", "is missing or not a port number"
        if not port.get("protocol"):
            yield f"spec.servers[{i}].port.protocol", "is missing"
        if not server.get("hosts"):
            yield f"spec.servers[{i}].hosts", "is empty"
        tls = server.get("tls") or {}
        if str(port.get("protocol", "")).upper() in ("HTTPS", "TLS") and not tls:
            yield f"spec.servers[{i}].tls", f"is missing for protocol {port.get('protocol')}"
        if tls.get("mode") and tls["mode"] not in SERVER_TLS:
            yield f"spec.servers[{i}].tls.mode", f"{tls['mode']!r} is not a server TLS mode"
        if tls.get("mode") in ("SIMPLE", "MUTUAL") and not (tls.get("credentialName") or tls.get("credentialNames")
                                                            or tls.get("serverCertificate")):
            yield f"spec.servers[{i}].tls", f"mode {tls['mode']} needs credentialName or serverCertificate"


def service_entry(s: dict) -> Iterator[tuple[str, str]]:
    if not s.get("hosts"):
        yield "spec.hosts", "is empty"
    if s.get("resolution") and s["resolution"] not in RESOLUTIONS:
        yield "spec.resolution", f"{s['resolution']!r} is not one of {', '.join(sorted(RESOLUTIONS))}"
    if s.get("location") and s["location"] not in LOCATIONS:
        yield "spec.location", f"{s['location']!r} is not one of {', '.join(sorted(LOCATIONS))}"
    for i, port in enumerate(s.get("ports") or []):
        if not _port(port.get("number")):
            yield f"spec.ports[{i}].number", "is missing or not a port number"
        if not port.get("name"):
            yield f"spec.ports[{i}].name", "is missing"
    if s.get("resolution") in ("DNS", "DNS_ROUND_ROBIN") and not s.get("endpoints") and not s.get("workloadSelector") \
            and any(str(h).startswith("*") for h in s.get("hosts") or []):
        yield "spec.resolution", "DNS resolution of a wildcard host needs endpoints"


def authorization_policy(s: dict) -> Iterator[tuple[str, str]]:
    action = s.get("action") or "ALLOW"
    if action not in ACTIONS:
        yield "spec.action", f"{action!r} is not one of {', '.join(sorted(ACTIONS))}"
    if action == "CUSTOM" and not s.get("provider"):
        yield "spec.provider", "is required with action CUSTOM"
    if s.get("selector") and (s.get("targetRef") or s.get("targetRefs")):
        yield "spec.selector", "and targetRef(s) cannot both be set"


def peer_authentication(s: dict) -> Iterator[tuple[str, str]]:
    mode = (s.get("mtls") or {}).get("mode")
    if mode is not None and mode not in MTLS_MODES:
        yield "spec.mtls.mode", f"{mode!r} is not one of {', '.join(sorted(MTLS_MODES))}"
    if s.get("portLevelMtls") and not s.get("selector"):
        yield "spec.portLevelMtls", "needs spec.selector (port-level mTLS applies to selected workloads)"


def empty_selector(field: str, labels: str):
    """Istio's validation warns on a workload selector without labels: it selects every workload of the
    namespace (or of the mesh, in the root namespace), which is seldom what the author meant."""
    def rule(s: dict) -> Iterator[tuple[str, str]]:
        selector = s.get(field)
        if isinstance(selector, dict) and not selector.get(labels):
            yield f"spec.{field}", (f"has no {labels}: it selects every workload in its scope; remove it for a "
                                    f"namespace-wide policy, or give it the labels of the workloads meant")
    return rule


RULES = ((VIRTUAL_SERVICES, virtual_service), (DESTINATION_RULES, destination_rule), (GATEWAYS, gateway),
         (SERVICE_ENTRIES, service_entry), (AUTHORIZATION_POLICIES, authorization_policy),
         (PEER_AUTHENTICATIONS, peer_authentication))
# the validating webhook's warnings (IST0133): admitted, but almost always a mistake
WARNINGS = ((AUTHORIZATION_POLICIES, empty_selector("selector", "matchLabels")),
            (PEER_AUTHENTICATIONS, empty_selector("selector", "matchLabels")),
            (REQUEST_AUTHENTICATIONS, empty_selector("selector", "matchLabels")),
            (TELEMETRIES, empty_selector("selector", "matchLabels")),
            (SIDECARS, empty_selector("workloadSelector", "labels")),
            (ENVOY_FILTERS, empty_selector("workloadSelector", "labels")))


@analyzer(id="config.schema", title="Istio objects would pass validation",
          section="invalid-configuration-is-accepted", codes=("IST0106", "IST0133"),
          needs=lambda istio: (VIRTUAL_SERVICES,),
          reads=lambda istio: tuple(dict.fromkeys(k for k, _ in RULES[1:] + WARNINGS)),
          signatures=("IST0106", "SchemaValidationError", "admission webhook", "denied the request",
                      "validation.istio.io"))
def schema(snap: Snapshot):
    """Required fields and allowed values of VirtualServices, DestinationRules, Gateways, ServiceEntries,
    AuthorizationPolicies and PeerAuthentications, as Istio's validating webhook enforces them: an object in the
    cluster that breaks them was written while validation was off, and istiod ignores or half-applies it."""
    for code, rules in (("IST0106", RULES), ("IST0133", WARNINGS)):
        yield from _check(snap, code, rules)


def _check(snap: Snapshot, code: str, rules) -> Iterator[Finding]:
    for key, rule in rules:
        for obj in snap[key].items:
            for field, problem in rule(spec(obj)):
                ns = namespace_of(obj)
                yield Finding(key.kind, ns, name(obj), code, {"field": field, "problem": problem},
                              f"kubectl -n {ns} get {key.source.plural}.{key.source.group} {name(obj)} -o yaml > "
                              f"{name(obj)}.yaml\n# fix {field}, then: kubectl apply --dry-run=server -f "
                              f"{name(obj)}.yaml && kubectl apply -f {name(obj)}.yaml\n"
                              "kubectl get validatingwebhookconfiguration   # and find why validation let it in")

"""istiod-era traffic: DestinationRules against the PeerAuthentication in force (503s after a DR)."""

from __future__ import annotations

from checks.detect import ALL_PODS, ISTIOD, MAX_EVIDENCE, first_served, labels, name_of, proxy_container
from checks.inputs import SERVICES, Kind, Objects
from checks.model import Context, Istio, check, failed, passed, skipped, warned

DESTINATION_RULES = tuple(Objects(Kind(f"networking.istio.io/{v}", "destinationrules")) for v in ("v1", "v1beta1"))
PEER_AUTHENTICATIONS = tuple(Objects(Kind(f"security.istio.io/{v}", "peerauthentications")) for v in ("v1", "v1beta1"))
ORIGINATING = {"DISABLE", "SIMPLE", "MUTUAL"}  # modes that do not speak Istio mTLS to the server's sidecar


def _inputs(istio: Istio) -> tuple:
    return (ALL_PODS, Objects(SERVICES)) + DESTINATION_RULES + PEER_AUTHENTICATIONS


def effective_mode(pod: dict, policies: list[dict], root: str) -> str:
    """STRICT, PERMISSIVE or DISABLE for a pod: workload selector, then namespace, then mesh-wide (root ns)."""
    ns = pod["metadata"]["namespace"]
    def mode(p):  # noqa: E306
        return ((p.get("spec") or {}).get("mtls") or {}).get("mode") or "UNSET"
    for p in policies:
        sel = ((p.get("spec") or {}).get("selector") or {}).get("matchLabels")
        if p["metadata"]["namespace"] == ns and sel and all(labels(pod).get(k) == v for k, v in sel.items()) \
                and mode(p) != "UNSET":
            return mode(p)
    for scope in (ns, root):
        for p in policies:
            if p["metadata"]["namespace"] == scope and not (p.get("spec") or {}).get("selector") and mode(p) != "UNSET":
                return mode(p)
    return "PERMISSIVE"


def _service_for(host: str, dr_ns: str, services: dict) -> dict | None:
    parts = host.split(".")
    name, ns = parts[0], parts[1] if len(parts) > 1 and parts[1] != "svc" else dr_ns
    return services.get((ns, name))


@check(id="traffic.destination-rule-tls", title="DestinationRules agree with PeerAuthentication",
       section="503-errors-after-setting-destination-rule", generations=ISTIOD, inputs=_inputs,
       signatures=("503", "UH", "UF,URX", "upstream connect error or disconnect/reset before headers", "ISTIO_MUTUAL",
                   "PeerAuthentication", "STRICT", "subset"))
def destination_rule_tls(ctx: Context):
    """For each DestinationRule, resolves its host to a Service and that Service's pods, and compares the TLS mode
    it sets (top level and per port) with the PeerAuthentication in force on those pods. A subset that selects no
    pod is configuration analysis (IST0173, `check config`), not this section's TLS conflict."""
    rules = first_served(ctx, DESTINATION_RULES)
    if not rules:
        return skipped("no DestinationRule in the mesh")
    policies = first_served(ctx, PEER_AUTHENTICATIONS)
    services = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in ctx.get(Objects(SERVICES))}
    pods = ctx.get(ALL_PODS)
    hard, soft = [], []
    for dr in rules:
        spec = dr.get("spec") or {}
        service = _service_for(str(spec.get("host", "")), dr["metadata"]["namespace"], services)
        if service is None:
            continue  # external or unknown host (IST0174 territory)
        selector = (service.get("spec") or {}).get("selector") or {}
        backing = [p for p in pods if p["metadata"]["namespace"] == service["metadata"]["namespace"] and selector
                   and all(labels(p).get(k) == v for k, v in selector.items())]
        policy = spec.get("trafficPolicy") or {}
        modes = [((policy.get("tls") or {}).get("mode"), "")] + [
            ((pl.get("tls") or {}).get("mode"), f" port {(pl.get('port') or {}).get('number')}")
            for pl in policy.get("portLevelSettings") or []]
        strict = [p for p in backing if effective_mode(p, policies, ctx.istio.namespace) == "STRICT"]
        for mode, where in modes:
            if mode in ORIGINATING and strict:
                hard.append(f"DestinationRule {name_of(dr)} sets tls.mode {mode}{where} for {spec.get('host')}, whose "
                            f"{len(strict)} pod(s) require mutual TLS (STRICT): clients get 503 (UC/URX,UF)")
            if mode == "ISTIO_MUTUAL" and backing and not any(proxy_container(p)[0] for p in backing) and not any(
                    (p["metadata"].get("annotations") or {}).get("ambient.istio.io/redirection") == "enabled"
                    for p in backing):
                soft.append(f"DestinationRule {name_of(dr)} sends Istio mTLS to {spec.get('host')}, whose pods have "
                            "no proxy to terminate it")
    fix = ("kubectl get destinationrule,peerauthentication -A\n"
           "istioctl analyze -A\n"
           "# inside the mesh let auto mTLS choose: drop trafficPolicy.tls, or set mode ISTIO_MUTUAL")
    evidence = [f"{len(rules)} DestinationRule(s), {len(policies)} PeerAuthentication(s) read"]
    if hard:
        return failed(hard[0], hard[1:MAX_EVIDENCE] + soft[:3] + evidence, fix)
    if soft:
        return warned(soft[0], soft[1:MAX_EVIDENCE] + evidence, fix)
    return passed(f"{len(rules)} DestinationRule(s) agree with the PeerAuthentication in force", *evidence)

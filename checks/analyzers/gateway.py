"""Istio Gateways: the workload they select and its Service ports, gateways that conflict, shared certificates."""

from __future__ import annotations

from collections import defaultdict

from checks.analyzers import Finding, Snapshot, analyzer
from checks.analyzers.snapshot import (
    GATEWAYS,
    PODS,
    SERVICES_T,
    labels_of,
    name,
    namespace_of,
    ref,
    selector_text,
    spec,
)

INGRESS = "route-rules-have-no-effect-on-ingress-gateway-requests"


def gw_finding(gw: dict, code: str, values: dict, fix: str, refs=(), evidence=()) -> Finding:
    return Finding("Gateway", namespace_of(gw), name(gw), code, values, fix, tuple(refs), tuple(evidence))


def selects(selector: dict, labels: dict) -> bool:
    """A Gateway's spec.selector (plain labels); an empty one selects every pod, as istioctl reads it."""
    return all(labels.get(k) == str(v) for k, v in selector.items())


def _target_port(port: dict) -> int | None:
    target = port.get("targetPort")
    return target if isinstance(target, int) and target else None


@analyzer(id="config.gateway-workloads", title="Gateways select a gateway workload that exposes their ports",
          section=INGRESS, codes=("IST0101", "IST0162"), needs=lambda istio: (GATEWAYS, PODS, SERVICES_T),
          signatures=("IST0101", "IST0162", "spec.selector", "istio: ingressgateway", "connection refused",
                      "GatewayPortNotDefinedOnService"))
def gateway_workloads(snap: Snapshot):
    """A Gateway's spec.selector must match gateway pods (in any namespace, as istioctl reads it), and each
    server port must be a port or target port of a TCP Service in front of those pods; otherwise traffic for it
    never reaches the gateway."""
    pods, services = snap[PODS], snap[SERVICES_T]
    for gw in snap[GATEWAYS].items:
        selector = spec(gw).get("selector") or {}
        matched = pods.matching(selector)
        text = selector_text(selector)
        if not matched:
            candidates = sorted({f"{k}={v}" for p in pods.items for k, v in labels_of(p).items()
                                 if k in ("istio", "app") and "gateway" in str(v)},
                                key=lambda c: (c.split("=")[0] not in selector, c))  # the selector's own key first
            yield gw_finding(gw, "IST0101", {"field": "spec.selector", "what": "a pod labelled", "ref": text,
                                             "hint": f"; gateway pods carry {', '.join(candidates)}" if candidates
                                             else "; no gateway pod runs"},
                             f"kubectl get pods -A -l {text or 'istio=ingressgateway'} --show-labels\n"
                             f"kubectl -n {namespace_of(gw)} edit gateway {name(gw)}   # spec.selector: "
                             + (candidates[0].replace("=", ": ") if candidates else "the labels of your gateway pods"),
                             evidence=(f"no pod in any namespace carries {text}",))
            continue
        ports: set[int] = set()
        mapped: set[int] = set()
        fronting = set()
        for pod in matched:
            for svc in services.in_namespace(namespace_of(pod)):
                if not selects(spec(svc).get("selector") or {}, labels_of(pod)):
                    continue
                fronting.add(ref("Service", svc))
                for p in spec(svc).get("ports") or []:
                    if (p.get("protocol") or "TCP") != "TCP":  # the API server defaults an unset protocol to TCP
                        continue
                    target = _target_port(p)
                    ports.add(target or p.get("port"))
                    if target:
                        mapped.add(p.get("port"))
        for i, server in enumerate(spec(gw).get("servers") or []):
            number = (server.get("port") or {}).get("number")
            if number is None or number in ports or number in mapped:
                continue
            first = sorted(fronting)[0].split(" ")[1] if fronting else f"{namespace_of(matched[0])}/SERVICE"
            yield gw_finding(gw, "IST0162", {"index": i, "port": number, "selector": text},
                             f"kubectl -n {first.split('/')[0]} get svc {first.split('/')[1]} -o yaml   # ports: "
                             f"{sorted(ports)}\n# add a Service port with targetPort {number}, or move "
                             f"spec.servers[{i}].port.number to one of {sorted(ports)}",
                             refs=tuple(sorted(fronting)),
                             evidence=(f"{len(matched)} pod(s) match {text or 'every pod'}; Services in front: "
                                       f"{', '.join(sorted(fronting)) or 'none'}",))


@analyzer(id="config.gateway-conflicts", title="No two Gateways claim the same host and port on one workload",
          section=INGRESS, codes=("IST0145",), needs=lambda istio: (GATEWAYS, PODS),
          signatures=("IST0145", "ConflictingGateways", "spec.servers", "hosts", "port"))
def gateway_conflicts(snap: Snapshot):
    """Gateways whose selectors pick the same gateway pods and whose servers listen on the same port with an
    overlapping host (and bind address) conflict: the gateway keeps one of them and drops the other's routes."""
    pods = snap[PODS]
    by_key: dict[tuple[str, int], dict[str, dict[str, str]]] = defaultdict(dict)  # (selector, port) → gw → host:bind
    gateways = snap[GATEWAYS].items
    for gw in gateways:
        sel = selector_text(spec(gw).get("selector"))
        for server in spec(gw).get("servers") or []:
            port = (server.get("port") or {}).get("number")
            by_key[(sel, port)][f"{namespace_of(gw)}/{name(gw)}"] = {h: server.get("bind", "") for h in
                                                                     server.get("hosts") or []}
    for gw in gateways:
        me, selector = f"{namespace_of(gw)}/{name(gw)}", spec(gw).get("selector") or {}
        sel = selector_text(selector)
        shared, mine = set(), None
        for other_sel in {s for s, _ in by_key}:
            if other_sel == sel:
                shared.add(other_sel)
            elif sel in other_sel or other_sel in sel:
                other = dict(pair.split("=", 1) for pair in other_sel.split(",") if "=" in pair)
                mine = pods.matching(selector) if mine is None else mine
                if any(selects(other, labels_of(p)) for p in mine):
                    shared.add(other_sel)
        for i, server in enumerate(spec(gw).get("servers") or []):
            port, bind = (server.get("port") or {}).get("number"), server.get("bind", "")
            hosts = server.get("hosts") or []
            others = sorted({n for s in shared for n, known in by_key.get((s, port), {}).items()
                             if n != me and any(known.get(h, None) == bind for h in hosts)})
            if others:
                yield gw_finding(gw, "IST0145", {"field": f"spec.servers[{i}]", "port": port, "hosts": hosts,
                                                 "others": ", ".join(others), "selector": sel},
                                 f"# serve {hosts} on port {port} from one Gateway: merge the servers, or give one a "
                                 f"distinct host\n" + "\n".join(f"kubectl -n {n.split('/')[0]} get gateway "
                                                                f"{n.split('/')[1]} -o yaml" for n in [me] + others),
                                 refs=tuple(f"Gateway {n}" for n in others))


def _same_certificate(a: dict, b: dict) -> bool:
    if a.get("credentialName") and b.get("credentialName"):
        return a["credentialName"] == b["credentialName"]
    if not a.get("credentialName") and not b.get("credentialName"):
        if a.get("serverCertificate") and a.get("serverCertificate") == b.get("serverCertificate"):
            return bool(a.get("privateKey")) and a.get("privateKey") == b.get("privateKey")
    return False


@analyzer(id="config.gateway-certificates", title="Gateways do not share a TLS certificate",
          section="404-errors-occur-when-multiple-gateways-configured-with-same-tls-certificate", codes=("IST0138",),
          needs=lambda istio: (GATEWAYS,),
          signatures=("IST0138", "GatewayDuplicateCertificate", "credentialName", "404", "HTTP/2 connection reuse"))
def gateway_certificates(snap: Snapshot):
    """Two Gateways on the same workload whose servers use the same certificate (credentialName, or the same
    certificate and key files) let browsers reuse one HTTP/2 connection for both hosts, and the second host then
    answers 404."""
    gateways = snap[GATEWAYS].items
    for gw in gateways:
        selector = spec(gw).get("selector") or {}
        for other in gateways:
            if other is gw:
                continue
            theirs = spec(other).get("selector") or {}
            if selector and not all(k in theirs and theirs[k] == v for k, v in selector.items()):
                continue
            pairs = [(i, s.get("tls"), t.get("tls")) for i, s in enumerate(spec(gw).get("servers") or [])
                     for t in spec(other).get("servers") or []]
            hit = next(((i, a) for i, a, b in pairs if a and b and _same_certificate(a, b)), None)
            if hit:
                i, tls = hit
                cert = tls.get("credentialName") or tls.get("serverCertificate")
                yield gw_finding(gw, "IST0138", {"field": f"spec.servers[{i}].tls", "other": ref("", other).strip()},
                                 f"# give each Gateway its own certificate, or serve both hosts from one Gateway "
                                 f"with one server\nkubectl -n {namespace_of(gw)} edit gateway {name(gw)}   "
                                 f"# spec.servers[{i}].tls.credentialName: {cert} → a certificate of its own",
                                 refs=(ref("Gateway", other),), evidence=(f"both use {cert}",))

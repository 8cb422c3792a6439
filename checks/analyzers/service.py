"""Service ports: does each declare its protocol (port name prefix or appProtocol), as Istio reads it."""

from __future__ import annotations

from checks.analyzers import Finding, Snapshot, analyzer
from checks.analyzers.snapshot import SERVICES_T, labels_of, name, namespace_of, spec

PROTOCOLS = {"tcp", "udp", "grpc", "grpc-web", "http", "http_proxy", "http2", "https", "tls", "mongo", "redis",
             "mysql"}
APP_PROTOCOLS = {"kubernetes.io/h2c", "kubernetes.io/ws", "kubernetes.io/wss"}
WELL_KNOWN_TCP = {25, 53, 3306, 27017}  # SMTP, DNS, MySQL, MongoDB: TCP when nothing says otherwise
MANAGED = {"istio.io-gateway-controller", "istio.io-mesh-controller", "istio.io-eastwest-controller"}


def protocol(port: dict) -> str | None:
    """The protocol Istio gives a Service port, or None when it has to sniff it."""
    if (port.get("protocol") or "TCP") == "UDP":
        return "udp"
    text = port.get("appProtocol") if port.get("appProtocol") is not None else port.get("name") or ""
    if text in APP_PROTOCOLS:
        return text
    if text.lower().startswith("grpc-web"):
        return "grpc-web"
    prefix = text.split("-", 1)[0].lower()
    if prefix in PROTOCOLS:
        return prefix
    return "tcp" if port.get("port") in WELL_KNOWN_TCP else None


@analyzer(id="config.service-port-names", title="Service ports declare their protocol",
          section="sending-https-to-an-http-port", codes=("IST0118", "IST0150"), needs=lambda istio: (SERVICES_T,),
          signatures=("IST0118", "IST0150", "appProtocol", "port name", "http-", "tcp-", "protocol sniffing"))
def service_port_names(snap: Snapshot):
    """Every port of a Service outside the control plane should name its protocol (`http-…`, `grpc`, `tcp-…`, or
    appProtocol); otherwise the proxies sniff it, which breaks server-first protocols and hides TLS mistakes. An
    ExternalName Service's ports need a protocol other than plain `tcp` for TCP to be forwarded."""
    for svc in snap[SERVICES_T].items:
        lab = labels_of(svc)
        if "istio" in lab or lab.get("release") == "istio" or lab.get("gateway.istio.io/managed") in MANAGED:
            continue
        if any(o.get("kind") == "Gateway" for o in svc["metadata"].get("ownerReferences") or []):
            continue  # istiod made it for a Gateway (a waypoint's 15008 `mesh` port): not the user's to name
        external = spec(svc).get("type") == "ExternalName"
        ns = namespace_of(svc)
        for i, port in enumerate(spec(svc).get("ports") or []):
            pname = port.get("name") or ""
            if protocol(port) is not None and not (pname == "tcp" and external):
                continue
            guess = "http" if port.get("port") in (80, 8080, 9080) else "tcp"
            code = "IST0150" if external else "IST0118"
            yield Finding("Service", ns, name(svc), code,
                          {"index": i, "port": port.get("port"), "name": pname},
                          f"kubectl -n {ns} patch service {name(svc)} --type json -p "
                          f"'[{{\"op\": \"add\", \"path\": \"/spec/ports/{i}/appProtocol\", \"value\": \"{guess}\"}}]'"
                          f"\n# or rename the port {guess}-{pname or port.get('port')} (the prefix is the protocol: "
                          "http, http2, grpc, tcp, tls, https…)",
                          evidence=(f"spec.ports[{i}]: port {port.get('port')}, targetPort {port.get('targetPort')}, "
                                    f"name {pname!r}, appProtocol {port.get('appProtocol')!r}",))

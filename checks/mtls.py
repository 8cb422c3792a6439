"""Long-lived TCP connections cut when the CA rotates certificates and Envoy restarts."""

from __future__ import annotations

from checks import istio as names
from checks.common import duration_seconds, mesh_config
from checks.inputs import CONFIGMAPS, PODS, SERVICES, Object, Objects, has_sidecar
from checks.model import MIXER_ERA, Context, Generation, check, passed, warned

NON_TCP_PROTOCOLS = ("http", "http2", "grpc")
# Workload certificate lifetime when --workload-cert-ttl is not set, by CA release.
DEFAULT_CERT_TTL = {Generation.MIXER_05: "19h", Generation.MIXER_08: "2160h", Generation.MIXER_1X: "2160h"}
GRACE_RATIO = 0.5  # certificates are renewed at half their lifetime


def _is_tcp(port: dict) -> bool:
    name = str(port.get("name") or "")
    return port.get("protocol", "TCP") == "TCP" and name.split("-")[0] not in NON_TCP_PROTOCOLS


def _in_mesh(service: dict, pods: list[dict]) -> bool:
    selector = (service.get("spec") or {}).get("selector") or {}
    ns = service["metadata"]["namespace"]
    return bool(selector) and any(
        p["metadata"]["namespace"] == ns and has_sidecar(p)
        and all((p["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())
        for p in pods
    )


def _rotation(ctx: Context, ca: dict) -> str:
    ttl = DEFAULT_CERT_TTL.get(ctx.istio.generation, "?")
    containers = (ca or {}).get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    ca_container = next((c for c in containers if c.get("name") != "istio-proxy"), {})  # istio-ca, citadel…
    for arg in ca_container.get("args") or []:
        if str(arg).startswith("--workload-cert-ttl"):
            ttl = str(arg).split("=", 1)[-1]
    seconds = duration_seconds(ttl)
    every = f"about every {seconds * GRACE_RATIO / 3600:g} h" if seconds else "periodically"
    return f"workload certificates (TTL {ttl}) are renewed {every}, and each renewal restarts Envoy"


@check(id="mtls.headless-tcp", title="Headless TCP services are not cut by certificate rotation",
       section="headless-tcp-services-losing-connection-from-istiofied-containers", generations=MIXER_ERA,
       inputs=lambda istio: (Object(CONFIGMAPS, istio.namespace, "istio"), Objects(SERVICES), Objects(PODS)),
       signatures=("headless", "clusterIP: None", "MUTUAL_TLS", "certificate rotation", "istio-ca",
                   "connection reset", "15 minutes"))
def headless_tcp(ctx: Context):
    """Looks for the combination that drops long-lived connections: the CA running, mutual TLS on in the mesh
    config, and headless Services with TCP ports whose pods carry a sidecar."""
    ns = ctx.istio.namespace
    ca_name = names.ca_deployment(ctx.istio)
    ca = ctx.istio.deployments.get(ca_name)
    mtls = str(mesh_config(ctx).get("authPolicy", "NONE")).upper() == "MUTUAL_TLS"
    pods = ctx.get(Objects(PODS))
    headless = [
        f'{s["metadata"]["namespace"]}/{s["metadata"]["name"]} ports '
        + ",".join(f'{p.get("name") or "unnamed"}:{p.get("port")}' for p in s["spec"].get("ports", []) if _is_tcp(p))
        for s in ctx.get(Objects(SERVICES))
        if (s.get("spec") or {}).get("clusterIP") == "None"
        and any(_is_tcp(p) for p in s["spec"].get("ports", [])) and _in_mesh(s, pods)
    ]
    ca_running = names.ready_replicas(ca) > 0
    state = [f"CA {ns}/{ca_name}: {'running' if ca_running else 'not running'}",
             f"mesh authPolicy: {'MUTUAL_TLS' if mtls else 'NONE'}"]
    if ca_running and mtls and headless:
        return warned(f"{len(headless)} headless TCP service(s) in the mesh will lose their connections at every "
                      "certificate rotation", headless[:8] + state + [_rotation(ctx, ca)],
                      "# make the clients reconnect; or, to stop the restarts, turn mutual TLS off and stop the CA:\n"
                      f"kubectl -n {ns} edit configmap istio   # remove authPolicy: MUTUAL_TLS\n"
                      f"kubectl -n {ns} delete pods -l istio=pilot\n"
                      f"kubectl -n {ns} scale --replicas=0 deployment/{ca_name}")
    if not headless:
        return passed("no headless TCP service in the mesh", *state)
    return passed(f"{len(headless)} headless TCP service(s), but "
                  + ("mutual TLS is off" if not mtls else f"{ca_name} is not running"), *state)

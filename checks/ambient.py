"""Ambient mode: the node agents, what they captured, the policies that break HBONE or need a waypoint; and
plaintext clients refused under STRICT, in either data plane.

How ambient works, as these checks read it (istio/istio and istio/ztunnel at 1.28.0): a pod is enrolled by
`istio.io/dataplane-mode=ambient` on it or its namespace; the istio-cni node agent sets up redirection in its
network namespace, writes `ambient.istio.io/redirection: enabled` on it and hands it to the node's ztunnel,
which counts it in `workload_manager_active_proxy_count` (15020/metrics). Traffic between ambient pods is HBONE
on port 15008, so a NetworkPolicy must admit 15008. ztunnel enforces L4 only: HTTP fields of an
AuthorizationPolicy need a waypoint, bound with `istio.io/use-waypoint`, and the policy attached to it by
targetRefs; istiod reports the binding as the `istio.io/WaypointBound` condition on the Service, the waypoint's
readiness as the Gateway's `Programmed` condition.
"""

from __future__ import annotations

from checks.analyzers.policy import ztunnel_http
from checks.analyzers.snapshot import MeshConfig, root_namespace
from checks.detect import (
    ALL_NAMESPACES,
    ALL_PODS,
    GATEWAYS,
    ISTIOD,
    MAX_EVIDENCE,
    WAYPOINT_CLASS,
    PerPod,
    ambient_enrolled,
    annotations,
    first_served,
    is_cni,
    is_ztunnel,
    labels,
    name_of,
    namespace_labels,
    proxy_container,
    ready,
    running,
)
from checks.errors import ClusterError
from checks.inputs import SERVICES, Kind, Objects
from checks.istiod import scraped
from checks.metrics import find
from checks.model import Context, check, failed, passed, skipped, warned
from checks.modern_inputs import EVENTS
from checks.modern_proxies import ENVOY_STATS
from checks.modern_traffic import PEER_AUTHENTICATIONS, effective_mode

REDIRECTION = "ambient.istio.io/redirection"
HBONE_PORT = 15008
ZTUNNEL_METRICS = PerPod("ztunnel", 15020, "metrics")
NETWORK_POLICIES = Objects(Kind("networking.k8s.io/v1", "networkpolicies"))
AUTHORIZATION_POLICIES = tuple(Objects(Kind(f"security.istio.io/{v}", "authorizationpolicies"))
                               for v in ("v1", "v1beta1"))
SECTION_CNI = "verify-istio-cni-pods-are-running-if-used"


def _enrolled(ctx: Context) -> list[dict]:
    ns_labels = namespace_labels(ctx.get(ALL_NAMESPACES))
    return [p for p in ctx.get(ALL_PODS) if ambient_enrolled(p, ns_labels.get(p["metadata"]["namespace"], {}))
            and proxy_container(p)[0] is None]  # a sidecar wins: istio-cni skips the pod (captured() says so)


def _no_ambient(ctx: Context) -> bool:
    """No ztunnel runs and no pod asks for ambient. When the namespaces' labels cannot be read, only the pods' own
    labels and istio-cni's annotation tell; with no ztunnel anywhere, no pod can be captured either."""
    pods = ctx.get(ALL_PODS)
    if any(is_ztunnel(p) for p in pods):
        return False
    if ctx.maybe(ALL_NAMESPACES) is None:
        return not any(ambient_enrolled(p, {}) or annotations(p).get(REDIRECTION) for p in pods)
    return not _enrolled(ctx)


def _node_of(pod: dict) -> str:
    return (pod.get("spec") or {}).get("nodeName") or "(unscheduled)"


def _ztunnel_logs_fix(node: str) -> str:
    return (f"kubectl get pods -A -l app=ztunnel -o wide --field-selector spec.nodeName={node}\n"
            f"kubectl get pods -A -l k8s-app=istio-cni-node -o wide --field-selector spec.nodeName={node}\n"
            f"kubectl get events -A --field-selector reason=FailedCreatePodSandBox,source={node}")


@check(id="ambient.node-agents", title="Every node with ambient pods runs a ready ztunnel and istio-cni",
       section=SECTION_CNI, generations=ISTIOD, inputs=lambda istio: (ALL_PODS, ALL_NAMESPACES, Objects(EVENTS)),
       signatures=("ztunnel", "istio-cni-node", "FailedCreatePodSandBox", "no ztunnel connection",
                   "unable to push CNI event", "15008", "ambient"))
def node_agents(ctx: Context):
    """For each node that runs (or is scheduled) an ambient pod, looks for a ready ztunnel and a ready istio-cni
    agent; a node without either cannot start new ambient pods (the CNI plugin fails the sandbox, kubelet's
    FailedCreatePodSandBox events say so)."""
    if _no_ambient(ctx):
        return skipped("no pod is enrolled in ambient mode and no ztunnel runs")
    pods = ctx.get(ALL_PODS)
    nodes = sorted({_node_of(p) for p in _enrolled(ctx)})
    problems, evidence = [], []
    for node in nodes:
        for what, test in (("ztunnel", is_ztunnel), ("istio-cni", is_cni)):
            here = [p for p in pods if test(p) and _node_of(p) == node]
            if not any(running(p) and ready(p) for p in here):
                state = ", ".join(f"{name_of(p)} {(p.get('status') or {}).get('phase')}, not ready" for p in here)
                problems.append(f"node {node} runs ambient pods but no ready {what}" + (f" ({state})" if state else ""))
    sandbox = [e for e in ctx.maybe(Objects(EVENTS), []) or [] if e.get("reason") == "FailedCreatePodSandBox"
               and "istio-cni" in str(e.get("message", ""))]
    evidence += [f"event {e['involvedObject'].get('namespace')}/{e['involvedObject'].get('name')}: "
                 f"{str(e.get('message', ''))[:200]}" for e in sandbox[:3]]
    evidence.append(f"{len(nodes)} node(s) run ambient pods: {', '.join(nodes[:6])}")
    if problems:
        return failed(problems[0], problems[1:] + evidence, _ztunnel_logs_fix(problems[0].split()[1]))
    return passed(f"ztunnel and istio-cni are ready on all {len(nodes)} node(s) with ambient pods", *evidence)


@check(id="ambient.captured", title="Pods enrolled in ambient are captured by their node's ztunnel",
       section=SECTION_CNI, generations=ISTIOD, inputs=lambda istio: (ALL_PODS, ALL_NAMESPACES, ZTUNNEL_METRICS),
       signatures=("ambient.istio.io/redirection", "workload_manager_active_proxy_count",
                   "workload_manager_pending_proxy_count", "failed to reconcile inpod rules",
                   "istio.io/dataplane-mode"))
def captured(ctx: Context):
    """Each enrolled pod should carry the redirection annotation the CNI agent writes, and its node's ztunnel should
    count at least as many active proxies as there are annotated pods on that node: the annotation is the agent's
    belief, ztunnel's count is what it serves (after a node reboot or agent restart the two part). A pod with a
    sidecar and an ambient enrolment is skipped by the agent: two data planes asked for one pod."""
    if _no_ambient(ctx):
        return skipped("no pod is enrolled in ambient mode and no ztunnel runs")
    ns_labels = namespace_labels(ctx.get(ALL_NAMESPACES))
    both = [p for p in ctx.get(ALL_PODS) if proxy_container(p)[0] is not None
            and ambient_enrolled(p, ns_labels.get(p["metadata"]["namespace"], {}))]
    enrolled = _enrolled(ctx)
    hard, soft, evidence, bad_nodes = [], [], [], []
    annotated: dict[str, int] = {}
    for p in enrolled:
        value = annotations(p).get(REDIRECTION)
        if value == "enabled":
            annotated[_node_of(p)] = annotated.get(_node_of(p), 0) + 1
        elif value == "pending":
            bad_nodes.append(_node_of(p))
            hard.append(f"{name_of(p)} on {_node_of(p)} is pending: no ztunnel accepted it, it has no traffic")
        else:
            bad_nodes.append(_node_of(p))
            hard.append(f"{name_of(p)} on {_node_of(p)} is enrolled but not captured (no {REDIRECTION} annotation,"
                        f" {(p.get('status') or {}).get('phase')})")
    stats, unread = scraped(ctx.get(ZTUNNEL_METRICS), ":15020/metrics")
    by_node = {}
    for pod, samples in stats.items():
        node = next((_node_of(p) for p in ctx.get(ALL_PODS) if name_of(p) == pod), "?")
        by_node[node] = sum(s.value for s in find(samples, "workload_manager_active_proxy_count"))
    for node, count in sorted(annotated.items()):
        if node not in by_node:
            evidence.append(f"node {node}: ztunnel's count not read")
            continue
        evidence.append(f"node {node}: {count} pods annotated {REDIRECTION}=enabled, ztunnel serves {by_node[node]:g}")
        if by_node[node] < count:
            bad_nodes.append(node)
            hard.append(f"node {node}: {count} pods are annotated as captured but its ztunnel serves only "
                        f"{by_node[node]:g} (workload_manager_active_proxy_count): the rest are not in the mesh")
    soft += [f"{name_of(p)} has a sidecar and is enrolled in ambient: istio-cni leaves it to the sidecar" for p in both]
    evidence += unread[:3]
    fix = (_ztunnel_logs_fix(bad_nodes[0]) + "\n" if bad_nodes else "") \
        + "# restart the pods it lost so istio-cni captures them again:\n" \
        + "\n".join(f"kubectl -n {ns} rollout restart deployment"
                    for ns in sorted({p["metadata"]["namespace"] for p in enrolled})[:3])
    if both:
        fix += "\n# keep one data plane per pod: drop the sidecar label, or set istio.io/dataplane-mode=none on it"
    if hard:
        return failed(hard[0], hard[1:MAX_EVIDENCE] + soft[:2] + evidence, fix.strip())
    if soft:
        return warned(soft[0], soft[1:MAX_EVIDENCE] + evidence, fix.strip())
    return passed(f"all {len(enrolled)} enrolled pods are captured and served by their node's ztunnel", *evidence)


def _selects(selector: dict | None, pod: dict) -> bool:
    match = (selector or {}).get("matchLabels") or {}
    return all(labels(pod).get(k) == v for k, v in match.items()) and not (selector or {}).get("matchExpressions")


@check(id="ambient.hbone-policy", title="NetworkPolicies admit HBONE (15008) to ambient pods",
       section="authorization-is-too-restrictive-or-permissive", generations=ISTIOD,
       inputs=lambda istio: (ALL_PODS, ALL_NAMESPACES, NETWORK_POLICIES),
       signatures=("NetworkPolicy", "15008", "HBONE", "maybe a NetworkPolicy is blocking HBONE port 15008",
                   "connection timed out"))
def hbone_policy(ctx: Context):
    """Ambient traffic reaches a pod on 15008 (HBONE) and NetworkPolicy is enforced outside the pod, so a policy
    that selects ambient pods and admits only their application ports drops every mesh connection to them."""
    if _no_ambient(ctx):
        return skipped("no pod is enrolled in ambient mode and no ztunnel runs")
    enrolled = _enrolled(ctx)
    problems = []
    policies = ctx.get(NETWORK_POLICIES)
    for policy in policies:
        spec = policy.get("spec") or {}
        if "Ingress" not in (spec.get("policyTypes") or ["Ingress"]):
            continue
        hit = [p for p in enrolled if p["metadata"]["namespace"] == policy["metadata"]["namespace"]
               and _selects(spec.get("podSelector"), p)]
        if not hit:
            continue
        rules = spec.get("ingress") or []
        if not rules:
            continue  # denies everything on purpose: not an HBONE mistake
        listed = [rule.get("ports") for rule in rules]
        if any(not ports for ports in listed):
            continue  # a rule with no ports admits every port, 15008 included
        ports = {str(p.get("port")) for ports in listed for p in ports}
        if str(HBONE_PORT) not in ports:
            problems.append(f"NetworkPolicy {name_of(policy)} admits port(s) {', '.join(sorted(ports))} but not"
                            f" {HBONE_PORT} to {len(hit)} ambient pod(s) ({name_of(hit[0])}, ...): mesh traffic"
                            " arrives as HBONE on 15008 and is dropped")
    if problems:
        ns, name = problems[0].split()[1].split("/", 1)
        return failed(problems[0], problems + [f"{len(policies)} NetworkPolicy(ies) read"],
                      f"kubectl -n {ns} edit networkpolicy {name}\n"
                      f"# add to each ingress rule's ports:  - port: {HBONE_PORT}\n#   protocol: TCP")
    return passed(f"{len(policies)} NetworkPolicy(ies) leave HBONE ({HBONE_PORT}) open to the ambient pods they select")


def _waypoint_of(pod: dict, ns_labels: dict, services: list[dict]) -> str | None:
    """The waypoint a pod's traffic goes through: pod label, then a Service selecting it, then its namespace; the
    first `istio.io/use-waypoint` found decides, and `none` opts out."""
    ns = pod["metadata"]["namespace"]
    found = labels(pod).get("istio.io/use-waypoint")
    for svc in services if not found else ():
        selector = (svc.get("spec") or {}).get("selector") or {}
        if svc["metadata"]["namespace"] == ns and selector and _selects({"matchLabels": selector}, pod) \
                and labels(svc).get("istio.io/use-waypoint"):
            found = labels(svc)["istio.io/use-waypoint"]
            break
    found = found or ns_labels.get(ns, {}).get("istio.io/use-waypoint")
    return None if found == "none" else found


def _conditions(obj: dict) -> dict[str, dict]:
    return {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or []}


@check(id="ambient.waypoints", title="L7 policy is attached to a waypoint, and waypoints are bound and ready",
       section="ensure-proxies-enforce-policies-correctly", generations=ISTIOD,
       inputs=lambda istio: (ALL_PODS, ALL_NAMESPACES, Objects(SERVICES), GATEWAYS, MeshConfig(istio.namespace))
       + AUTHORIZATION_POLICIES,
       signatures=("waypoint", "istio.io/use-waypoint", "istio.io/WaypointBound", "WaypointIsNotReady",
                   "ZtunnelAccepted", "UnsupportedValue", "istio-waypoint", "AuthorizationPolicy"))
def waypoints(ctx: Context):
    """An AuthorizationPolicy with HTTP fields that ambient pods' ztunnel enforces (bound by selector, namespace-wide
    or, from the root namespace, mesh-wide) cannot be enforced as written, waypoint or not: ztunnel reads no HTTP
    and turns the rule into a DENY. Only targetRefs to a waypoint (a Gateway of class istio-waypoint) or to its
    Services hand a policy to the waypoint. istiod reports each Service's binding (`istio.io/WaypointBound`) and
    a waypoint's readiness as the Gateway's `Programmed` condition."""
    if _no_ambient(ctx):
        return skipped("no pod is enrolled in ambient mode and no ztunnel runs")
    ns_labels = namespace_labels(ctx.get(ALL_NAMESPACES))
    services = ctx.get(Objects(SERVICES))
    enrolled = _enrolled(ctx)
    hard, evidence, bare_namespaces, waypoint_namespaces = [], [], [], []
    retarget: list[tuple[str, str, str]] = []  # (namespace, policy, targetRefs) for a policy whose pods have one
    mesh_wide: list[str] = []  # root-namespace policies with HTTP fields
    root = root_namespace(ctx.maybe(MeshConfig(ctx.istio.namespace), {}) or {})
    for policy in first_served(ctx, AUTHORIZATION_POLICIES):
        fields, hit = ztunnel_http(policy, enrolled, root)  # the one rule, shared with config.ambient-policies
        if not fields:
            continue
        spec = policy.get("spec") or {}
        ns = policy["metadata"]["namespace"]
        served = {w for p in hit if (w := _waypoint_of(p, ns_labels, services))}
        bound = ("by selector" if (spec.get("selector") or {}).get("matchLabels") else
                 "mesh-wide (root namespace)" if ns == root else "namespace-wide")
        hard.append(f"AuthorizationPolicy {name_of(policy)} uses HTTP fields ({', '.join(fields)}) and is bound"
                    f" {bound}: ztunnel enforces it on {len(hit)} ambient pod(s) ({name_of(hit[0])}, ...) and turns"
                    " the HTTP rules into a DENY; "
                    + (f"their waypoint ({', '.join(sorted(served))}) only enforces policies attached by targetRefs"
                       if served else "no waypoint serves them"))
        if ns == root:
            mesh_wide.append(policy["metadata"]["name"])
        elif served:
            # targetRefs to the Services of the selected pods keep the policy's scope (the whole waypoint widens it)
            fronting = sorted({name for svc in services if (name := svc["metadata"]["name"]) and
                               svc["metadata"]["namespace"] == ns and (svc.get("spec") or {}).get("selector") and
                               any(_selects({"matchLabels": svc["spec"]["selector"]}, p) for p in hit)})
            refs = ", ".join(f'{{kind: Service, group: "", name: {n}}}' for n in fronting[:3]) if fronting else \
                f"{{kind: Gateway, group: gateway.networking.k8s.io, name: {sorted(served)[0]}}}"
            retarget.append((ns, policy["metadata"]["name"], refs))
        else:
            bare_namespaces.append(ns)
        accepted = _conditions(policy).get("ZtunnelAccepted")
        if accepted and accepted.get("reason") == "UnsupportedValue":
            evidence.append(f"AuthorizationPolicy {name_of(policy)}: ZtunnelAccepted {accepted.get('message', '')}")
    gateways = [gw for gw in ctx.maybe(GATEWAYS, []) or [] if (gw.get("spec") or {}).get("gatewayClassName")
                == WAYPOINT_CLASS]
    known = {(gw["metadata"]["namespace"], gw["metadata"]["name"]) for gw in gateways}
    evidence.append("waypoints: " + (", ".join(name_of(gw) for gw in gateways[:6]) or "none"))
    missing: list[tuple[str, str]] = []
    for gw in gateways:
        for kind in ("Accepted", "Programmed"):
            cond = _conditions(gw).get(kind)
            if cond and cond.get("status") == "False":
                waypoint_namespaces.append(gw["metadata"]["namespace"])
                hard.append(f"waypoint Gateway {name_of(gw)} is not {kind.lower()}: {cond.get('reason')}"
                            f" {cond.get('message', '')}".strip())
    for svc in services:
        cond = _conditions(svc).get("istio.io/WaypointBound")
        if cond and cond.get("status") == "False":
            ns = svc["metadata"]["namespace"]
            wanted = labels(svc).get("istio.io/use-waypoint") or ns_labels.get(ns, {}).get("istio.io/use-waypoint")
            where = (labels(svc).get("istio.io/use-waypoint-namespace") or ns, wanted)
            absent = bool(wanted) and where not in known
            if absent:
                missing.append(where)
            else:
                waypoint_namespaces.append(ns)
            hard.append(f"Service {name_of(svc)} is not bound to its waypoint: {cond.get('reason')}"
                        f" ({cond.get('message', '')})")
            if wanted:
                evidence.append(f"Service {name_of(svc)} asks for waypoint {where[0]}/{wanted}, which "
                                + ("does not exist" if absent else "exists"))
            else:
                evidence.append(f"Service {name_of(svc)}: istio.io/WaypointBound False, no istio.io/use-waypoint "
                                "label")
    fix = ("kubectl get gateways.gateway.networking.k8s.io -A -l istio.io/waypoint-for\n"
           "kubectl get svc -A -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name} "
           "{.status.conditions[?(@.type==\"istio.io/WaypointBound\")].reason}{\"\\n\"}{end}'\n")
    if bare_namespaces:
        fix += (f"# give the namespace a waypoint and bind it:\nistioctl waypoint apply -n {bare_namespaces[0]}"
                " --enroll-namespace\n# then attach the policy to it with targetRefs instead of a selector\n")
    for policy in mesh_wide[:1]:
        fix += (f"kubectl -n {root} edit authorizationpolicy {policy}   # keep mesh-wide rules L4 only; move the HTTP"
                " rules to\n#   a policy in each namespace with targetRefs to its waypoint\n")
    for ns, policy, refs in retarget[:1]:
        fix += (f"kubectl -n {ns} edit authorizationpolicy {policy}   # drop spec.selector, add\n"
                f"#   targetRefs: [{refs}]\n")
    for ns, wanted in missing[:1]:
        fix += f"istioctl waypoint apply -n {ns} --name {wanted} --wait   # the waypoint the label names\n"
    for ns in waypoint_namespaces[:1]:
        fix += f"kubectl -n {ns} describe pods -l gateway.networking.k8s.io/gateway-class-name={WAYPOINT_CLASS}"
    if hard:
        return failed(hard[0], hard[1:MAX_EVIDENCE] + evidence, fix.rstrip())
    return passed("no L7 policy is left to ztunnel, and every waypoint is bound and ready", *evidence)


@check(id="security.mtls-plaintext", title="STRICT servers refuse no plaintext client",
       section="mutual-tls-errors", generations=ISTIOD,
       inputs=lambda istio: (ALL_PODS, ENVOY_STATS, ZTUNNEL_METRICS) + PEER_AUTHENTICATIONS,
       signatures=("STRICT", "filter_chain_not_found", "NR", "envoy_listener_no_filter_chain_match",
                   "connection_security_policy", "response_flags=\"DENY\"", "istio_converted_static_strict",
                   "connection reset by peer", "upstream connect error"))
def mtls_plaintext(ctx: Context):
    """Under STRICT a server refuses a client that sends no Istio mTLS, and only the server side sees it: a sidecar
    counts it in `envoy_listener_no_filter_chain_match` on its inbound listener (0.0.0.0_15006; exported when
    listener stats are included), ztunnel in `istio_tcp_connections_closed_total{reporter="destination",
    response_flags="DENY",connection_security_policy="unknown"}`. Reads both where they exist and says what it
    could not see."""
    policies = first_served(ctx, PEER_AUTHENTICATIONS)
    pods = ctx.get(ALL_PODS)
    strict = [p for p in pods if effective_mode(p, policies, ctx.istio.namespace) == "STRICT"]
    if not strict:
        return passed("no workload runs under STRICT mTLS: plaintext clients are accepted (PERMISSIVE)")
    strict_names = {name_of(p) for p in strict}
    refused, evidence = [], []
    sidecars, _ = _safe_scrape(ctx, ENVOY_STATS, ":15090/stats/prometheus")
    measured = 0
    for pod, samples in sidecars.items():
        counted = find(samples, "envoy_listener_no_filter_chain_match", envoy_listener_address="0.0.0.0_15006")
        if counted:
            measured += 1
        if pod in strict_names:
            refused += [f"{pod}: {s.line()}" for s in counted if s.value > 0]
    ztunnels, _ = _safe_scrape(ctx, ZTUNNEL_METRICS, ":15020/metrics")
    for pod, samples in ztunnels.items():
        denied = [s for s in samples if s.name.startswith("istio_tcp_connections_closed")
                  and s.labels.get("reporter") == "destination" and s.labels.get("response_flags") == "DENY"
                  and s.labels.get("connection_security_policy") == "unknown" and s.value > 0]
        refused += [f"{pod}: {s.line()}" for s in denied[:3]]
    evidence.append(f"{len(strict)} pod(s) under STRICT; listener stats exported by {measured} of {len(sidecars)}"
                    f" sampled sidecars; {len(ztunnels)} ztunnel(s) read")
    if refused:
        return failed(f"STRICT servers refused plaintext connections ({len(refused)} series)",
                      refused[:MAX_EVIDENCE] + evidence,
                      "kubectl get peerauthentication -A\n"
                      "# find the client: it is outside the mesh (no sidecar, not enrolled in ambient); enrol it, or\n"
                      "# let that server accept plaintext for now with a PERMISSIVE PeerAuthentication on its workload")
    seen = "no plaintext connection was refused" if measured or ztunnels else \
        "no refusal visible (these proxies export no listener stats and no ztunnel runs)"
    return passed(f"{seen} under STRICT", *evidence)


def _safe_scrape(ctx: Context, key, what: str):
    """A sample's pages; none when the sample could not be fetched at all (the evidence line says what was read)."""
    values = ctx.maybe(key, {}) or {}
    return scraped(values, what) if not isinstance(values, ClusterError) else ({}, [])

"""Policies and their targets: Sidecar resources, AuthorizationPolicies, and the ambient rules of neither istioctl
nor its status conditions: HTTP fields ztunnel cannot enforce, targetRefs that miss, waypoints that do not exist."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from checks.analyzers import Finding, Snapshot, analyzer
from checks.analyzers.snapshot import (
    AUTHORIZATION_POLICIES,
    EVERY_NAMESPACE,
    K8S_GATEWAYS,
    NAMESPACES,
    PODS,
    REQUEST_AUTHENTICATIONS,
    SERVICE_ENTRIES,
    SERVICES_T,
    SIDECARS,
    TELEMETRIES,
    MeshConfig,
    annotations_of,
    labels_of,
    name,
    namespace_of,
    root_namespace,
    selector_text,
    spec,
)

TARGET = "make-sure-the-policy-is-applied-to-the-correct-target"
WAYPOINT_CLASS = "istio-waypoint"


def ambient_pod(pod: dict) -> bool:
    return annotations_of(pod).get("ambient.istio.io/redirection") == "enabled"


def ambient_namespace(ns: dict | None) -> bool:
    """istioctl's reading: ambient by label, unless a sidecar injection label says otherwise."""
    lab = labels_of(ns or {})
    if lab.get("istio-injection") == "enabled" or lab.get("istio.io/rev"):
        return False
    return lab.get("istio.io/dataplane-mode") == "ambient"


def _finding(kind: str, obj: dict, code: str, values: dict, fix: str, refs=(), evidence=()) -> Finding:
    return Finding(kind, namespace_of(obj), name(obj), code, values, fix, tuple(refs), tuple(evidence))


# Sidecar resources ------------------------------------------------------------------------------------

@analyzer(id="config.sidecar-selectors", title="Sidecar resources select pods, one Sidecar per pod",
          section=TARGET, codes=("IST0101", "IST0110", "IST0111", "IST0167"),
          needs=lambda istio: (SIDECARS, PODS, NAMESPACES),
          signatures=("IST0110", "IST0111", "IST0167", "Sidecar", "workloadSelector", "egress hosts"))
def sidecar_selectors(snap: Snapshot):
    """A Sidecar with a workloadSelector must select pods of its namespace; no pod may be selected by two of
    them, a namespace may have only one Sidecar without selector, and a Sidecar for ambient pods or an ambient
    namespace has no effect (there is no sidecar to configure)."""
    pods, namespaces = snap[PODS], snap[NAMESPACES]
    per_pod: dict[tuple[str, str], list[dict]] = {}
    pod_by_key, per_ns = {}, {}
    for sc in snap[SIDECARS].items:
        ns, selector = namespace_of(sc), (spec(sc).get("workloadSelector") or {}).get("labels") or {}
        if not selector:
            per_ns.setdefault(ns, []).append(sc)
            continue
        matched = pods.matching(selector, ns)
        if not matched:
            yield _finding("Sidecar", sc, "IST0101", {"field": "spec.workloadSelector.labels",
                                                      "what": "a pod labelled", "ref": selector_text(selector),
                                                      "hint": f" in namespace {ns}"},
                           f"kubectl -n {ns} get pods --show-labels\nkubectl -n {ns} edit sidecar {name(sc)}   "
                           "# spec.workloadSelector.labels: labels of the pods it is meant for")
        for p in matched:
            key = (namespace_of(p), name(p))
            per_pod.setdefault(key, []).append(sc)
            pod_by_key[key] = p
    reported = set()
    for key, scs in sorted(per_pod.items()):
        pod = pod_by_key[key]
        if ambient_pod(pod):
            for sc in scs:
                if (namespace_of(sc), name(sc)) not in reported:
                    reported.add((namespace_of(sc), name(sc)))
                    yield _finding("Sidecar", sc, "IST0167", {"reason": f"pod {key[0]}/{key[1]} runs in ambient mode"},
                                   f"kubectl -n {key[0]} delete sidecar {name(sc)}   # ambient pods have no sidecar; "
                                   "configure the waypoint instead", refs=(f"Pod {key[0]}/{key[1]}",))
            continue
        if len(scs) < 2:
            continue
        names = sorted(name(s) for s in scs)
        for sc in scs:
            yield _finding("Sidecar", sc, "IST0110", {"pod": f"{key[0]}/{key[1]}",
                                                      "others": ", ".join(n for n in names if n != name(sc))},
                           f"# make the workloadSelectors of {', '.join(names)} disjoint, or merge them\n"
                           f"kubectl -n {key[0]} get sidecar {' '.join(names)} -o yaml",
                           refs=tuple(f"Sidecar {key[0]}/{n}" for n in names if n != name(sc)))
    for ns, scs in sorted(per_ns.items()):
        if ambient_namespace(namespaces.get("", ns)):
            for sc in scs:
                if (ns, name(sc)) not in reported:
                    reported.add((ns, name(sc)))
                    yield _finding("Sidecar", sc, "IST0167", {"reason": f"namespace {ns} is in ambient mode"},
                                   f"kubectl -n {ns} delete sidecar {name(sc)}", refs=(f"Namespace {ns}",))
            continue
        if len(scs) > 1:
            names = sorted(name(s) for s in scs)
            for sc in scs:
                yield _finding("Sidecar", sc, "IST0111", {"others": ", ".join(n for n in names if n != name(sc)),
                                                          "namespace": ns},
                               f"# keep one namespace-wide Sidecar in {ns}; give the others a workloadSelector\n"
                               f"kubectl -n {ns} get sidecar {' '.join(names)} -o yaml",
                               refs=tuple(f"Sidecar {ns}/{n}" for n in names if n != name(sc)))


# AuthorizationPolicies --------------------------------------------------------------------------------

def in_mesh(pod: dict, namespaces) -> bool:
    """istioctl's PodInMesh: a proxy, else the pod's inject label or annotation, else the namespace label."""
    for c in (spec(pod).get("containers") or []) + (spec(pod).get("initContainers") or []):
        if c.get("name") == "istio-proxy":
            if c.get("image"):
                return True
            break
    for where in (labels_of(pod), annotations_of(pod)):
        if "sidecar.istio.io/inject" in where:
            return where["sidecar.istio.io/inject"] == "true"
    ns = namespaces.get("", namespace_of(pod))
    return ns is not None and labels_of(ns).get("istio-injection") == "enabled"


def namespace_match(ns: str, pattern: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("*"):
        return ns.endswith(pattern[1:])
    if pattern.endswith("*"):
        return ns.startswith(pattern[:-1])
    return ns.lower() == pattern.lower()


@analyzer(id="config.authz-targets", title="Policies select workloads, name real namespaces, target their own",
          section=TARGET, codes=("IST0127", "IST0101", "MB0002", "MB0003"),
          needs=lambda istio: (AUTHORIZATION_POLICIES, PODS, NAMESPACES),
          # the same listing as NAMESPACES (a failure errors as it would), with kube-system & co.: not counted twice
          reads=lambda istio: (EVERY_NAMESPACE, MeshConfig(istio.namespace), SERVICES_T, K8S_GATEWAYS,
                               SERVICE_ENTRIES, REQUEST_AUTHENTICATIONS, TELEMETRIES),
          signatures=("IST0127", "NoMatchingWorkloadsFound", "AuthorizationPolicy", "RBAC: access denied",
                      "source.namespaces", "selector", "MB0002", "MB0003", "targetRefs"))
def authz_targets(snap: Snapshot):
    """An AuthorizationPolicy's selector must match workloads of the mesh (sidecar or ambient) in its namespace,
    or anywhere for a policy in the root namespace; a policy without selector needs mesh workloads in its
    namespace; every namespace its rules name (source.namespaces, notNamespaces) must exist; and the targetRefs of
    policies (authorization, request authentication, telemetry) must name an object of their own namespace."""
    namespaces = snap[NAMESPACES]
    root = root_namespace(snap.value(MeshConfig(snap.istio.namespace), {}) or {})
    meshed: dict[str, list[dict]] = {}
    for pod in snap[PODS].items:
        if in_mesh(pod, namespaces) or ambient_pod(pod):
            meshed.setdefault(namespace_of(pod), []).append(pod)
    known = [name(n) for n in snap[EVERY_NAMESPACE].items]
    for ap in snap[AUTHORIZATION_POLICIES].items:
        ns = namespace_of(ap)
        selector = (spec(ap).get("selector") or {}).get("matchLabels") if spec(ap).get("selector") is not None else None
        scope = [p for pods in meshed.values() for p in pods] if ns == root else meshed.get(ns, [])
        if ns == root and selector is None:
            pass
        elif selector is None and not scope:
            yield _finding("AuthorizationPolicy", ap, "IST0127",
                           {"field": "namespace-wide policy", "selector": f"every workload of {ns}"},
                           f"kubectl -n {ns} get pods   # none runs with a proxy or in ambient mode\n"
                           f"kubectl label namespace {ns} istio-injection=enabled && kubectl -n {ns} rollout restart "
                           "deployment   # or move the policy to the namespace of its workloads")
        elif selector is not None and not any(all(labels_of(p).get(k) == v for k, v in (selector or {}).items())
                                              for p in scope):
            text = selector_text(selector)
            near = _near_labels(selector, scope)
            yield _finding("AuthorizationPolicy", ap, "IST0127",
                           {"field": "spec.selector.matchLabels", "selector": text},
                           f"kubectl -n {ns if ns != root else 'ALL'} get pods -l {text} --show-labels"
                           .replace("-n ALL", "-A") +
                           f"\nkubectl -n {ns} edit authorizationpolicy {name(ap)}   # spec.selector.matchLabels: "
                           + (near or "labels of the meshed pods it protects"),
                           evidence=(f"{len(scope)} meshed pod(s) in scope" + (f"; the closest labels: {near}"
                                                                                 if near else ""),))
        for i, rule in enumerate(spec(ap).get("rules") or []):
            for j, src in enumerate(rule.get("from") or []):
                source = src.get("source") or {}
                for field in ("namespaces", "notNamespaces"):
                    for k, pattern in enumerate(source.get(field) or []):
                        if not any(namespace_match(n, pattern) for n in known):
                            close = difflib.get_close_matches(pattern, known, n=1, cutoff=0.6)
                            yield _finding("AuthorizationPolicy", ap, "IST0101",
                                           {"field": f"spec.rules[{i}].from[{j}].source.{field}[{k}]",
                                            "what": "namespace", "ref": pattern,
                                            "hint": f"; did you mean {close[0]}?" if close else ""},
                                           f"kubectl get namespaces\nkubectl -n {ns} edit authorizationpolicy "
                                           f"{name(ap)}   # spec.rules[{i}].from[{j}].source.{field}[{k}]: "
                                           f"{pattern} → {close[0] if close else 'an existing namespace'}",
                                           refs=(f"Namespace {pattern}",))
    yield from _target_refs(snap)


def _target_refs(snap: Snapshot):
    """Policies' targetRefs must name a Service, Gateway or ServiceEntry that exists in their own namespace."""
    tables = {"Service": snap[SERVICES_T], "Gateway": snap[K8S_GATEWAYS], "ServiceEntry": snap[SERVICE_ENTRIES]}
    for kind, key in (("AuthorizationPolicy", AUTHORIZATION_POLICIES),
                      ("RequestAuthentication", REQUEST_AUTHENTICATIONS), ("Telemetry", TELEMETRIES)):
        for policy in snap[key].items:
            ns = namespace_of(policy)
            for field, target in target_refs(policy):
                tkind, tname = target.get("kind", ""), target.get("name", "")
                table = tables.get(tkind)
                if table is None:  # GatewayClass and the like: nothing to look up
                    continue
                tns = target.get("namespace") or ns
                elsewhere = sorted(namespace_of(o) for o in table.items if name(o) == tname and namespace_of(o) != ns)
                if tns != ns or (table.get(ns, tname) is None and elsewhere):
                    other = tns if tns != ns else elsewhere[0]
                    yield _finding(kind, policy, "MB0002", {"field": field, "kind": tkind, "ref": f"{other}/{tname}",
                                                            "namespace": ns},
                                   f"# create the policy in namespace {other}, next to what it targets:\n"
                                   f"kubectl -n {ns} get {kind.lower()} {name(policy)} -o yaml | "
                                   f"sed 's/namespace: {ns}$/namespace: {other}/' | kubectl apply -f -\n"
                                   f"kubectl -n {ns} delete {kind.lower()} {name(policy)}",
                                   refs=(f"{tkind} {other}/{tname}",))
                elif table.get(ns, tname) is None:
                    here = sorted(name(o) for o in table.in_namespace(ns))
                    yield _finding(kind, policy, "MB0003", {"field": field, "kind": tkind, "ref": f"{ns}/{tname}"},
                                   f"kubectl -n {ns} edit {kind.lower()} {name(policy)}   # {field}.name: one of "
                                   f"{', '.join(here[:10]) or f'the {tkind}s of {ns} (there are none)'}",
                                   refs=(f"{tkind} {ns}/{tname}",),
                                   evidence=(f"{tkind}s in {ns}: {', '.join(here[:10]) or 'none'}",))


def _near_labels(selector: dict, pods: list[dict]) -> str:
    """The selector with each value replaced by the closest one the pods carry under that key ("" if none)."""
    out = []
    for k, v in sorted(selector.items()):
        values = sorted({labels_of(p)[k] for p in pods if k in labels_of(p)})
        close = difflib.get_close_matches(str(v), values, n=1, cutoff=0.6)
        if not close:
            return ""
        out.append(f"{k}: {close[0]}")
    return ", ".join(out)


# Ambient --------------------------------------------------------------------------------------------

HTTP_OPERATION = ("hosts", "notHosts", "methods", "notMethods", "paths", "notPaths")
HTTP_SOURCE = ("requestPrincipals", "notRequestPrincipals")


def http_fields(ap: dict) -> list[str]:
    """The paths of the HTTP-only attributes an AuthorizationPolicy's rules use."""
    out = []
    for i, rule in enumerate(spec(ap).get("rules") or []):
        for j, to in enumerate(rule.get("to") or []):
            operation = to.get("operation") or {}
            out += [f"spec.rules[{i}].to[{j}].operation.{f}" for f in HTTP_OPERATION if operation.get(f)]
        for j, src in enumerate(rule.get("from") or []):
            out += [f"spec.rules[{i}].from[{j}].source.{f}" for f in HTTP_SOURCE if (src.get("source") or {}).get(f)]
        for j, cond in enumerate(rule.get("when") or []):
            if str(cond.get("key", "")).startswith(("request.", "experimental.")):
                out.append(f"spec.rules[{i}].when[{j}].key {cond.get('key')}")
    return out


def target_refs(obj: dict) -> list[tuple[str, dict]]:
    s = spec(obj)
    refs = [("spec.targetRef", s["targetRef"])] if s.get("targetRef") else []
    return refs + [(f"spec.targetRefs[{i}]", r) for i, r in enumerate(s.get("targetRefs") or [])]


def ztunnel_http(ap: dict, ambient_pods: Iterable[dict], root: str) -> tuple[list[str], list[dict]]:
    """(its HTTP-only fields, the ambient pods whose ztunnel enforces it) for a policy that uses HTTP fields and is
    bound by selector, namespace-wide or mesh-wide (root namespace), waypoint or not (istio.io's ambient L7 docs);
    ([], []) otherwise. ztunnel cannot read HTTP, so it fails closed: the rule becomes a DENY. Only targetRefs to a
    waypoint or its Services put a policy on the waypoint."""
    fields = [] if target_refs(ap) else http_fields(ap)
    if not fields:
        return [], []
    ns, match = namespace_of(ap), (spec(ap).get("selector") or {}).get("matchLabels") or {}
    pods = [p for p in ambient_pods if ns in (root, namespace_of(p))
            and all(labels_of(p).get(k) == v for k, v in match.items())]
    return (fields, pods) if pods else ([], [])


def waypoint_of(obj: dict, ns_default: str) -> tuple[str, str] | None:
    lab = labels_of(obj)
    wp = lab.get("istio.io/use-waypoint")
    if not wp or wp == "none":
        return None
    return lab.get("istio.io/use-waypoint-namespace") or ns_default, wp


def _ambient_inputs(istio):
    return NAMESPACES, PODS, SERVICES_T


def _ambient_reads(istio):
    return (AUTHORIZATION_POLICIES, REQUEST_AUTHENTICATIONS, TELEMETRIES, K8S_GATEWAYS, SERVICE_ENTRIES,
            MeshConfig(istio.namespace))


@analyzer(id="config.ambient-policies", title="Ambient policies can be enforced where they are attached",
          section="make-sure-you-are-not-using-http-only-fields-on-tcp-ports", codes=("MB0001", "MB0004"),
          needs=_ambient_inputs, reads=_ambient_reads,
          signatures=("MB0001", "MB0004", "ztunnel", "waypoint", "istio.io/use-waypoint", "L7 policy"))
def ambient_policies(snap: Snapshot):
    """In ambient mode ztunnel enforces only L4: an AuthorizationPolicy that uses HTTP attributes and is bound by
    selector, namespace-wide or mesh-wide (root namespace) to ambient pods is enforced by their ztunnel, waypoint
    or not, and fails closed; it needs targetRefs to the waypoint or its Services. The istio.io/use-waypoint label
    must name a waypoint that exists."""
    namespaces, services, gateways = snap[NAMESPACES], snap[SERVICES_T], snap[K8S_GATEWAYS]
    entries = snap[SERVICE_ENTRIES]
    waypoints = {(namespace_of(g), name(g)) for g in gateways.items
                 if spec(g).get("gatewayClassName") == WAYPOINT_CLASS}
    ambient_ns = {name(n) for n in namespaces.items if ambient_namespace(n)}
    ambient_pods = [p for p in snap[PODS].items if ambient_pod(p) or namespace_of(p) in ambient_ns]
    bound: dict[str, tuple[str, str]] = {}  # namespace → a waypoint its namespace or one of its Services uses
    for obj, kind in [(n, "Namespace") for n in namespaces.items] + [(s, "Service") for s in services.items] + \
            [(e, "ServiceEntry") for e in entries.items]:
        own_ns = name(obj) if kind == "Namespace" else namespace_of(obj)
        wp = waypoint_of(obj, own_ns)
        if wp is None:
            continue
        if wp in waypoints:
            bound.setdefault(own_ns, wp)
        else:
            yield Finding(kind, "" if kind == "Namespace" else own_ns, name(obj), "MB0004",
                          {"ref": f"{wp[0]}/{wp[1]}"},
                          f"istioctl waypoint apply -n {wp[0]} --name {wp[1]}\n"
                          "# or point the label at an existing waypoint (class istio-waypoint):\n"
                          "kubectl get gateways.gateway.networking.k8s.io -A -o custom-columns="
                          "NS:.metadata.namespace,NAME:.metadata.name,CLASS:.spec.gatewayClassName",
                          refs=(f"Gateway {wp[0]}/{wp[1]}",),
                          evidence=(f"metadata.labels istio.io/use-waypoint={wp[1]}",))
    root = root_namespace(snap.value(MeshConfig(snap.istio.namespace), {}) or {})
    for ap in snap[AUTHORIZATION_POLICIES].items:
        ns = namespace_of(ap)
        fields, _ = ztunnel_http(ap, ambient_pods, root)
        if not fields:
            continue
        action = spec(ap).get("action") or "ALLOW"
        effect = {"ALLOW": "the rules with them never match, so the requests they allow are denied",
                  "DENY": "the HTTP conditions are dropped, so the rule denies every request it matches at L4",
                  }.get(action, "they are ignored")
        wp = bound.get(ns)
        fix = (f"kubectl -n {ns} edit authorizationpolicy {name(ap)}   # keep mesh-wide rules L4 only; move the"
               " HTTP rules to\n#   a policy in each namespace with targetRefs to its waypoint" if ns == root else
               f"kubectl -n {ns} edit authorizationpolicy {name(ap)}   # replace spec.selector with\n"
               f"#   targetRefs: [{{kind: Gateway, group: gateway.networking.k8s.io, name: {wp[1]}}}]" if wp else
               f"istioctl waypoint apply -n {ns} --enroll-namespace --wait\n"
               f"kubectl -n {ns} edit authorizationpolicy {name(ap)}   # replace spec.selector with\n"
               "#   targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]")
        yield _finding("AuthorizationPolicy", ap, "MB0001", {"fields": ", ".join(fields), "namespace": ns,
                                                             "effect": effect}, fix,
                       refs=(f"Gateway {wp[0]}/{wp[1]}",) if wp else (),
                       evidence=(f"waypoint for namespace {ns}: {wp[0]}/{wp[1]}" if wp else
                                 f"no waypoint serves namespace {ns}", f"action {action}"))

"""Sidecar injection: namespace labels, pods left without a proxy, proxies on another image, webhooks that overlap."""

from __future__ import annotations

import yaml

from checks.analyzers import Finding, Snapshot, analyzer
from checks.analyzers.snapshot import (
    NAMESPACES,
    PODS,
    PROXY_CONFIGS,
    SERVICES_T,
    WEBHOOKS,
    InjectorValues,
    MeshConfig,
    annotations_of,
    label_selector_matches,
    labels_of,
    name,
    namespace_of,
    root_namespace,
    spec,
)

INJECTION = "the-result-of-sidecar-injection-was-not-what-i-expected"
PROXY = "istio-proxy"


def _proxy(pod: dict) -> dict | None:
    """The istio-proxy container (a native sidecar is an init container), when it has an image."""
    for c in (spec(pod).get("containers") or []) + (spec(pod).get("initContainers") or []):
        if c.get("name") == PROXY:
            return c if c.get("image") else None
    return None


@analyzer(id="config.injection", title="Namespaces labelled for injection have their pods injected",
          section=INJECTION, codes=("IST0103", "IST0123"), needs=lambda istio: (NAMESPACES, PODS),
          signatures=("IST0103", "IST0123", "PodMissingProxy", "istio-injection=enabled", "istio.io/rev",
                      "sidecar.istio.io/inject"))
def injection(snap: Snapshot):
    """A namespace should carry one injection label (istio-injection, istio.io/rev or istio.io/dataplane-mode),
    not several; and in a namespace labelled istio-injection=enabled every pod (not opted out, not on the host
    network) should run istio-proxy: pods created before the label, or while the webhook was down, have none."""
    injected = set()
    for ns in snap[NAMESPACES].items:
        nsname, lab = name(ns), labels_of(ns)
        if nsname == "istio-system":
            continue
        found = []
        if "istio-injection" in lab:
            found.append(f"istio-injection={lab['istio-injection']}")
        for key in ("istio.io/rev", "istio.io/dataplane-mode"):
            if key in lab and lab.get("istio-injection", "enabled") == "enabled":
                found.append(f"{key}={lab[key]}")
        if len(found) > 1:
            keep = found[1] if lab.get("istio.io/dataplane-mode") != "ambient" else "istio.io/dataplane-mode=ambient"
            drop = [f.split("=")[0] + "-" for f in found if f != keep]
            yield Finding("Namespace", "", nsname, "IST0123", {"labels": ", ".join(found)},
                          f"kubectl label namespace {nsname} {' '.join(drop)}   # keep {keep}\n"
                          f"kubectl -n {nsname} rollout restart deployment",
                          evidence=(f"Namespace {nsname} labels: {', '.join(found)}",))
        if lab.get("istio.io/dataplane-mode") == "ambient":
            continue
        if lab.get("istio-injection") == "enabled":
            injected.add(nsname)
    for pod in snap[PODS].items:
        ns = namespace_of(pod)
        if ns not in injected or spec(pod).get("hostNetwork"):
            continue
        opt = labels_of(pod).get("sidecar.istio.io/inject", annotations_of(pod).get("sidecar.istio.io/inject", ""))
        if str(opt).lower() == "false" or _proxy(pod) is not None:
            continue
        owner = next((o for o in (pod.get("metadata") or {}).get("ownerReferences") or [] if o.get("controller")), {})
        restart = (f"kubectl -n {ns} delete pod {name(pod)}   # its controller creates it again, injected"
                   if owner else f"kubectl -n {ns} delete pod {name(pod)} && kubectl apply -f POD.yaml")
        if owner.get("kind") == "ReplicaSet":
            restart = f"kubectl -n {ns} rollout restart deployment {owner['name'].rsplit('-', 1)[0]}"
        yield Finding("Pod", ns, name(pod), "IST0103", {"pod": f"{ns}/{name(pod)}", "namespace": ns},
                      f"{restart}\nkubectl get mutatingwebhookconfiguration -l app=sidecar-injector   # is the "
                      "webhook in place?", refs=(f"Namespace {ns}",),
                      evidence=("containers: " + ", ".join(c.get("name", "?")
                                                           for c in spec(pod).get("containers") or []),))


def injector_image(values: dict) -> str:
    g = values.get("global") or {}
    image = (g.get("proxy") or {}).get("image") or ""
    return image if "/" in image else f"{g.get('hub')}/{image}:{g.get('tag')}"


def _image_type(pod: dict, mesh: dict, proxy_configs, root: str) -> str:
    """The image variant (distroless…) in force for a pod: mesh config, then root, namespace and workload
    ProxyConfigs, then the pod's proxy.istio.io/config annotation."""
    def kind(pc_spec):
        return ((pc_spec or {}).get("image") or {}).get("imageType") or ""

    variant = kind(mesh.get("defaultConfig"))
    ns = namespace_of(pod)
    for pc in proxy_configs.in_namespace(root):
        variant = kind(spec(pc)) or variant
    if ns != root:
        for pc in proxy_configs.in_namespace(ns):
            if not spec(pc).get("selector"):
                variant = kind(spec(pc)) or variant
        for pc in proxy_configs.in_namespace(ns):
            wanted = (spec(pc).get("selector") or {}).get("matchLabels")
            if wanted and all(labels_of(pod).get(k) == v for k, v in wanted.items()):
                variant = kind(spec(pc)) or variant
    raw = annotations_of(pod).get("proxy.istio.io/config")
    if raw:
        try:
            variant = kind(yaml.safe_load(raw)) or variant
        except (yaml.YAMLError, AttributeError):
            pass
    return "" if variant == "default" else variant


@analyzer(id="config.proxy-image", title="Running proxies use the image the injector injects today",
          section=INJECTION, codes=("IST0158",),
          needs=lambda istio: (NAMESPACES, PODS, InjectorValues(istio.namespace)),
          reads=lambda istio: (PROXY_CONFIGS, MeshConfig(istio.namespace)),
          signatures=("IST0158", "PodsIstioProxyImageMismatchInNamespace", "proxyv2", "rollout restart",
                      "sidecar.istio.io/proxyImage"))
def proxy_image(snap: Snapshot):
    """In each injected namespace, compares the istio-proxy image of every pod with the image its revision's
    injector ConfigMap (istio-sidecar-injector[-REV], key values) injects now, image variant included: pods
    still on an old image were injected before an upgrade and need a restart."""
    injectors = snap[InjectorValues(snap.istio.namespace)]
    if not injectors:
        return
    mesh = snap.value(MeshConfig(snap.istio.namespace), {}) or {}
    root, proxy_configs = root_namespace(mesh), snap[PROXY_CONFIGS]
    revision = {}
    for ns in snap[NAMESPACES].items:
        lab = labels_of(ns)
        if lab.get("istio-injection") == "enabled" or "istio.io/rev" in lab:
            revision[name(ns)] = lab.get("istio.io/rev", "default")
    stale: dict[str, list[str]] = {}
    workloads: dict[str, set[str]] = {}  # namespace → Deployments of the stale pods
    for pod in snap[PODS].items:
        ns = namespace_of(pod)
        if ns not in revision or annotations_of(pod).get("sidecar.istio.io/proxyImage"):
            continue
        rev = revision[ns]
        values = injectors.get("istio-sidecar-injector" if rev in ("", "default") else f"istio-sidecar-injector-{rev}")
        proxy = _proxy(pod)
        if values is None or proxy is None:
            continue
        want, variant = injector_image(values), _image_type(pod, mesh, proxy_configs, root)
        if proxy["image"] not in (want, f"{want}-{variant}"):
            stale.setdefault(ns, []).append(f"{name(pod)} ({proxy['image'].rsplit(':', 1)[-1]})")
            owner = next((o for o in (pod.get("metadata") or {}).get("ownerReferences") or [] if o.get("controller")),
                         {})
            if owner.get("kind") == "ReplicaSet":
                workloads.setdefault(ns, set()).add(owner["name"].rsplit("-", 1)[0])
    for ns, pods in sorted(stale.items()):
        rev = revision[ns]
        cm = "istio-sidecar-injector" if rev in ("", "default") else f"istio-sidecar-injector-{rev}"
        want = injector_image(injectors[cm])
        yield Finding("Namespace", "", ns, "IST0158", {"count": len(pods), "image": want,
                                                        "pods": ", ".join(sorted(pods)[:10])
                                                        + (" …" if len(pods) > 10 else "")},
                      f"kubectl -n {ns} rollout restart deployment {' '.join(sorted(workloads.get(ns, ())))}"
                      f"   # re-inject with {want}\n"
                      f"kubectl -n {ns} get pods -o jsonpath='{{range .items[*]}}{{.metadata.name}} "
                      f"{{.spec.containers[?(@.name==\"istio-proxy\")].image}}{{\"\\n\"}}{{end}}'",
                      refs=(f"ConfigMap {snap.istio.namespace}/{cm}",))


# Webhooks ---------------------------------------------------------------------------------------------

def _revisions(config: dict) -> set[str]:
    revs = set()
    if "istio.io/rev" in labels_of(config):
        revs.add(labels_of(config)["istio.io/rev"])
    for hook in config.get("webhooks") or []:
        for sel in (hook.get("namespaceSelector"), hook.get("objectSelector")):
            if not sel:
                continue
            if "istio.io/rev" in (sel.get("matchLabels") or {}):
                revs.add(sel["matchLabels"]["istio.io/rev"])
            for expr in sel.get("matchExpressions") or []:
                if expr.get("key") == "istio.io/rev":
                    revs.update(expr.get("values") or [])
    return revs


@analyzer(id="config.injection-webhooks", title="Injection webhooks do not overlap and reach istiod",
          section=INJECTION, codes=("IST0139",), needs=lambda istio: (WEBHOOKS, SERVICES_T),
          signatures=("IST0139", "InvalidWebhook", "MutatingWebhookConfiguration", "namespaceSelector",
                      "objectSelector", "injected twice"))
def injection_webhooks(snap: Snapshot):
    """Istio's injection webhooks (of every revision) must not both match the same namespace and pod labels
    (the pod would be injected twice), and each must point at a Service that exists."""
    hooks, revisions = [], set()
    for config in snap[WEBHOOKS].items:
        revs = _revisions(config)
        if not revs and not any(str(h.get("name", "")).endswith("istio.io") for h in config.get("webhooks") or []):
            continue
        revisions |= revs
        for i, hook in enumerate(config.get("webhooks") or []):
            hooks.append((config, i, hook))
    if not hooks:
        return
    ns_sets = [{}, {"istio-injection": "enabled"}, {"istio-injection": "disabled"}]
    obj_sets = [{}, {"sidecar.istio.io/inject": "true"}, {"sidecar.istio.io/inject": "false"}]
    ns_sets += [{**s, "istio.io/rev": r} for r in sorted(revisions) for s in ns_sets[:3]]
    obj_sets += [{**s, "istio.io/rev": r} for r in sorted(revisions) for s in obj_sets[:3]]
    overlaps: dict[int, set[str]] = {}
    for nl in ns_sets:
        for ol in obj_sets:
            hit = [k for k, (_, _, h) in enumerate(hooks) if label_selector_matches(h.get("namespaceSelector"), nl)
                   and label_selector_matches(h.get("objectSelector"), ol)]
            if len(hit) > 1:
                for k in hit:
                    overlaps.setdefault(k, set()).update(f"{name(hooks[j][0])}/{hooks[j][2].get('name')}"
                                                         for j in hit if j != k)
    for k, others in sorted(overlaps.items()):
        config, i, hook = hooks[k]
        yield Finding("MutatingWebhookConfiguration", "", name(config), "IST0139",
                      {"field": f"webhooks[{i}] ({hook.get('name')})",
                       "problem": f"matches the same namespaces and pods as {', '.join(sorted(others))}: pods may be "
                                  "injected twice"},
                      "kubectl get mutatingwebhookconfiguration -o custom-columns=NAME:.metadata.name,"
                      "REV:.metadata.labels.istio\\.io/rev\n"
                      "# remove the webhook of the revision you no longer use, or `istioctl tag set default "
                      "--revision REV --overwrite` so only one matches",
                      refs=tuple(f"MutatingWebhookConfiguration {o.split('/')[0]}" for o in sorted(others)
                                 if o.split("/")[0] != name(config)))
    services = snap[SERVICES_T]
    for config, i, hook in hooks:
        target = (hook.get("clientConfig") or {}).get("service")
        if not target or services.get(target.get("namespace", ""), target.get("name", "")) is not None:
            continue
        yield Finding("MutatingWebhookConfiguration", "", name(config), "IST0139",
                      {"field": f"webhooks[{i}].clientConfig.service",
                       "problem": f"points at Service {target.get('namespace')}/{target.get('name')}, which does not "
                                  "exist: injection fails (or is skipped, with failurePolicy Ignore)"},
                      f"kubectl -n {target.get('namespace')} get svc\n"
                      f"kubectl delete mutatingwebhookconfiguration {name(config)}   # if that revision is gone; or "
                      "reinstall it with istioctl",
                      refs=(f"Service {target.get('namespace')}/{target.get('name')}",))

"""istiod-era injection and validation webhooks: selectors (check-inject), CA bundles, refused pods."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import replace

from checks.detect import (
    ALL_NAMESPACES,
    ALL_PODS,
    ISTIOD,
    MAX_EVIDENCE,
    MUTATING,
    SYSTEM_NAMESPACES,
    injector_hooks,
    istiod_env,
    istiods,
    labels,
    name_of,
    namespace_labels,
    proxy_container,
    running,
    selector_matches,
    serves_revision,
)
from checks.injection import APISERVER_SELECTOR, _exempt, _proxy_env
from checks.inputs import CONFIGMAPS, PODS, SERVICES, Object, Objects
from checks.model import Context, Istio, check, failed, passed, skipped, warned
from checks.modern_inputs import EVENTS, VALIDATING_WEBHOOKS

VALIDATING = Objects(VALIDATING_WEBHOOKS)


def matching_hooks(hooks: list[tuple[dict, dict]], pod: dict, ns_labels: dict) -> list[str]:
    """Names of the webhooks that would inject ``pod`` now (as `istioctl x check-inject` evaluates them)."""
    if pod["metadata"]["namespace"] in SYSTEM_NAMESPACES or (pod.get("spec") or {}).get("hostNetwork"):
        return []
    return [f"{c['metadata']['name']}/{h['name']}" for c, h in hooks
            if selector_matches(h.get("namespaceSelector"), ns_labels) and selector_matches(h.get("objectSelector"),
                                                                                          labels(pod))]


def _selector_inputs(istio: Istio) -> tuple:
    return ALL_PODS, ALL_NAMESPACES, MUTATING


@check(id="injection.selectors", title="Sidecar injection matches the labels (check-inject)",
       section="the-result-of-sidecar-injection-was-not-what-i-expected", generations=ISTIOD, inputs=_selector_inputs,
       signatures=("istio-injection=enabled", "istio.io/rev", "sidecar.istio.io/inject", "check-inject",
                   "namespaceSelector", "objectSelector", "1/1 Running"))
def selectors(ctx: Context):
    """Evaluates every Istio injection webhook's namespace and object selectors against each pod's labels, the way
    `istioctl x check-inject` does, and compares with what the pod actually got: pods created before their namespace
    was labelled, pods matched twice, revisions no webhook serves, sidecars in ambient namespaces."""
    hooks = injector_hooks(ctx.get(MUTATING))
    if not hooks:
        return skipped("no Istio injection webhook (MutatingWebhookConfiguration with *.sidecar-injector.istio.io)")
    ns_labels = namespace_labels(ctx.get(ALL_NAMESPACES))
    hard, soft = [], []
    stale: dict[str, list[str]] = {}
    for ns, ls in sorted(ns_labels.items()):
        rev = ls.get("istio.io/rev")
        if rev and not serves_revision(hooks, rev):
            hard.append(f"Namespace {ns} asks for revision {rev}, which no injection webhook serves")
        if rev and ls.get("istio-injection", "enabled") != "enabled":  # both labels, enabled: IST0123 (config)
            soft.append(f"Namespace {ns} asks for revision {rev}, but istio-injection={ls['istio-injection']} wins "
                        "in every webhook's selector: its pods get no sidecar")
    for pod in ctx.get(ALL_PODS):
        if not running(pod) or labels(pod).get("app") in ("ztunnel", "istiod") or \
                labels(pod).get("k8s-app") == "istio-cni-node":
            continue
        ns = pod["metadata"]["namespace"]
        matched = matching_hooks(hooks, pod, ns_labels.get(ns, {}))
        has_proxy = proxy_container(pod)[0] is not None
        if len({m.split("/")[0] for m in matched}) > 1:
            hard.append(f"{name_of(pod)} is matched by {', '.join(matched)}: two injectors would both inject it")
        if matched and not has_proxy:
            stale.setdefault(ns, []).append(pod["metadata"]["name"])
    for ns, names in sorted(stale.items()):
        soft.append(f"{len(names)} pod(s) in {ns} have no sidecar although a webhook now selects them "
                    f"(created before the label?): {', '.join(names[:4])}")
    named = [name for line in hard + soft for name in [line.split(" ", 1)[0]] if name.count("/") == 1]
    named += [f"{ns}/{pods[0]}" for ns, pods in sorted(stale.items())]
    fix = ("".join(f"istioctl x check-inject -n {ns} {pod}\n" for ns, pod in [n.split("/") for n in named[:1]])
           + "kubectl get ns -L istio-injection,istio.io/rev,istio.io/dataplane-mode\n"
           + "\n".join(f"kubectl -n {ns} rollout restart deployment" for ns in sorted(stale)))
    evidence = [f"{len(hooks)} injection webhooks: " + ", ".join(h["name"] for _, h in hooks[:6])]
    if hard:
        return failed(hard[0], hard[1:MAX_EVIDENCE] + soft[:4] + evidence, fix)
    if soft:
        return warned(soft[0], soft[1:MAX_EVIDENCE] + evidence, fix)
    return passed("every pod's sidecar agrees with the injection webhooks' selectors", *evidence)


# CA bundles ------------------------------------------------------------------------------------

def _pem_certs(text: str) -> set[str]:
    return {"".join(block.split()) for block in re.findall(
        r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", text, re.S)}


def _root(istio: Istio) -> Object:
    return Object(CONFIGMAPS, istio.namespace, "istio-ca-root-cert")


def _ca_inputs(istio: Istio) -> tuple:
    return MUTATING, VALIDATING, _root(istio)


@check(id="injection.webhook-ca", title="The webhooks trust istiod's CA", section="x509-certificate-related-errors",
       generations=ISTIOD, inputs=_ca_inputs,
       signatures=("caBundle", "istio-ca-root-cert", "root-cert.pem",
                   "failed calling webhook"))
def webhook_ca(ctx: Context):
    """Decodes each Istio webhook's caBundle and looks for the root certificate istiod publishes in the
    `istio-ca-root-cert` ConfigMap; an empty or foreign bundle makes the API server fail with x509 errors."""
    deployment = next(iter(istiods(ctx.istio).values()), None)
    provider = istiod_env(deployment, "PILOT_CERT_PROVIDER")
    if provider not in (None, "istiod"):
        return skipped(f"istiod's certificates come from PILOT_CERT_PROVIDER={provider}, not its own CA")
    root = ctx.get(_root(ctx.istio))
    if root is None:
        return skipped(f"ConfigMap {ctx.istio.namespace}/istio-ca-root-cert does not exist (istiod never published "
                       "its root; control-plane.istiod-ready says why)")
    roots = _pem_certs((root.get("data") or {}).get("root-cert.pem", ""))
    problems, evidence = [], []
    for kind, configs in (("MutatingWebhookConfiguration", ctx.get(MUTATING)),
                          ("ValidatingWebhookConfiguration", ctx.get(VALIDATING))):
        for c in configs:
            for h in c.get("webhooks") or []:
                if not str(h.get("name", "")).endswith("istio.io"):
                    continue
                bundle = (h.get("clientConfig") or {}).get("caBundle") or ""
                where = f"{kind} {c['metadata']['name']} webhook {h['name']}"
                try:
                    certs = _pem_certs(base64.b64decode(bundle).decode("ascii", "replace")) if bundle else set()
                except (binascii.Error, ValueError):
                    certs = set()
                if not certs:
                    problems.append(f"{where} has an empty or unreadable caBundle")
                elif not certs & roots:
                    problems.append(f"{where} trusts a different CA than istio-ca-root-cert")
                else:
                    evidence.append(f"{where}: caBundle holds istiod's root")
    ns = ctx.istio.namespace
    fix = (f"kubectl -n {ns} get configmap istio-ca-root-cert -o jsonpath='{{.data.root-cert\\.pem}}'\n"
           "kubectl get mutatingwebhookconfiguration istio-sidecar-injector -o jsonpath='{.webhooks[0].clientConfig."
           "caBundle}' | base64 -d\n"
           f"kubectl -n {ns} logs -l app=istiod -c discovery | grep -i 'patching webhook\\|CA bundle'\n"
           f"kubectl -n {ctx.istio.namespace} rollout restart deployment istiod   # istiod re-patches on start")
    if problems:
        return failed(problems[0], problems[1:] + evidence[:3], fix)
    return passed(f"{len(evidence)} Istio webhooks trust istiod's root certificate", *evidence[:MAX_EVIDENCE])


# Refused pods ----------------------------------------------------------------------------------

FAILED_CALL = re.compile(r"failed calling webhook \"[^\"]*sidecar-injector\.istio\.io\"", re.I)
X509 = "x509-certificate-related-errors"
DEPLOYMENT = "errors-in-deployment-status"
APISERVER_PROXY = "automatic-sidecar-injection-fails-if-the-kubernetes-api-server-has-proxy-settings"
# (what the API server's message says, the cause in words, the subsection of the guide that tells that cause)
CAUSES = (
    ("x509", "the API server does not trust the injector's certificate (x509)", X509),
    ("no endpoints available", "istiod has no ready endpoint", DEPLOYMENT),
    ("connection refused", "nothing listens on istiod's webhook port", DEPLOYMENT),
    ("context deadline exceeded", "the API server cannot reach istiod's 15017 in time (firewall or NetworkPolicy)",
     DEPLOYMENT),
    ("Service Unavailable", "the API server sends webhook calls through its HTTP proxy", APISERVER_PROXY),
)


def _failed_inputs(istio: Istio) -> tuple:
    return Objects(EVENTS, None, None), Objects(PODS, "kube-system", APISERVER_SELECTOR)


@check(id="injection.failed-create", title="Pods are not refused by the injection webhook",
       section="pods-cannot-be-created-at-all", generations=ISTIOD, inputs=_failed_inputs,
       signatures=("FailedCreate", "failed calling webhook", "sidecar-injector.istio.io", "Error creating"),
       subsections={X509: ("x509: certificate signed by unknown authority", "failed to verify certificate"),
                    DEPLOYMENT: ("no endpoints available for service \"istiod\"",
                                 "15017", "ReplicaFailure"),
                    APISERVER_PROXY: ("Service Unavailable",)})
def failed_create(ctx: Context):
    """The injection webhooks fail closed: when the API server cannot call istiod, controllers record FailedCreate
    events. This reads them, names the cause from the message, and checks the kube-apiserver pods' proxy variables
    (their no_proxy must cover istiod.<namespace>.svc)."""
    host = f"istiod.{ctx.istio.namespace}.svc"
    every = ctx.maybe(Objects(EVENTS, None, None), []) or []
    refused = [e for e in every if e.get("reason") == "FailedCreate" and FAILED_CALL.search(e.get("message") or "")]
    # a controller that created its pods after the last refusal has recovered: its events outlive the fault
    created = {}
    for e in every:
        if e.get("reason") == "SuccessfulCreate":
            who = _involved(e)
            created[who] = max(created.get(who, ""), _when(e))
    events, recovered = [], set()
    for e in refused:
        if created.get(_involved(e), "") > _when(e):
            recovered.add("{} {}/{}".format(*_involved(e)))
        else:
            events.append(e)
    recovered = sorted(recovered)
    proxy_problems = []
    for pod in ctx.maybe(Objects(PODS, "kube-system", APISERVER_SELECTOR), []) or []:
        env = _proxy_env(pod)
        if any(v for k, v in env.items() if k != "no_proxy") and not _exempt(env.get("no_proxy", ""), host):
            proxy_problems.append(f"kube-system/{pod['metadata']['name']} has an HTTP proxy and no_proxy does not "
                                  f"cover {host}")
    fix = ("kubectl get events -A --field-selector reason=FailedCreate\n"
           f"kubectl -n {ctx.istio.namespace} get pods,endpoints -l app=istiod\n"
           "# API server behind a proxy: add .svc (or " + host + ") to no_proxy in "
           "/etc/kubernetes/manifests/kube-apiserver.yaml")
    if events:
        first = events[0]
        message = first.get("message") or ""
        cause, section = next(((why, where) for needle, why, where in CAUSES if needle.lower() in message.lower()),
                              ("the webhook call failed", ""))
        obj = first.get("involvedObject") or {}
        evidence = [f"{e.get('involvedObject', {}).get('kind')} {e['metadata'].get('namespace')}/"
                    f"{e.get('involvedObject', {}).get('name')}: {(e.get('message') or '')[:300]}"
                    for e in events[:MAX_EVIDENCE]] + proxy_problems
        # the result quotes the subsection that tells this cause, when the message names one
        return replace(failed(f"pods of {obj.get('kind', '?')} {first['metadata'].get('namespace')}/"
                              f"{obj.get('name', '?')} cannot be created: {cause}", evidence, fix), section=section)
    if proxy_problems:
        return replace(warned(proxy_problems[0], proxy_problems[1:], fix), section=APISERVER_PROXY)
    if recovered:
        return passed("the injection webhook refused pods earlier, and their controllers created them since",
                      *[f"{who}: FailedCreate events, then SuccessfulCreate" for who in recovered[:MAX_EVIDENCE]])
    return passed("no FailedCreate event from the injection webhook")


def _involved(event: dict) -> tuple[str, str, str]:
    obj = event.get("involvedObject") or {}
    return obj.get("kind", ""), obj.get("namespace") or event["metadata"].get("namespace", ""), obj.get("name", "")


def _when(event: dict) -> str:
    """The event's last occurrence to the second (RFC 3339 in UTC, so the strings order as the times do)."""
    return (event.get("lastTimestamp") or event.get("eventTime") or event["metadata"].get("creationTimestamp")
            or "")[:19]


# Validation webhooks ---------------------------------------------------------------------------

def _validation_inputs(istio: Istio) -> tuple:
    return VALIDATING, Objects(SERVICES), ALL_PODS


@check(id="config.validation-webhook", title="Istio's validating webhooks are armed",
       section="invalid-configuration-is-accepted", generations=ISTIOD, inputs=_validation_inputs,
       signatures=("validation.istio.io", "failurePolicy: Ignore", "istiod-default-validator", "admission webhook"))
def validation_webhook(ctx: Context):
    """Istio installs its validating webhooks with failurePolicy Ignore and istiod switches them to Fail once it
    is ready; a live Ignore means invalid configuration is admitted. Also checks that each webhook's Service
    exists."""
    hooks = [(c, h) for c in ctx.get(VALIDATING) for h in c.get("webhooks") or []
             if str(h.get("name", "")).endswith("validation.istio.io")]
    if not hooks:  # istiod runs (the generation says so) but validates nothing: configValidation is off
        return failed("no Istio validating webhook is installed: the API server admits any Istio configuration",
                      [f"{len(ctx.get(VALIDATING))} ValidatingWebhookConfiguration(s), none with a "
                       "*.validation.istio.io webhook"],
                      f"helm upgrade istiod istio/istiod -n {ctx.istio.namespace} --reuse-values "
                      "--set global.configValidation=true\n"
                      "# or, installed with istioctl: istioctl install --set values.global.configValidation=true\n"
                      "istioctl analyze -A   # find objects that slipped in unvalidated")
    services = {(s["metadata"]["namespace"], s["metadata"]["name"]) for s in ctx.get(Objects(SERVICES))}
    istiod_up = any(labels(p).get("app") == "istiod" and running(p) for p in ctx.get(ALL_PODS))
    hard, soft, evidence = [], [], []
    for c, h in hooks:
        where = f"ValidatingWebhookConfiguration {c['metadata']['name']} webhook {h['name']}"
        svc = (h.get("clientConfig") or {}).get("service") or {}
        if svc and (svc.get("namespace"), svc.get("name")) not in services:
            hard.append(f"{where} calls Service {svc.get('namespace')}/{svc.get('name')}, which does not exist")
        policy = h.get("failurePolicy", "Fail")
        evidence.append(f"{where}: failurePolicy {policy}")
        if policy == "Ignore" and istiod_up:
            soft.append(f"{where} is still failurePolicy Ignore: istiod never armed it, invalid config is admitted")
    if not any(selector_matches(h.get("objectSelector"), {}) for _, h in hooks):
        # every istiod reads objects without istio.io/rev; only a default revision or tag validates them
        revisions = sorted({c["metadata"].get("labels", {}).get("istio.io/rev", "default") for c, _ in hooks})
        soft.append(f"no Istio validating webhook takes objects without an istio.io/rev label (each selects its "
                    f"revision: {', '.join(revisions)}), so unlabelled Istio configuration is admitted unchecked")
        tag_fix = f"istioctl tag set default --revision {revisions[0]}   # the default tag validates them\n"
    else:
        tag_fix = ""
    fix = (tag_fix + "kubectl get validatingwebhookconfiguration -l app=istiod -o yaml | grep -B2 -A8 failurePolicy\n"
           f"kubectl -n {ctx.istio.namespace} logs -l app=istiod -c discovery | grep -i 'fail-closed\\|validation'\n"
           "istioctl analyze -A   # find objects that slipped in unvalidated")
    if hard:
        return failed(hard[0], hard[1:] + evidence, fix)
    if soft:
        return warned(soft[0], soft[1:] + evidence, fix)
    return passed(f"{len(hooks)} Istio validating webhook(s) fail closed", *evidence)

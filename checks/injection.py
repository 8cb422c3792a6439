"""Automatic sidecar injection: the injector's certificates and the API server's proxy settings."""

from __future__ import annotations

import base64
import binascii
import re

from checks import istio as names
from checks.errors import ClusterError, without_credentials
from checks.inputs import MUTATING_WEBHOOKS, PODS, SECRETS, Object, Objects, SelectedLogs
from checks.model import ALL_GENERATIONS, Context, Generation, Istio, check, failed, passed, skipped, warned

WEBHOOK_CONFIG = "istio-sidecar-injector"
INJECTOR_SECRET = "sidecar-injector-certs"  # made by webhook-create-signed-cert.sh (0.5-0.7)
SCRIPTS = "https://raw.githubusercontent.com/istio/istio/release-0.7/install/kubernetes"
APISERVER_SELECTOR = "component=kube-apiserver"
WEBHOOK_FAILURE = re.compile(r"[Ff]ailed calling (admission )?webhook.*sidecar-injector")


WEBHOOK = Object(MUTATING_WEBHOOKS, None, WEBHOOK_CONFIG)


def _ca_bundle_problem(webhook_config: dict) -> str | None:
    for hook in webhook_config.get("webhooks") or []:
        bundle = (hook.get("clientConfig") or {}).get("caBundle") or ""
        if not bundle:
            return f"webhook {hook.get('name')} has an empty caBundle"
        try:
            pem = base64.b64decode(bundle, validate=True).decode("ascii", errors="replace")
        except (binascii.Error, ValueError):
            return f"webhook {hook.get('name')} has a caBundle that is not base64 ({bundle[:20]}…)"
        if "-----BEGIN CERTIFICATE-----" not in pem:
            return f"webhook {hook.get('name')} has a caBundle that holds no PEM certificate"
    return None


@check(id="injection.webhook-certs", title="The 0.5 sidecar injector has its certificate and CA bundle",
       section="kubernetes-webhook-setup-script-files-are-missing-from-05-release-package",
       generations={Generation.MIXER_05},
       inputs=lambda istio: (Object(SECRETS, istio.namespace, INJECTOR_SECRET, metadata_only=True),
                             WEBHOOK),
       signatures=("webhook-create-signed-cert.sh", "webhook-patch-ca-bundle.sh", "sidecar-injector-certs",
                   "caBundle", "MutatingWebhookConfiguration istio-sidecar-injector", "0.5"))
def webhook_certs(ctx: Context):
    """Before 0.8 the injector's certificate Secret and the webhook's CA bundle were made by two scripts that
    the 0.5 release archives lack; this check looks for the Secret (metadata only) and a PEM caBundle."""
    ns = ctx.istio.namespace
    injector = ctx.istio.deployments.get(names.injector_service(ctx.istio))
    webhook = ctx.get(WEBHOOK)
    if injector is None and webhook is None:
        return skipped("automatic sidecar injection is not installed")
    problems = []
    if ctx.get(Object(SECRETS, ns, INJECTOR_SECRET, metadata_only=True)) is None:
        problems.append(f"Secret {ns}/{INJECTOR_SECRET} does not exist")
    if webhook is None:
        problems.append(f"MutatingWebhookConfiguration {WEBHOOK_CONFIG} does not exist")
    elif problem := _ca_bundle_problem(webhook):
        problems.append(problem)
    if not problems:
        return passed(f"Secret {ns}/{INJECTOR_SECRET} exists and the webhook carries a CA bundle")
    fix = (f"curl -LO {SCRIPTS}/webhook-create-signed-cert.sh\ncurl -LO {SCRIPTS}/webhook-patch-ca-bundle.sh\n"
           f"bash webhook-create-signed-cert.sh --service istio-sidecar-injector --namespace {ns}"
           f" --secret {INJECTOR_SECRET}\n"
           "cat install/kubernetes/istio-sidecar-injector.yaml | bash webhook-patch-ca-bundle.sh"
           " > istio-sidecar-injector-with-ca-bundle.yaml\n"
           "kubectl apply -f istio-sidecar-injector-with-ca-bundle.yaml")
    return failed("the sidecar injector is not set up: " + "; ".join(problems), problems, fix)


def _proxy_env(pod: dict) -> dict[str, str]:
    env = {}
    for c in pod["spec"].get("containers", []):
        for var in c.get("env") or []:
            if var.get("name", "").lower() in ("http_proxy", "https_proxy", "no_proxy"):
                env[var["name"].lower()] = str(var.get("value") or "")
    return env


def _flag(pod: dict, name: str) -> str | None:
    for c in pod["spec"].get("containers", []):
        for arg in (c.get("command") or []) + (c.get("args") or []):
            if str(arg).startswith(f"--{name}="):
                return str(arg).split("=", 1)[1]
    return None


def _exempt(no_proxy: str, host: str) -> bool:
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if entry and (entry == "*" or host == entry.lstrip(".") or host.endswith("." + entry.lstrip("."))):
            return True
    return False


def _apiserver_inputs(istio: Istio) -> tuple:
    return (Objects(PODS, "kube-system", APISERVER_SELECTOR), SelectedLogs("kube-system", APISERVER_SELECTOR, 500),
            WEBHOOK)


@check(id="injection.apiserver-proxy", title="The API server can reach the sidecar injector",
       section="automatic-sidecar-injection-will-fail-if-the-kube-apiserver-has-proxy-settings",
       generations=ALL_GENERATIONS, inputs=_apiserver_inputs,
       signatures=("failed calling admission webhook sidecar-injector.istio.io", "Service Unavailable",
                   "http_proxy", "https_proxy", "no_proxy", "kube-apiserver", "istio-injection=enabled"))
def apiserver_proxy(ctx: Context):
    """Reads the kube-apiserver pods' proxy variables and checks that no_proxy exempts the injector's Service
    name, and looks for failed webhook calls in their logs. Whether namespaces are labelled for injection is
    another section's question (Report calls, injection results), not this one's."""
    ns = ctx.istio.namespace
    host = f"{names.injector_service(ctx.istio)}.{ns}.svc"
    apiservers = ctx.get(Objects(PODS, "kube-system", APISERVER_SELECTOR))
    problems, evidence = [], []
    for pod in apiservers:
        env = _proxy_env(pod)
        proxies = {k: without_credentials(v) for k, v in env.items() if k != "no_proxy" and v}
        if not proxies:
            continue
        where = f'kube-system/{pod["metadata"]["name"]}'
        evidence += [f"{where}: {k}={v}" for k, v in sorted(proxies.items())]
        evidence.append(f"{where}: no_proxy={env.get('no_proxy', '(unset)')}")
        if not _exempt(env.get("no_proxy", ""), host):
            cidr = _flag(pod, "service-cluster-ip-range")
            problems.append(f"{where} sends webhook calls for {host} through its proxy (no_proxy does not cover it"
                            + (f"; Service CIDR {cidr}" if cidr else "") + ")")
    failures = []
    for pod, text in ctx.get(SelectedLogs("kube-system", APISERVER_SELECTOR, 500)).items():
        if not isinstance(text, ClusterError):
            failures += [f"{pod}: {line.strip()}" for line in str(text).splitlines() if WEBHOOK_FAILURE.search(line)]
    webhook = ctx.get(WEBHOOK)
    fix = ("# on each control-plane node, drop the proxy variables from the API server (or add .svc and the\n"
           "# pod and Service CIDRs to no_proxy); the kubelet restarts it when the manifest changes\n"
           "sudo vi /etc/kubernetes/manifests/kube-apiserver.yaml")
    if problems:
        return failed(problems[0], problems[1:] + evidence + failures[:5], fix)
    if failures:
        return warned(f"the API server failed {len(failures)} call(s) to the sidecar injector, with no proxy"
                      " configured in its way",
                      failures[:5] + evidence, f"kubectl -n {ns} get pods,endpoints -l istio=sidecar-injector\n"
                      f"kubectl -n {ns} logs deploy/{names.injector_service(ctx.istio)} --tail=100")
    if webhook is None:
        return skipped("automatic sidecar injection is not installed (no MutatingWebhookConfiguration "
                       f"{WEBHOOK_CONFIG})")
    seen = (f"{len(apiservers)} kube-apiserver pod(s) without a proxy in the way" if apiservers
            else "the kube-apiserver does not run as a visible pod (managed control plane)")
    return passed(f"{seen}; no failed webhook call", *evidence)

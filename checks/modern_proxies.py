"""istiod-era proxies: crashes, HTTP/1.0, version skew, the metrics they emit, their certificates."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from checks.detect import (
    ALL_NAMESPACES,
    ALL_PODS,
    ISTIOD,
    MAX_EVIDENCE,
    PerPod,
    first_served,
    image_tag,
    is_gateway,
    is_ztunnel,
    istiod_env,
    istiod_version,
    istiods,
    name_of,
    proxies,
    proxy_container,
    proxy_status,
    ready,
    revision_of,
    running,
    version_tuple,
)
from checks.errors import BadPayload
from checks.inputs import CONFIGMAPS, SERVICES, Endpoint, Kind, Objects
from checks.istiod import istiod_metrics, scraped
from checks.metrics import find
from checks.model import Context, InputUnavailable, Istio, check, failed, passed, skipped, warned
from checks.modern_inputs import PreviousLog

CRASH_LOG = re.compile(r"Too many open files|assert failure|panic:|SIGSEGV|std::bad_alloc|Caught Segmentation fault")
LOW_FDS = 1024
ENVOY_STATS = PerPod("proxies", 15090, "stats/prometheus", limit=8)
AGENT_STATS = PerPod("proxies", 15020, "stats/prometheus", limit=8)
RESTARTED_AGENT_STATS = PerPod("restarted", 15020, "stats/prometheus", limit=5)


@dataclass(frozen=True)
class RestartedProxyLogs:
    """Previous log of istio-proxy for up to ``limit`` restarted proxies."""

    limit: int = 5

    async def fetch(self, g) -> dict[str, object]:
        pods = await g.get(ALL_PODS)
        hit = [p for p in proxies(pods) if (proxy_status(p) or {}).get("restartCount")][: self.limit]
        keys = [PreviousLog(p["metadata"]["namespace"], p["metadata"]["name"], "istio-proxy", 50) for p in hit]
        values = await g.get_many(keys)
        return {f"{k.namespace}/{k.pod}": v for k, v in zip(keys, values, strict=True)}


def _crash_inputs(istio: Istio) -> tuple:
    return ALL_PODS, RestartedProxyLogs(), RESTARTED_AGENT_STATS


@check(id="proxies.crashes", title="Sidecars do not crash under load", section="envoy-is-crashing-under-load",
       generations=ISTIOD, inputs=_crash_inputs,
       signatures=("OOMKilled", "exit code 137", "exit code 139", "CrashLoopBackOff", "Too many open files",
                   "istio_agent_process_max_fds", "istio_agent_process_open_fds"))
def crashes(ctx: Context):
    """Looks at every istio-proxy container (regular or native sidecar) for restarts and their last termination
    (OOMKilled, abort 134, segfault 139, CrashLoopBackOff), quotes the previous log of restarted ones, and reads
    `istio_agent_process_max_fds` on them and a few healthy proxies: 1024 is the soft limit that makes Envoy run
    out of file descriptors under load."""
    found = proxies(ctx.get(ALL_PODS))
    if not found:
        return skipped("no proxy runs in this mesh")
    logs = ctx.get(RestartedProxyLogs())
    stats, unread = scraped(ctx.get(RESTARTED_AGENT_STATS), ":15020/stats/prometheus")
    hard, soft, evidence = [], [], []
    for p in found:
        cs = proxy_status(p) or {}
        if not cs.get("restartCount") and not (cs.get("state") or {}).get("waiting"):
            continue
        last = (cs.get("lastState") or {}).get("terminated") or {}
        waiting = ((cs.get("state") or {}).get("waiting") or {}).get("reason")
        line = (f"{name_of(p)}: istio-proxy restarted {cs.get('restartCount', 0)} times, last exit "
                f"{last.get('reason', '?')} (code {last.get('exitCode', '?')})")
        line += f", now {waiting}" if waiting else ""
        crash_lines = [x for x in str(logs.get(name_of(p)) or "").splitlines() if CRASH_LOG.search(x)]
        if last.get("reason") == "OOMKilled" or last.get("exitCode") in (134, 137, 139) or waiting == \
                "CrashLoopBackOff" or crash_lines:
            hard.append(line)
        else:
            soft.append(line)
        evidence += [f"{name_of(p)} (previous log): {x.strip()}" for x in crash_lines[:2]]
    low = []
    for pod, samples in stats.items():
        for s in find(samples, "istio_agent_process_max_fds"):
            evidence.append(f"{pod}: {s.line()}")
            if s.value <= LOW_FDS:
                low.append(f"{pod}: the proxy may open only {int(s.value)} files (istio_agent_process_max_fds)")
    evidence.append(f"read the fd limit on {len(stats)} proxies (restarted ones first)" +
                    (f"; {len(unread)} unreadable" if unread else ""))
    ns, pod = (hard + soft + low + ["default/POD:"])[0].split(":", 1)[0].split("/", 1)
    fix = ("kubectl get pods -A -o wide | grep -v Running\n"
           f"kubectl -n {ns} logs {pod} -c istio-proxy --previous --tail=100\n"
           f"kubectl -n {ns} describe pod {pod}   # Last State: OOMKilled? raise sidecar.istio.io/proxyMemoryLimit\n"
           "# fd limit 1024: raise LimitNOFILE of the container runtime (containerd 2 keeps the soft limit at 1024)")
    if hard:
        return failed(hard[0], hard[1:MAX_EVIDENCE] + low + evidence, fix)
    if low or soft:
        return warned((low or soft)[0], (low + soft)[1:MAX_EVIDENCE] + evidence, fix)
    return passed(f"none of {len(found)} proxies restarted", *evidence)


def _http10_inputs(istio: Istio) -> tuple:
    return ALL_PODS, ENVOY_STATS


@check(id="proxies.http10", title="No HTTP/1.0 request is refused with 426",
       section="envoy-wont-connect-to-my-http10-service", generations=ISTIOD, inputs=_http10_inputs,
       signatures=("426 Upgrade Required", "response_code=\"426\"", "PILOT_HTTP10", "HTTP/1.0", "istio_requests_total"))
def http10(ctx: Context):
    """Reads `istio_requests_total` on a bounded sample of proxies (port 15090, gateways first) for response code
    426, which Envoy answers to HTTP/1.0 unless istiod runs with PILOT_HTTP10=true."""
    found = proxies(ctx.get(ALL_PODS))
    if not found:
        return skipped("no proxy runs in this mesh")
    if not any(ready(p) for p in found):
        return skipped(f"none of the {len(found)} proxies is ready to be read (see proxies.crashes)")
    enabled = {rev for rev, d in istiods(ctx.istio).items() if istiod_env(d, "PILOT_HTTP10") in ("true", "1")}
    stats, unread = scraped(ctx.get(ENVOY_STATS), ":15090/stats/prometheus")
    if not stats:
        raise InputUnavailable(BadPayload("; ".join(unread) or "no proxy could be scraped"))
    hits = [f"{pod}: {s.line()}" for pod, samples in stats.items()
            for s in find(samples, "istio_requests_total", response_code="426") if s.value > 0]
    note = f"scraped {len(stats)} of {len(found)} proxies on :15090" + (f" ({len(unread)} failed)" if unread else "")
    if hits:
        fix = ("# let Envoy accept HTTP/1.0 (all proxies of this revision):\n"
               f"kubectl -n {ctx.istio.namespace} set env deploy/istiod PILOT_HTTP10=true\n"
               "# or per workload: annotate the pod template with proxy.istio.io/config: "
               "'{\"proxyMetadata\": {\"ISTIO_META_HTTP10\": \"1\"}}'\n"
               "# NGINX upstreams: add `proxy_http_version 1.1;` to the proxy_pass blocks")
        return failed(f"proxies refused HTTP/1.0 requests with 426 ({len(hits)} series)", hits[:MAX_EVIDENCE] + [note],
                      fix)
    return passed("no 426 response in the sampled proxies" + (" (PILOT_HTTP10 is on)" if enabled else ""), note)


def _skew_inputs(istio: Istio) -> tuple:
    return (ALL_PODS,)


@check(id="proxies.version-skew", title="Proxies run the control plane's version",
       section="the-result-of-sidecar-injection-was-not-what-i-expected", generations=ISTIOD, inputs=_skew_inputs,
       signatures=("proxyv2", "istioctl proxy-status", "sidecar.istio.io/status", "version mismatch"))
def version_skew(ctx: Context):
    """Compares each proxy's image tag with the istiod revision that injected it; pods keep the proxy they were
    created with, so after an upgrade they need a restart."""
    pods = ctx.get(ALL_PODS)
    found = proxies(pods) + [p for p in pods if is_ztunnel(p) and running(p)]  # ztunnels are xDS clients too
    planes = {rev: version_tuple(istiod_version(d)) for rev, d in istiods(ctx.istio).items()}
    if not found or not planes:
        return skipped("no proxy or no istiod to compare")
    newest = max(planes.values())
    behind, far, namespaces = [], [], set()
    for p in found:
        tag = image_tag(proxy_container(p)[0] or (p["spec"].get("containers") or [{}])[0])
        plane = planes.get(revision_of(p), newest)
        have = version_tuple(tag)
        if not have or have[:2] == plane[:2]:
            continue
        line = f"{name_of(p)}: proxy {tag}, istiod {'.'.join(map(str, plane))} (revision {revision_of(p)})"
        (far if plane[:2] > have[:2] and (plane[1] - have[1] > 2 or plane[0] != have[0]) else behind).append(line)
        namespaces.add(p["metadata"]["namespace"])
    fix = "\n".join(f"kubectl -n {ns} rollout restart deployment" for ns in sorted(namespaces))
    if far:
        return failed(f"{len(far)} proxies are more than two minor versions behind the control plane",
                      far[:MAX_EVIDENCE] + behind[:3], fix)
    if behind:
        return warned(f"{len(behind)} proxies run another minor version than their control plane",
                      behind[:MAX_EVIDENCE], fix)
    return passed(f"all {len(found)} proxies match their control plane's minor version")


# Telemetry -------------------------------------------------------------------------------------

# Telemetry objects at the newest version the cluster serves (v1 from 1.22): a missing version is NotInstalled.
TELEMETRIES = tuple(Objects(Kind(f"telemetry.istio.io/{v}", "telemetries")) for v in ("v1", "v1alpha1"))


def _metrics_inputs(istio: Istio) -> tuple:
    return (ALL_PODS, ALL_NAMESPACES, ENVOY_STATS) + TELEMETRIES


@check(id="telemetry.proxy-metrics", title="Proxies emit Istio's standard metrics",
       section="where-are-the-metrics-for-my-service", generations=ISTIOD, inputs=_metrics_inputs,
       signatures=("istio_requests_total", "istio_request_duration_milliseconds",
                   "istio_tcp_connections_opened_total", "15090", "stats/prometheus", "Telemetry", "disabled: true"))
def proxy_metrics(ctx: Context):
    """Without Mixer the proxies themselves expose `istio_requests_total` and the TCP counters on port 15090; reads
    them on a bounded sample and lists Telemetry resources that turn metrics off. In ambient mode HTTP metrics exist
    only where a waypoint runs, which is not a fault."""
    found = proxies(ctx.get(ALL_PODS))
    if not found:
        return skipped("no proxy runs in this mesh (ambient without waypoints reports L4 metrics from ztunnel)")
    if not any(ready(p) for p in found):
        return skipped(f"none of the {len(found)} proxies is ready to be read (see proxies.crashes)")
    disabled = []
    for t in first_served(ctx, TELEMETRIES):
        for m in (t.get("spec") or {}).get("metrics") or []:
            if any(o.get("disabled") for o in m.get("overrides") or []) or m.get("providers") == []:
                disabled.append(f"Telemetry {name_of(t)} disables metrics"
                                + (" mesh-wide" if t["metadata"]["namespace"] == "istio-system"
                                   and not (t.get("spec") or {}).get("selector") else ""))
    stats, unread = scraped(ctx.get(ENVOY_STATS), ":15090/stats/prometheus")
    if not stats:
        raise InputUnavailable(BadPayload("; ".join(unread) or "no proxy could be scraped"))
    emitting = [pod for pod, samples in stats.items() if any(
        s.name.startswith(("istio_requests_total", "istio_tcp_connections_opened")) for s in samples)]
    evidence = [f"{pod}: emits istio_requests_total" for pod in emitting[:4]]
    evidence.append(f"scraped {len(stats)} of {len(found)} proxies on :15090" +
                    (f" ({len(unread)} failed)" if unread else ""))
    fix = ("kubectl get telemetry -A -o yaml\n"
           f"kubectl get --raw '/api/v1/namespaces/{ctx.istio.namespace}/services/prometheus:9090/proxy/api/v1/"
           "query?query=istio_requests_total'\n"
           "# a proxy emits metrics only after it served traffic: send some requests first")
    if not emitting:
        return failed("no sampled proxy exposes Istio's standard metrics", disabled + evidence, fix)
    if disabled:
        return warned(disabled[0], disabled[1:] + evidence, fix)
    return passed(f"{len(emitting)} of {len(stats)} sampled proxies emit Istio's standard metrics", *evidence)


def _targets_endpoint(service: dict) -> Endpoint:
    port = ((service.get("spec") or {}).get("ports") or [{}])[0].get("port", 9090)
    return Endpoint(service["metadata"]["namespace"], service["metadata"]["name"], port, "api/v1/targets")


@dataclass(frozen=True)
class PrometheusTargets:
    """The targets API of the first Prometheus Service found by label; None when there is none."""

    async def fetch(self, g):
        for selector in ("app.kubernetes.io/name=prometheus", "app=prometheus"):
            services = await g.get(Objects(SERVICES, None, selector))
            services = [s for s in services if s["metadata"]["name"].startswith("prometheus")]
            if services:
                endpoint = _targets_endpoint(services[0])
                return endpoint, await g.get(endpoint)
        return None


def _scrape_inputs(istio: Istio) -> tuple:
    return ALL_PODS, PrometheusTargets()


PROXY_METRICS_PORTS = {"15020", "15090"}  # the agent's merged port (annotations), Envoy's own (the PodMonitor)


def _scraped_proxy(target: dict, names: set, by_ip: dict) -> str | None:
    """The proxy ("namespace/name") whose metrics port a target scrapes, else None. Its discovered address is the
    pod's first declared port, not the one scraped (relabelling rewrites it): the scrape URL says which port, the
    pod labels which pod."""
    url = urlsplit(str(target.get("scrapeUrl", "")))
    if str(url.port) not in PROXY_METRICS_PORTS:
        return None
    found = target.get("discoveredLabels") or {}
    if found.get("__meta_kubernetes_pod_name"):
        pod = f"{found.get('__meta_kubernetes_namespace')}/{found['__meta_kubernetes_pod_name']}"
        return pod if pod in names else None
    return by_ip.get(url.hostname)


@check(id="telemetry.prometheus-scrape", title="Prometheus scrapes the proxies",
       section="verify-prometheus-configuration",
       generations=ISTIOD, inputs=_scrape_inputs,
       signatures=("prometheus.io/scrape", "prometheus.io/port", "15020", "PodMonitor", "kubernetes-pods",
                   "api/v1/targets", "up == 0"))
def prometheus_scrape(ctx: Context):
    """Asks Prometheus' targets API (through the API server's service proxy) whether the proxies are scraped, on
    the merged port 15020 (the injector's prometheus.io annotations) or Envoy's 15090 (a PodMonitor), and up."""
    found = ctx.get(PrometheusTargets())
    if found is None:
        return skipped("no Prometheus Service found (labels app.kubernetes.io/name=prometheus or app=prometheus)")
    endpoint, response = found
    if response.status != 200:
        raise InputUnavailable(BadPayload(f"GET {endpoint} → {response.status}"))
    try:
        targets = (json.loads(response.body).get("data") or {}).get("activeTargets") or []
    except (ValueError, AttributeError):
        raise InputUnavailable(BadPayload(f"GET {endpoint} did not answer JSON")) from None
    pods = proxies(ctx.get(ALL_PODS))
    names, by_ip = {name_of(p) for p in pods}, {(p.get("status") or {}).get("podIP"): name_of(p) for p in pods}
    hits = [(t, _scraped_proxy(t, names, by_ip)) for t in targets]
    mine = [t for t, pod in hits if pod is not None]
    down = [t for t in mine if t.get("health") != "up"]
    seen = {pod for _, pod in hits if pod is not None}
    sidecars = [p for p in pods if not is_gateway(p)]
    unseen = [name_of(p) for p in sidecars if name_of(p) not in seen]
    fix = (f"kubectl -n {endpoint.namespace} get configmap prometheus -o yaml | grep -A30 kubernetes-pods\n"
           "kubectl get pods -A -o jsonpath='{range .items[*]}{.metadata.name} "
           "{.metadata.annotations.prometheus\\.io/scrape}{\"\\n\"}{end}'\n"
           "# PodMonitor users: check the operator's selector picks up the 15020 port of injected pods")
    evidence = [f"GET {endpoint}: {len(targets)} active targets, {len(mine)} on proxies ({len(pods)} proxies run)"]
    evidence += [f"{t.get('scrapeUrl')}: {t.get('health')} {t.get('lastError', '')}".strip() for t in down[:5]]
    if unseen:
        evidence.append(f"not scraped: {', '.join(unseen[:6])}" + (f" and {len(unseen) - 6} more" if len(unseen) > 6
                                                                   else ""))
    if pods and not mine:
        return failed("Prometheus scrapes none of the proxies", evidence, fix)
    if sidecars and len(unseen) == len(sidecars):
        return failed(f"Prometheus scrapes none of the {len(sidecars)} sidecars, only gateways", evidence, fix)
    if mine and len(down) == len(mine):
        return failed(f"all {len(mine)} proxy targets are down", evidence, fix)
    if down:
        return warned(f"{len(down)} of {len(mine)} proxy targets are down", evidence, fix)
    if unseen:
        return warned(f"{len(unseen)} of {len(sidecars)} sidecars are not scraped", evidence, fix)
    return passed(f"Prometheus scrapes {len(mine)} proxy targets, all up", *evidence)


# Certificates ----------------------------------------------------------------------------------

ROTATION_DUE = 12 * 3600  # certificates live 24 h and rotate at half-life
EXPIRED_SOON = 3600
ROOT_SOON = 30 * 86400
CA_ROOTS = Objects(CONFIGMAPS, None, "istio.io/config=true")


def _cert_inputs(istio: Istio) -> tuple:
    return ALL_PODS, AGENT_STATS, istiod_metrics(istio), CA_ROOTS


@check(id="security.certificates", title="Workload certificates rotate and one root is distributed",
       section="keys-and-certificates-errors", generations=ISTIOD, inputs=_cert_inputs,
       signatures=("istio_agent_cert_expiry_seconds", "citadel_server_root_cert_expiry_timestamp", "ROOTCA",
                   "certificate has expired", "istio-ca-root-cert", "SDS"))
def certificates(ctx: Context):
    """Reads `istio_agent_cert_expiry_seconds` on a sample of proxies (24 h certificates renewed at half-life), the
    CA's root expiry on istiod, and compares the `istio-ca-root-cert` ConfigMaps of all namespaces."""
    stats, unread = scraped(ctx.get(AGENT_STATS), ":15020/stats/prometheus")
    hard, soft, evidence = [], [], []
    for pod, samples in stats.items():
        for s in find(samples, "istio_agent_cert_expiry_seconds", resource_name="default"):
            evidence.append(f"{pod}: workload certificate expires in {int(s.value // 3600)} h")
            if s.value < EXPIRED_SOON:
                hard.append(f"{pod}: workload certificate expires in {int(s.value)} s (rotation failed)")
            elif s.value < ROTATION_DUE * 0.9:
                soft.append(f"{pod}: workload certificate is past its renewal time ({int(s.value // 3600)} h left)")
    try:  # the CA's own expiry is an extra signal: a damaged istiod page leaves the proxies' answer standing
        good, _ = scraped(ctx.maybe(istiod_metrics(ctx.istio), {}) or {}, ":15014/metrics")
    except InputUnavailable as exc:
        good = {}
        evidence.append(f"root expiry not read: {exc}")
    if good:
        for pod, samples in good.items():
            for s in find(samples, "citadel_server_root_cert_expiry_seconds"):
                evidence.append(f"{pod}: root certificate expires in {int(s.value // 86400)} days")
                if s.value < 0:
                    hard.append(f"{pod}: the root certificate has expired")
                elif s.value < ROOT_SOON:
                    soft.append(f"{pod}: the root certificate expires in {int(s.value // 86400)} days")
    roots: dict[str, list[str]] = {}
    for cm in ctx.maybe(CA_ROOTS, []) or []:
        if cm["metadata"]["name"] == "istio-ca-root-cert":
            roots.setdefault((cm.get("data") or {}).get("root-cert.pem", "").strip(), []).append(
                cm["metadata"]["namespace"])
    if len(roots) > 1:
        groups = sorted(roots.values(), key=len)
        hard.append(f"namespaces carry different root certificates: {', '.join(groups[0][:5])} differ from the rest")
    ns, pod = ([x for x in hard + soft if x.split(":", 1)[0] in stats] + [next(iter(stats), "default/POD") + ":"]
               )[0].split(":", 1)[0].split("/", 1)
    fix = (f"istioctl proxy-config secret {pod}.{ns}\n"
           f"kubectl -n {ctx.istio.namespace} logs -l app=istiod -c discovery | grep -i 'csr\\|sign'\n"
           f"kubectl -n {ns} logs {pod} -c istio-proxy | grep -i 'failed to sign\\|certificate'")
    evidence.append(f"read certificate metrics on {len(stats)} proxies"
                    + (f" ({len(unread)} failed)" if unread else ""))
    if hard:
        return failed(hard[0], hard[1:] + soft + evidence, fix)
    if soft:
        return warned(soft[0], soft[1:] + evidence, fix)
    if not stats and unread:
        raise InputUnavailable(BadPayload("; ".join(unread)))
    return passed(f"certificates healthy on {len(stats)} sampled proxies; one root in {sum(map(len, roots.values()))} "
                  "namespaces", *evidence)


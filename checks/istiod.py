"""istiod: is it up, are the proxies connected, do they accept what it pushes."""

from __future__ import annotations

import re
from dataclasses import dataclass

from checks.detect import (
    ALL_PODS,
    ISTIOD,
    MAX_EVIDENCE,
    PerPod,
    image_tag,
    istiod_pods,
    istiods,
    labels,
    name_of,
    proxies,
    proxy_container,
    ready,
    revision_of,
    running,
)
from checks.errors import BadPayload, ClusterError, ServerError
from checks.inputs import SERVICES, Objects
from checks.metrics import Sample, parse
from checks.model import Context, InputUnavailable, Istio, Response, check, failed, passed, skipped, warned
from checks.modern_inputs import ENVOY_FILTERS, PreviousLog

CONNECTED_SHARE = 0.9  # below this share of the expected proxies, istiod is missing some


def ready_endpoints(istio: Istio) -> PerPod:
    return PerPod("istiod", 8080, "ready", istio.namespace)


def istiod_metrics(istio: Istio) -> PerPod:
    return PerPod("istiod", 15014, "metrics", istio.namespace)


def _services(istio: Istio) -> Objects:
    return Objects(SERVICES, istio.namespace)


@dataclass(frozen=True)
class RestartedIstiodLogs:
    """The previous log of the discovery container of each restarted istiod pod (at most 3)."""

    namespace: str

    async def fetch(self, g) -> dict[str, object]:
        pods = await g.get(ALL_PODS)
        restarted = [p for p in pods if p["metadata"].get("namespace") == self.namespace
                     and labels(p).get("app") == "istiod" and _discovery_status(p).get("restartCount")][:3]
        keys = [PreviousLog(self.namespace, p["metadata"]["name"], "discovery", 30) for p in restarted]
        values = await g.get_many(keys)
        return {f"{k.namespace}/{k.pod}": v for k, v in zip(keys, values, strict=True)}


def _ready_inputs(istio: Istio) -> tuple:
    return ALL_PODS, ready_endpoints(istio), _services(istio), RestartedIstiodLogs(istio.namespace)


def _discovery_status(pod: dict) -> dict:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == "discovery":
            return cs
    return {}


def _termination(cs: dict) -> str:
    waiting = (cs.get("state") or {}).get("waiting") or {}
    last = (cs.get("lastState") or {}).get("terminated") or {}
    parts = []
    if waiting.get("reason"):
        parts.append(waiting["reason"])
    if last:
        parts.append(f"last exit: {last.get('reason', '?')} (code {last.get('exitCode', '?')})")
    return ", ".join(parts)


@check(id="control-plane.istiod-ready", title="The istiod control plane is running and ready",
       section="verifying-connectivity-to-istio-pilot", generations=ISTIOD, inputs=_ready_inputs,
       signatures=("istiod", "discovery", "15012", "15010", "8080/ready", "CrashLoopBackOff", "connection refused",
                   "no healthy upstream"))
def istiod_ready(ctx: Context):
    """Every istiod revision has ready pods whose /ready (port 8080, through the pod proxy) answers 200, its
    Service selects ready pods, and the discovery container is not restarting; a restarted pod's previous log
    is quoted."""
    ns = ctx.istio.namespace
    pods = istiod_pods(ctx.get(ALL_PODS), ctx.istio)
    answers = ctx.get(ready_endpoints(ctx.istio))
    previous = ctx.get(RestartedIstiodLogs(ns))
    services = {s["metadata"]["name"]: s for s in ctx.get(_services(ctx.istio))}
    fix = (f"kubectl -n {ns} get deploy,pods -l app=istiod -o wide\n"
           f"kubectl -n {ns} describe pods -l app=istiod\n"
           f"kubectl -n {ns} logs -l app=istiod -c discovery --previous --tail=50")
    problems, warnings, evidence = [], [], []
    unreachable = []
    for rev, deployment in istiods(ctx.istio).items():
        name = deployment["metadata"]["name"]
        wanted = (deployment.get("spec") or {}).get("replicas", 1)
        mine = [p for p in pods if (labels(p).get("istio.io/rev") or "default") == rev]
        ready_pods = [p for p in mine if ready(p)]
        evidence.append(f"Deployment {ns}/{name} (revision {rev}): {len(ready_pods)}/{wanted} ready, "
                        f"{len(mine)} pods")
        if wanted == 0:
            problems.append(f"Deployment {ns}/{name} is scaled to 0 replicas")
        elif not ready_pods:
            problems.append(f"Deployment {ns}/{name} has no ready pod")
        elif len(ready_pods) < wanted:
            warnings.append(f"Deployment {ns}/{name} has {len(ready_pods)} of {wanted} pods ready")
        for p in mine:
            cs = _discovery_status(p)
            why = _termination(cs)
            if cs.get("restartCount"):
                line = f"pod {name_of(p)}: discovery restarted {cs['restartCount']} times"
                line += f" ({why})" if why else ""
                # a crashing replica beside ready ones is degraded; with none ready, the no-ready finding says it
                (problems if not ready_pods else warnings).append(line)
            answer = answers.get(name_of(p))
            if isinstance(answer, ClusterError):
                unreachable.append(f"GET pods/{p['metadata']['name']}:8080/ready: {answer}")
            elif answer is not None:
                evidence.append(f"GET pods/{p['metadata']['name']}:8080/ready → {answer.status}")
                if answer.status != 200 and ready(p):
                    problems.append(f"pod {name_of(p)} answers /ready with {answer.status}")
            text = previous.get(name_of(p))
            if isinstance(text, str) and text.strip():
                evidence += [f"{name_of(p)} (previous): {line}" for line in text.strip().splitlines()[-3:]]
        service_name = name if name.startswith("istiod") else "istiod"
        service = services.get(service_name) or services.get("istiod")
        if service is None:
            problems.append(f"Service {ns}/{service_name} does not exist: proxies and webhooks cannot reach istiod")
        else:
            selector = (service.get("spec") or {}).get("selector") or {}
            backing = [p for p in ready_pods if all(labels(p).get(k) == v for k, v in selector.items())]
            evidence.append(f"Service {ns}/{service['metadata']['name']} selects {len(backing)} ready pod(s)")
            if ready_pods and not backing:
                problems.append(f"Service {ns}/{service['metadata']['name']} selects none of the ready istiod pods")
    if not istiods(ctx.istio):
        return skipped(f"no istiod Deployment in {ns}")
    if problems:
        return failed(problems[0], problems[1:] + warnings + evidence, fix)
    if unreachable and len(unreachable) == len([p for p in pods if running(p)]):
        raise InputUnavailable(ServerError(0, unreachable[0], "istiod's /ready could not be reached"))
    if warnings:
        return warned(warnings[0], warnings[1:] + evidence, fix)
    return passed(f"istiod is ready ({', '.join(e.split(':')[1].strip() for e in evidence[:1])})", *evidence)


# Metrics ---------------------------------------------------------------------------------------

def scraped(values: dict[str, object], what: str) -> tuple[dict[str, list[Sample]], list[str]]:
    """Parse each pod's Prometheus answer: ({pod: samples}, [why a pod could not be read]). A page that arrived
    damaged (cut short, not Prometheus text) is no reading at all: the check cannot tell (InputUnavailable)."""
    good, bad = {}, []
    for pod, answer in values.items():
        if isinstance(answer, BadPayload):
            raise InputUnavailable(BadPayload(f"{pod} {what}: {answer}"))
        if isinstance(answer, ClusterError):
            bad.append(f"{pod}: {answer}")
        elif isinstance(answer, Response) and answer.status != 200:
            hint = " (METRICS_LOCALHOST_ACCESS_ONLY?)" if answer.status == 403 else ""
            bad.append(f"{pod}: GET {what} → {answer.status}{hint}")
        else:
            try:
                good[pod] = parse(answer.text(), f"{pod} {what}")
            except BadPayload as exc:
                raise InputUnavailable(exc) from None
    return good, bad


def expected_clients(pods: list[dict]) -> list[dict]:
    return proxies(pods) + [p for p in pods if labels(p).get("app") == "ztunnel" and running(p)]


def _connected_inputs(istio: Istio) -> tuple:
    return ALL_PODS, istiod_metrics(istio)


@check(id="control-plane.proxies-connected", title="Proxies are connected to istiod",
       section="verifying-connectivity-to-istio-pilot", generations=ISTIOD, inputs=_connected_inputs,
       signatures=("pilot_xds", "pilot_xds_push_context_errors", "StreamAggregatedResources", "delta ADS",
                   "proxy-status", "NOT SENT", "STALE", "15012"))
def proxies_connected(ctx: Context):
    """Sums istiod's `pilot_xds` gauge (connected xDS clients, by proxy version) over its replicas and compares it
    with the proxies that should be connected: running sidecars, native sidecars, gateways, waypoints and ztunnels."""
    pods = ctx.get(ALL_PODS)
    if not any(ready(p) for p in istiod_pods(pods, ctx.istio)):
        return skipped("no istiod pod is ready (control-plane.istiod-ready says why)")
    good, bad = scraped(ctx.get(istiod_metrics(ctx.istio)), ":15014/metrics")
    if not good:
        raise InputUnavailable(BadPayload("; ".join(bad) or "no istiod metrics"))
    connected: dict[str, float] = {}
    for samples in good.values():
        for s in samples:
            if s.name == "pilot_xds":
                version = s.labels.get("version", "?")
                connected[version] = connected.get(version, 0) + s.value
    expected = expected_clients(pods)
    total = int(sum(connected.values()))
    evidence = [f"pilot_xds over {len(good)} istiod replica(s): {total} connected"
                + (" (" + ", ".join(f"{v}: {int(n)}" for v, n in sorted(connected.items())) + ")" if connected else ""),
                f"{len(expected)} proxies should be connected (running sidecars, gateways, waypoints, ztunnels)"]
    evidence += bad
    ns = ctx.istio.namespace
    one = expected[0]["metadata"] if expected else {"namespace": "default", "name": "POD"}
    fix = ("istioctl proxy-status\n"
           f"kubectl -n {ns} logs -l app=istiod -c discovery --tail=100 | grep -i 'xds\\|connection'\n"
           f"kubectl -n {one['namespace']} logs {one['name']} -c istio-proxy | grep -i 'failed to connect\\|XDS'")
    running_revisions = set(istiods(ctx.istio))
    stranded = [p for p in proxies(pods) if revision_of(p) not in running_revisions]
    if stranded:  # their control plane is gone: they cannot connect, whatever the count says
        by_rev = sorted({revision_of(p) for p in stranded})
        return failed(f"{len(stranded)} proxies belong to revision(s) {', '.join(by_rev)}, which no istiod runs",
                      [f"stranded: {name_of(p)} (revision {revision_of(p)})" for p in stranded[:MAX_EVIDENCE]]
                      + evidence, fix + "\n# re-inject them onto a running revision, e.g.\n"
                      + "\n".join(f"kubectl -n {n} rollout restart deployment"
                                   for n in sorted({p['metadata']['namespace'] for p in stranded})[:5]))
    if expected and total == 0:
        sample = [f"not connected: {name_of(p)}" for p in expected[:5]]
        return failed(f"istiod reports no connected proxy, but {len(expected)} proxies run", evidence + sample, fix)
    if len(good) < len(ctx.get(istiod_metrics(ctx.istio))):
        evidence.append("some replicas could not be read: the count may be low")
    if expected and total < CONNECTED_SHARE * len(expected) and not bad:
        return warned(f"istiod reports {total} connected proxies of {len(expected)} running", evidence, fix)
    return passed(f"{total} proxies connected to istiod ({len(expected)} running)", *evidence)


# Rejects and EnvoyFilters ----------------------------------------------------------------------

REJECT_GAUGES = ("pilot_xds_cds_reject", "pilot_xds_lds_reject", "pilot_xds_rds_reject", "pilot_xds_eds_reject")


def _reject_inputs(istio: Istio) -> tuple:
    return ALL_PODS, istiod_metrics(istio), Objects(ENVOY_FILTERS)


def _proxy_versions(pods: list[dict]) -> set[str]:
    return {v for p in proxies(pods) if (v := image_tag(proxy_container(p)[0]))}


def envoyfilter_problems(filters: list[dict], versions: set[str]) -> list[str]:
    """proxyVersion matches no running proxy satisfies (patch operations themselves: config.envoy-filters)."""
    out = []
    for ef in filters:
        patches = (ef.get("spec") or {}).get("configPatches") or []
        for p in patches:
            regex = ((p.get("match") or {}).get("proxy") or {}).get("proxyVersion")
            if regex and versions:
                try:
                    matched = [v for v in versions if re.match(regex, v)]
                except re.error:
                    out.append(f"EnvoyFilter {name_of(ef)} has an invalid proxyVersion regex {regex!r}")
                    continue
                if not matched:
                    out.append(f"EnvoyFilter {name_of(ef)} matches proxyVersion {regex!r}, but the running proxies are "
                               f"{', '.join(sorted(versions))}: it applies to none of them")
                    break
    return out


@check(id="config.xds-rejects", title="Proxies accept istiod's configuration",
       section="unchanged-envoy-filter-configuration-suddenly-stops-working", generations=ISTIOD,
       inputs=_reject_inputs,
       signatures=("pilot_xds_cds_reject", "pilot_xds_lds_reject", "pilot_xds_rds_reject", "pilot_total_xds_rejects",
                   "EnvoyFilter", "INSERT_BEFORE", "proxyVersion", "priority"))
def xds_rejects(ctx: Context):
    """Reads istiod's reject gauges (`pilot_xds_{cds,lds,rds,eds}_reject`, by rejecting proxy and error) and push
    send errors, and EnvoyFilters' `proxyVersion` matches that no running proxy satisfies after an upgrade (their
    patch operations are config.envoy-filters')."""
    pods = ctx.get(ALL_PODS)
    filters = ctx.maybe(Objects(ENVOY_FILTERS), []) or []
    lint = envoyfilter_problems(filters, _proxy_versions(pods))
    rejects, senderr, bad, good = [], [], [], {}
    if any(ready(p) for p in istiod_pods(pods, ctx.istio)):
        good, bad = scraped(ctx.get(istiod_metrics(ctx.istio)), ":15014/metrics")
        for pod, samples in good.items():
            for s in samples:
                if s.name in REJECT_GAUGES and s.value > 0:
                    rejects.append(f"{pod}: {s.line()}")
                if s.name == "pilot_xds_pushes" and s.labels.get("type", "").endswith("senderr") and s.value > 0:
                    senderr.append(f"{pod}: {s.line()}")
    fix = ("istioctl analyze -A\nkubectl get envoyfilter -A\n"
           f"kubectl -n {ctx.istio.namespace} logs -l app=istiod -c discovery | grep 'ACK ERROR'")
    if rejects:
        return failed(f"proxies reject istiod's configuration ({len(rejects)} reject series)",
                      rejects[:MAX_EVIDENCE] + lint, fix)
    if lint or senderr:
        return warned(lint[0] if lint else f"istiod failed to send {len(senderr)} push type(s)",
                      (lint[1:] if lint else []) + senderr[:MAX_EVIDENCE] + lint[:1], fix)
    if not good and bad:
        raise InputUnavailable(BadPayload("; ".join(bad)))
    if not good:
        return skipped("no istiod pod is ready to report rejects (control-plane.istiod-ready says why); "
                       f"{len(filters)} EnvoyFilter(s) checked")
    return passed(f"no proxy rejects istiod's configuration; {len(filters)} EnvoyFilter(s) checked",
                  *[f"{p}: no pilot_xds_*_reject series" for p in good])


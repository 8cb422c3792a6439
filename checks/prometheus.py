"""Prometheus: is there a job scraping Mixer, and are its targets up?"""

from __future__ import annotations

import json

import yaml

from checks import istio as names
from checks.common import body, mixer_metrics, mixer_metrics_inputs, prometheus_targets
from checks.errors import BadPayload
from checks.inputs import CONFIGMAPS, SERVICES, Object
from checks.mixer import adapter_dispatches
from checks.model import MIXER_ERA, Context, InputUnavailable, check, failed, passed, skipped, warned

PROMETHEUS = "prometheus"
MIXER_PROMETHEUS_PORT = 42422  # Service port named "prometheus" on Mixer


def _config_map(ns: str) -> Object:
    return Object(CONFIGMAPS, ns, PROMETHEUS)


def mixer_jobs(config: dict, namespace: str, service: str, port_names: frozenset = frozenset({"prometheus"})
               ) -> list[tuple[str, str]]:
    """(job name, how it reaches Mixer) for every scrape job aimed at Mixer's Prometheus port, by number or by
    the name the Service gives that port (``prometheus`` in every release; operators rename it)."""
    found = []
    for job in config.get("scrape_configs") or []:
        name = job.get("job_name", "?")
        for static in job.get("static_configs") or []:
            for target in static.get("targets") or []:
                host, _, port = str(target).rpartition(":")
                if port == str(MIXER_PROMETHEUS_PORT) and host.split(".")[0] == service:
                    found.append((name, f"static target {target}"))
        if job.get("kubernetes_sd_configs"):
            for relabel in job.get("relabel_configs") or []:
                regex = str(relabel.get("regex", ""))
                if relabel.get("action") == "keep" and regex in {f"{namespace};{service};{n}" for n in port_names}:
                    found.append((name, f"Kubernetes endpoints discovery keeping {regex}"))
    return found


def _stale_jobs(config: dict, namespace: str, service: str) -> list[str]:
    """Jobs aimed at a Mixer service of another Istio version (the usual upgrade leftover)."""
    other = {"istio-mixer", "istio-telemetry"} - {service}
    return [f"{name} ({how})" for o in other for name, how in mixer_jobs(config, namespace, o)]


def _port_names(service: dict | None) -> frozenset:
    named = {p.get("name") for p in ((service or {}).get("spec") or {}).get("ports") or []
             if p.get("port") == MIXER_PROMETHEUS_PORT and p.get("name")}
    return frozenset(named or {"prometheus"})


@check(id="prometheus.scrape-config", title="A Prometheus job scrapes Mixer",
       section="verify-prometheus-configuration", generations=MIXER_ERA,
       inputs=lambda istio: (_config_map(istio.namespace),
                             Object(SERVICES, istio.namespace, names.telemetry_service(istio))),
       signatures=("scrape_configs", "job_name: istio-mesh", ":42422", "prometheus configmap"))
def scrape_config(ctx: Context):
    """Reads the Prometheus add-on's configuration and looks for a scrape job reaching Mixer's port 42422,
    either as a static target or through Kubernetes service discovery."""
    ns = ctx.istio.namespace
    config_map = ctx.get(_config_map(ns))
    if config_map is None:
        return skipped(f"the Prometheus add-on is not installed (no ConfigMap {ns}/{PROMETHEUS})")
    try:
        config = yaml.safe_load((config_map.get("data") or {}).get("prometheus.yml", "")) or {}
    except yaml.YAMLError as exc:
        raise InputUnavailable(BadPayload(f"prometheus.yml in {ns}/{PROMETHEUS} is not YAML: {exc}")) from None
    service = names.telemetry_service(ctx.istio)
    jobs = mixer_jobs(config, ns, service, _port_names(ctx.maybe(Object(SERVICES, ns, service))))
    if jobs:
        return passed(f"job {jobs[0][0]} scrapes {service}:{MIXER_PROMETHEUS_PORT}", *[f"{n}: {h}" for n, h in jobs])
    stale = _stale_jobs(config, ns, service)
    job_names = ", ".join(j.get("job_name", "?") for j in config.get("scrape_configs") or [])
    evidence = [f"jobs in {ns}/{PROMETHEUS}: {job_names}"]
    if stale:
        evidence.append("aimed at a Mixer service this version does not have: " + "; ".join(stale))
    return failed(f"no Prometheus job scrapes {service}:{MIXER_PROMETHEUS_PORT}", evidence,
                  f"kubectl -n {ns} edit configmap {PROMETHEUS}\n"
                  f"# add a job istio-mesh with target {service}.{ns}:{MIXER_PROMETHEUS_PORT}, then\n"
                  f"kubectl -n {ns} delete pod -l app={PROMETHEUS}")


@check(id="prometheus.targets-up", title="Prometheus scrapes Mixer successfully",
       section="verify-prometheus-configuration", generations=MIXER_ERA,
       inputs=lambda istio: (_config_map(istio.namespace), *mixer_metrics_inputs(istio)),
       signatures=("/api/v1/targets", "istio-mesh", ":42422", "health: down", ":9090", "up == 0"))
def targets_up(ctx: Context):
    """Asks Prometheus' HTTP API for its active targets and expects Mixer's port 42422 among them, up."""
    ns = ctx.istio.namespace
    if ctx.get(_config_map(ns)) is None:
        return skipped(f"the Prometheus add-on is not installed (no ConfigMap {ns}/{PROMETHEUS})")
    try:
        answer = json.loads(body(ctx, prometheus_targets(ns)))
        active = answer["data"]["activeTargets"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputUnavailable(BadPayload(f"GET {prometheus_targets(ns)} is not a targets answer: {exc}")) from None
    mixer = [t for t in active if f":{MIXER_PROMETHEUS_PORT}/" in str(t.get("scrapeUrl", ""))]
    lines = [f'{t.get("labels", {}).get("job", "?")} {t.get("scrapeUrl")} {t.get("health")}'
             + (f' ({t["lastError"]})' if t.get("lastError") else "") for t in mixer]
    fix = (f"kubectl -n {ns} port-forward svc/{PROMETHEUS} 9090:9090 &\n"
           "curl -s localhost:9090/api/v1/targets | grep -A3 42422")
    if not mixer:
        return failed(f"Prometheus has no target on Mixer's port {MIXER_PROMETHEUS_PORT}",
                      [f"{len(active)} active targets, none on port {MIXER_PROMETHEUS_PORT}"],
                      "meshbot check prometheus.scrape-config\n" + fix)
    down = [t for t in mixer if t.get("health") != "up"]
    summary = (f"{len(down)} of {len(mixer)} Mixer targets are {down[0].get('health')}: "
               f"{down[0].get('lastError') or 'no error given'}") if down else ""
    if down and len(down) < len(mixer):  # degraded: one Mixer replica, not the pipeline
        return warned(summary, lines, f"kubectl -n {ns} get pods -l istio=mixer -o wide\n" + fix)
    if down:
        serving = _adapter_serving(ctx)
        if serving:
            raise InputUnavailable(BadPayload(
                f"{summary}; yet Mixer's own page shows its Prometheus adapter, which serves that port, taking"
                f" instances ({serving}): the two disagree, and the bot cannot see the path between them"))
        return failed(summary, lines, fix)
    return passed(f"all {len(mixer)} Mixer targets are up", *lines)


def _adapter_serving(ctx: Context) -> str | None:
    """A successful dispatch count to the Prometheus adapter on Mixer's own page, or None (page unreadable too)."""
    try:
        samples = mixer_metrics(ctx)
    except (InputUnavailable, BadPayload):
        return None
    served = adapter_dispatches(samples, ctx.istio)
    return served[0].line() if served else None

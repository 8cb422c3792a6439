"""Small readers shared by several checks."""

from __future__ import annotations

import json
import re

import yaml

from checks import istio as names
from checks.errors import BadPayload, ServerError
from checks.inputs import CONFIGMAPS, Endpoint, Object
from checks.metrics import Sample, parse
from checks.model import Context, InputUnavailable, Istio, Response


def body(ctx: Context, endpoint: Endpoint) -> str:
    """The endpoint's text; a non-200 answer makes the check unable to tell."""
    response: Response = ctx.get(endpoint)
    if response.status != 200:
        raise InputUnavailable(ServerError(response.status, f"GET {endpoint}", _message(response)))
    return response.text()


def _message(response: Response) -> str:
    try:
        return str(json.loads(response.body).get("message", ""))[:200]
    except (ValueError, AttributeError):
        return response.text()[:200].strip()


# Go's Prometheus client exports its process collector on every scrape of a Go component (Mixer, Pilot).
GO_PROCESS_FAMILIES = ("process_start_time_seconds", "go_goroutines")
# Prometheus' parse errors quote the payload (text/template or expfmt): a sign the page itself is damaged.
PARSE_ERROR = re.compile(r"pars|unexpected|invalid|expected|EOF", re.IGNORECASE)


def mixer_metrics_endpoint(istio: Istio) -> Endpoint:
    return Endpoint(istio.namespace, names.telemetry_service(istio), names.monitoring_port(istio), "metrics")


def prometheus_targets(namespace: str) -> Endpoint:
    return Endpoint(namespace, "prometheus", 9090, "api/v1/targets")


def mixer_metrics_inputs(istio: Istio) -> tuple:
    """Mixer's own page, and Prometheus' view of the same page to cross-check it."""
    return mixer_metrics_endpoint(istio), prometheus_targets(istio.namespace)


def mixer_metrics(ctx: Context) -> list[Sample]:
    endpoint = mixer_metrics_endpoint(ctx.istio)
    return parse(body(ctx, endpoint), f"GET {endpoint}", always=GO_PROCESS_FAMILIES)


def absent_from_mixer(ctx: Context, what: str) -> str:
    """Evidence that Mixer's page lacks ``what``, once the page is trusted to be whole: when Prometheus reports
    the same page unparseable, absence proves nothing and the check cannot tell (InputUnavailable)."""
    endpoint = mixer_metrics_endpoint(ctx.istio)
    disagreeing = _prometheus_parse_errors(ctx, names.monitoring_port(ctx.istio))
    if disagreeing:
        raise InputUnavailable(BadPayload(
            f"{endpoint} has no {what}, but Prometheus reports the same page unparseable"
            f" ({disagreeing[0]}): the bot's copy may be incomplete, so its absence proves nothing"))
    return f"no {what} at {endpoint}"


def _prometheus_parse_errors(ctx: Context, port: int) -> list[str]:
    """Mixer targets on ``port`` that Prometheus marks down with a parse error; [] when Prometheus is absent."""
    response = ctx.maybe(prometheus_targets(ctx.istio.namespace))
    if response is None or response.status != 200:
        return []
    try:
        active = json.loads(response.body)["data"]["activeTargets"]
    except (ValueError, KeyError, TypeError):
        return []
    found = []
    for target in active if isinstance(active, list) else []:
        job = str((target.get("labels") or {}).get("job", ""))
        url = str(target.get("scrapeUrl", ""))
        error = str(target.get("lastError") or "")
        if (f":{port}/" in url and ("mixer" in job or "telemetry" in job)
                and target.get("health") != "up" and PARSE_ERROR.search(error)):
            found.append(f"job {job} {url}: {error}")
    return found


def container(deployment: dict | None, name: str) -> dict:
    for c in ((deployment or {}).get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])):
        if c.get("name") == name:
            return c
    return {}


def down_reason(istio: Istio, deployment: str) -> str | None:
    """Why a control-plane deployment cannot answer, or None when it has ready pods."""
    found = istio.deployments.get(deployment)
    if found is None:
        return f"deployment {deployment} does not exist in {istio.namespace}"
    if names.ready_replicas(found) == 0:
        wanted = found.get("spec", {}).get("replicas", 1)
        return f"deployment {deployment} has 0 of {wanted} pods ready"
    return None


def degraded_reason(istio: Istio, deployment: str) -> str | None:
    """Why a control-plane deployment answers with fewer pods than it should, or None when all are ready."""
    found = istio.deployments.get(deployment)
    if found is None:
        return None
    wanted = found.get("spec", {}).get("replicas", 1)
    ready = names.ready_replicas(found)
    return f"only {ready} of {wanted} {deployment} pods are ready" if 0 < ready < wanted else None


def pod_logs_hint(istio: Istio, deployment: str, container_name: str) -> str:
    return (f"kubectl -n {istio.namespace} logs -l {names.pods_of(istio, deployment)}"
            f" -c {container_name} --tail=200")


def duration_seconds(value: object) -> float | None:
    """'1s', '1.000s', '500ms', '1m0s', or a protobuf Duration dict."""
    if isinstance(value, dict):
        return float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9
    text = str(value or "").strip().strip("'\"")
    total, matched = 0.0, False
    for number, unit in re.findall(r"([\d.]+)\s*(ms|h|m|s)", text):
        total += float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
        matched = True
    return total if matched else None


def mesh_config(ctx: Context) -> dict:
    config_map = ctx.get(Object(CONFIGMAPS, ctx.istio.namespace, "istio"))
    if config_map is None:
        raise InputUnavailable(BadPayload(f"ConfigMap {ctx.istio.namespace}/istio (the mesh config) does not exist"))
    try:
        return yaml.safe_load((config_map.get("data") or {}).get("mesh", "")) or {}
    except yaml.YAMLError as exc:
        raise InputUnavailable(BadPayload(f"the mesh config is not YAML: {exc}")) from None

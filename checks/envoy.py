"""Sidecars: crashes under load, refresh-driven CPU, HTTP/1.0 upstreams."""

from __future__ import annotations

import re

from checks.common import duration_seconds, mesh_config, mixer_metrics_endpoint
from checks.errors import BadPayload, ClusterError
from checks.inputs import CONFIGMAPS, POD_METRICS, PODS, SIDECAR, Object, Objects, SidecarLogs, has_sidecar
from checks.metrics import find, parse
from checks.model import (
    ALL_GENERATIONS,
    MIXER_ERA,
    Context,
    Generation,
    InputUnavailable,
    Outcome,
    check,
    failed,
    passed,
    warned,
)

FD_ASSERT = re.compile(r"assert failure: fd_ != -1|Too many open files")
# pilot-agent restarts a crashed Envoy itself (0.5-0.8), so the container never restarts.
EPOCH_CRASH = re.compile(r"Epoch \d+ terminated with an error|Permanent error: budget exhausted")
HTTP10_REJECTED = re.compile(r'HTTP/1\.0" 426\b')
MAX_EVIDENCE = 8


SIDECAR_LOGS = SidecarLogs(tail_lines=300)


def _scan(logs: dict[str, object], pattern: re.Pattern) -> tuple[list[str], list[str], int]:
    """(pods with a match, sample lines, logs that could not be read)."""
    pods, lines, unreadable = [], [], 0
    for pod, text in logs.items():
        if isinstance(text, ClusterError):
            unreadable += 1
            continue
        hits = [line for line in str(text).splitlines() if pattern.search(line)]
        if hits:
            pods.append(pod)
            lines.extend(f"{pod}: {line.strip()}" for line in hits[:2])
    return pods, lines[:MAX_EVIDENCE], unreadable


def _sidecar_logs(ctx: Context) -> dict[str, object]:
    logs = ctx.get(SIDECAR_LOGS)
    if logs and all(isinstance(v, ClusterError) for v in logs.values()):
        raise InputUnavailable(next(iter(logs.values())))
    return logs


def _coverage(logs: dict, unreadable: int) -> str:
    return logs.coverage(unreadable)  # which sidecars were read, of how many, and why those


def _restarted_sidecars(pods: list[dict]) -> list[str]:
    found = []
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            if status.get("name") == SIDECAR and status.get("restartCount", 0) > 0:
                reason = ((status.get("lastState") or {}).get("terminated") or {}).get("reason", "")
                found.append(f'{pod["metadata"]["namespace"]}/{pod["metadata"]["name"]}: '
                             f'{status["restartCount"]} restarts{" (" + reason + ")" if reason else ""}')
    return found


def _fd_limit(ctx: Context) -> str | None:
    """The open-file limit of Mixer's container, read from its process metrics: the runtime's default."""
    if ctx.istio.generation not in MIXER_ERA:
        return None
    response = ctx.maybe(mixer_metrics_endpoint(ctx.istio))
    if response is None or response.status != 200:
        return None
    try:
        limit = find(parse(response.text(), "mixer metrics"), "process_max_fds")
    except BadPayload:
        return None
    return limit[0].line() if limit else None


def _fd_fix(namespace: str, pod: str) -> str:
    return ("# raise the open-file limit of the container runtime on every node, e.g. LimitNOFILE=1048576 in the\n"
            "# docker/containerd systemd unit, then restart it and the affected pods; check with:\n"
            f"kubectl -n {namespace} exec {pod} -c istio-proxy -- sh -c 'ulimit -n'")


def _fd_inputs(istio) -> tuple:
    extra = (mixer_metrics_endpoint(istio),) if istio.generation in MIXER_ERA else ()
    return (Objects(PODS), SIDECAR_LOGS) + extra


@check(id="envoy.fd-exhaustion", title="Sidecars do not crash from running out of file descriptors",
       section="envoy-is-crashing-under-load", generations=ALL_GENERATIONS, inputs=_fd_inputs,
       signatures=("assert failure: fd_ != -1", "Too many open files", "Epoch 0 terminated with an error",
                   "Permanent error: budget exhausted", "CrashLoopBackOff", "restartCount", "ulimit -n", "nofile",
                   "process_max_fds"))
def fd_exhaustion(ctx: Context):
    """Scans sidecar logs for Envoy's file-descriptor assertion and pilot-agent's restarts of a crashed Envoy,
    counts sidecar container restarts, and shows the open-file limit where Mixer's metrics expose it."""
    logs = _sidecar_logs(ctx)
    pods, lines, unreadable = _scan(logs, FD_ASSERT)
    crashed, crash_lines, _ = _scan(logs, EPOCH_CRASH)
    restarts = _restarted_sidecars(ctx.get(Objects(PODS)))
    limit = _fd_limit(ctx)
    coverage = _coverage(logs, unreadable)
    context = [coverage] + ([f"open-file limit seen by the control plane: {limit}"] if limit else [])
    if pods:
        return failed(f"Envoy ran out of file descriptors in {len(pods)} sidecar(s)",
                      lines + crash_lines[:2] + restarts[:3] + context,
                      _fd_fix(*pods[0].split("/", 1)))
    if crashed or restarts:
        who = crashed[0] if crashed else restarts[0].split(":")[0]
        ns, name = who.split("/", 1)
        return warned(f"{len(crashed) + len(restarts)} sidecar(s) restarted Envoy, without a file-descriptor error"
                      " in the recent log", crash_lines + restarts[:MAX_EVIDENCE] + context,
                      f"kubectl -n {ns} logs {name} -c istio-proxy --previous | tail -50")
    return passed(f"no sidecar crashed: {coverage}", *context[1:])


def _sidecar_refresh(pod: dict) -> float | None:
    for c in pod.get("spec", {}).get("containers", []):
        if c.get("name") == SIDECAR:
            args = [str(a) for a in c.get("args") or []]
            for i, arg in enumerate(args):
                if arg.startswith("--discoveryRefreshDelay"):
                    value = arg.split("=", 1)[1] if "=" in arg else (args[i + 1] if i + 1 < len(args) else "")
                    return duration_seconds(value)
    return None


def millicores(quantity: object) -> float | None:
    """A Kubernetes CPU quantity as metrics-server writes it ("250m", "1234567n", "2") in millicores."""
    match = re.fullmatch(r"([\d.]+)([num]?)", str(quantity or "").strip())
    if not match:
        return None
    return float(match[1]) * {"n": 1e-6, "u": 1e-3, "m": 1.0, "": 1000.0}[match[2]]


def hot_sidecars(usage: list[dict], floor: float) -> tuple[list[str], int]:
    """(pods whose istio-proxy burns more CPU than the floor and than its app containers, pods measured)."""
    hot, measured = [], 0
    for pod in usage:
        cpu = {c.get("name"): millicores((c.get("usage") or {}).get("cpu")) for c in pod.get("containers") or []}
        proxy = cpu.pop(SIDECAR, None)
        if proxy is None:
            continue
        measured += 1
        app = sum(v for v in cpu.values() if v is not None)
        if proxy >= floor and proxy > app:
            meta = pod.get("metadata") or {}
            hot.append(f'{meta.get("namespace")}/{meta.get("name")}: istio-proxy {proxy:.0f}m, app {app:.0f}m')
    return hot, measured


@check(id="envoy.refresh-delay", title="Envoy's configuration refresh delay is not too short",
       section="envoy-process-high-cpu-usage", generations={Generation.MIXER_05, Generation.MIXER_08},
       inputs=lambda istio: (Object(CONFIGMAPS, istio.namespace, "istio"), Objects(PODS), Objects(POD_METRICS)),
       signatures=("refreshDelay", "discoveryRefreshDelay", "container_cpu_usage_seconds_total", "cpu",
                   "kubectl top pods --containers"))
def refresh_delay(ctx: Context) -> Outcome:
    """The guide's symptom is measured CPU: reads the sidecars' usage from the metrics API (PodMetrics) against
    the app containers beside them, and gives the refresh delays as the cause when they are shorter than the
    30 s the guide suggests (the mesh config's, and each sidecar's own, fixed at injection). Without a metrics
    API it says what it could not measure instead of guessing from the number of sidecars."""
    mesh = mesh_config(ctx)
    ns = ctx.istio.namespace
    threshold = ctx.settings.refresh_delay_seconds
    mesh_values = {
        "rdsRefreshDelay": duration_seconds(mesh.get("rdsRefreshDelay")),
        "defaultConfig.discoveryRefreshDelay": duration_seconds((mesh.get("defaultConfig") or {}).get(
            "discoveryRefreshDelay")),
    }
    mesh_values = {k: v for k, v in mesh_values.items() if v is not None}
    sidecars = [p for p in ctx.get(Objects(PODS)) if has_sidecar(p)]
    expected = mesh_values.get("defaultConfig.discoveryRefreshDelay")
    stale, short = [], []
    for pod in sidecars:
        value = _sidecar_refresh(pod)
        name = f'{pod["metadata"]["namespace"]}/{pod["metadata"]["name"]}'
        if value is None:
            continue
        if expected is not None and abs(value - expected) > 1e-6:
            stale.append(f"{name}: --discoveryRefreshDelay {value:g}s, mesh says {expected:g}s")
        if value < threshold:
            short.append(name)
    evidence = [f"mesh config {k}: {v:g}s" for k, v in mesh_values.items()]
    if short:
        evidence.append(f"{len(short)} of {len(sidecars)} sidecars poll faster than every {threshold:g}s")
    low = {k: v for k, v in mesh_values.items() if v < threshold}
    cause = bool(low or short)
    fix = (f"kubectl -n {ns} edit configmap istio   # set rdsRefreshDelay and discoveryRefreshDelay to 30s\n"
           f"kubectl -n {ns} delete pods -l istio=pilot\n"
           "# then re-inject every workload so its sidecar starts with the new value:\n"
           + "\n".join(f"kubectl -n {n} rollout restart deployment"
                        for n in sorted({p["metadata"]["namespace"] for p in sidecars})[:5]))
    try:
        usage = ctx.get(Objects(POD_METRICS))
    except InputUnavailable as exc:
        if stale:
            return warned(f"{len(stale)} sidecar(s) run with a refresh delay that differs from the mesh config:"
                          " they were injected before it changed", stale[:MAX_EVIDENCE] + evidence, fix)
        if cause:
            raise InputUnavailable(type(exc.cause)(
                f"sidecar CPU could not be measured ({exc.cause}); the refresh delay is below {threshold:g}s,"
                " which costs Envoy CPU, but whether it does here is not known")
                if isinstance(exc.cause, BadPayload) else exc.cause) from None
        return passed(f"refresh delays are at least {threshold:g}s (sidecar CPU not measured: {exc.cause})",
                      *evidence)
    hot, measured = hot_sidecars(usage, ctx.settings.hot_sidecar_millicores)
    measured_line = (f"metrics API: {len(hot)} of {measured} measured sidecars use more CPU than their app"
                     f" and at least {ctx.settings.hot_sidecar_millicores:g}m")
    if hot and cause:
        return failed(f"{len(hot)} sidecar(s) burn more CPU than their apps, and the refresh delay is below"
                      f" {threshold:g}s: Envoy re-reads its configuration too often",
                      hot[:MAX_EVIDENCE] + [measured_line] + evidence + stale[:3], fix)
    if stale:
        return warned(f"{len(stale)} sidecar(s) run with a refresh delay that differs from the mesh config:"
                      " they were injected before it changed", stale[:MAX_EVIDENCE] + evidence, fix)
    if hot:  # busy with traffic: the section's cause, a configuration polled every second or so, is absent
        return passed(f"{len(hot)} sidecar(s) burn more CPU than their apps, but not from refreshing: the delays are"
                      f" at least {threshold:g}s", measured_line, *hot[:3], *evidence)
    return passed(f"no sidecar burns more CPU than its app ({measured} measured)", measured_line, *evidence)


@check(id="envoy.http10", title="No HTTP/1.0 request is rejected by a sidecar",
       section="envoy-wont-connect-to-my-http10-service", generations=ALL_GENERATIONS,
       inputs=lambda istio: (SIDECAR_LOGS,),
       signatures=('"GET / HTTP/1.0" 426', "426 Upgrade Required", "HTTP/1.0", "proxy_http_version 1.1",
                   "nginx proxy_pass"))
def http10(ctx: Context):
    """Scans sidecar access logs for requests made with HTTP/1.0 that Envoy answered with 426 Upgrade Required,
    the sign of a client or proxy (often NGINX) that speaks HTTP/1.0 to the upstream."""
    logs = _sidecar_logs(ctx)
    pods, lines, unreadable = _scan(logs, HTTP10_REJECTED)
    if not pods:
        return passed(f"no HTTP/1.0 request was rejected: {_coverage(logs, unreadable)}")
    fix = ("# NGINX in front of the service: speak HTTP/1.1 to the upstream\n"
           "#   proxy_http_version 1.1;\n#   proxy_set_header Connection \"\";\n")
    if ctx.istio.generation is Generation.ISTIOD:
        fix += (f"# or let Envoy accept HTTP/1.0:\nkubectl -n {ctx.istio.namespace} set env deployment/istiod"
                " PILOT_HTTP10=1")
    return failed(f"{len(pods)} sidecar(s) rejected HTTP/1.0 requests with 426 Upgrade Required",
                  lines + [_coverage(logs, unreadable)], fix)

"""The Mixer telemetry pipeline: Report calls, configuration, dispatch to Prometheus."""

from __future__ import annotations

from dataclasses import dataclass

from checks import istio as names
from checks.common import (
    absent_from_mixer,
    container,
    down_reason,
    mixer_metrics,
    mixer_metrics_endpoint,
    mixer_metrics_inputs,
    pod_logs_hint,
)
from checks.errors import BadPayload, NotInstalled
from checks.inputs import (
    JOBS,
    MIXER_HANDLERS,
    MIXER_INSTANCES,
    MIXER_METRICS,
    MIXER_PROMETHEUS_HANDLERS,
    MIXER_RULES,
    NAMESPACES,
    Object,
    Objects,
)
from checks.metrics import find
from checks.model import MIXER_ERA, Context, Generation, InputUnavailable, Istio, check, failed, passed, warned

SYSTEM_NAMESPACES = {"kube-system", "kube-public", "kube-node-lease"}


@dataclass(frozen=True)
class MixerRuntime:
    """Self-monitoring metric names, which changed with Mixer's runtime."""

    dispatch: str
    resolve: str | None
    config_errors: tuple[str, ...]


OLD_RUNTIME = MixerRuntime("mixer_adapter_dispatch_count", "mixer_config_resolve_count", ())
NEW_RUNTIME = MixerRuntime("mixer_runtime_dispatch_count", None, (
    "mixer_config_rule_config_error_count",
    "mixer_config_rule_config_match_error_count",
    "mixer_config_unsatisfied_action_handler_count",
    "mixer_config_adapter_info_config_error_count",
    "mixer_handler_handler_build_failure_count",
))
OPENCENSUS_RUNTIME = MixerRuntime("mixer_runtime_dispatches_total", None, (
    "mixer_config_rule_config_errors_total",
    "mixer_config_rule_config_match_error_total",
    "mixer_config_unsatisfied_action_handler_total",
    "mixer_config_adapter_info_config_errors_total",
    "mixer_config_instance_config_errors_total",
    "mixer_config_handler_validation_error_total",
    "mixer_handler_handler_build_failures_total",
))


def runtime(istio: Istio) -> MixerRuntime:
    """0.5 has only the old runtime; 0.6 made the new one default (``--useNewRuntime``); 1.1 renamed its metrics."""
    if istio.at_least(1, 1):
        return OPENCENSUS_RUNTIME
    args = " ".join(container(istio.deployments.get(names.telemetry_service(istio)), "mixer").get("args", []))
    if istio.at_least(0, 6):
        return OLD_RUNTIME if "--useNewRuntime=false" in args else NEW_RUNTIME
    return NEW_RUNTIME if "--useNewRuntime" in args and "--useNewRuntime=false" not in args else OLD_RUNTIME


def _metrics_inputs(istio: Istio) -> tuple:
    return mixer_metrics_inputs(istio)


def _mixer_logs(istio: Istio) -> str:
    return pod_logs_hint(istio, names.telemetry_service(istio), "mixer")


@check(id="mixer.report-calls", title="Mixer receives Report calls",
       section="verify-mixer-is-receiving-report-calls", generations=MIXER_ERA,
       inputs=lambda istio: (*mixer_metrics_inputs(istio), Objects(NAMESPACES)),
       signatures=('grpc_server_handled_total{grpc_method="Report"}', "grpc_code", ":9093", ":42422",
                   "istio-telemetry", "istio-mixer", "Report"))
def report_calls(ctx: Context):
    """Reads Mixer's self-monitoring endpoint and counts Report calls that ended OK: none means the sidecars
    are not sending telemetry (not injected, or pointed at the wrong Mixer address)."""
    service = names.telemetry_service(ctx.istio)
    down = down_reason(ctx.istio, service)
    if down:
        return failed(f"Mixer cannot receive Report calls: {down}", [down],
                      f"kubectl -n {ctx.istio.namespace} describe deployment {service}\n{_mixer_logs(ctx.istio)}")
    samples = mixer_metrics(ctx)
    reports = find(samples, "grpc_server_handled_total", grpc_method="Report")
    ok = sum(s.value for s in reports if s.labels.get("grpc_code") == "OK")
    lines = [s.line() for s in reports]
    if ok > 0:
        return passed(f"{service} has handled {ok:g} successful Report calls", *lines)
    others = _report_traces(samples, ctx.istio)
    if others:  # the same page says Reports arrive: the handled counter is what is wrong, not the sidecars
        raise InputUnavailable(BadPayload(
            f"{mixer_metrics_endpoint(ctx.istio)} shows no successful Report in grpc_server_handled_total, but "
            f"{others[0]}: the page contradicts itself, so it cannot tell whether sidecars report"))
    if reports:
        return failed(f"{service} receives Report calls but none succeeded", lines, _mixer_logs(ctx.istio))
    uninjected = sorted(
        ns["metadata"]["name"] for ns in ctx.maybe(Objects(NAMESPACES), [])
        if ns["metadata"]["name"] not in SYSTEM_NAMESPACES | {ctx.istio.namespace}
        and (ns["metadata"].get("labels") or {}).get("istio-injection") != "enabled"
    )
    evidence = [absent_from_mixer(ctx, 'grpc_server_handled_total{grpc_method="Report"} series')]
    fix = ["kubectl get namespace -L istio-injection"]
    if uninjected:
        evidence.append("namespaces without istio-injection=enabled: " + ", ".join(uninjected))
        fix += [f"kubectl label namespace {ns} istio-injection=enabled" for ns in uninjected[:5]]
        fix.append("# then restart the workloads so their pods get a sidecar:")
        fix += [f"kubectl -n {ns} rollout restart deployment" for ns in uninjected[:5]]
    fix.append(f"kubectl -n {ctx.istio.namespace} get configmap istio -o jsonpath='{{.data.mesh}}' | grep -i mixer")
    return failed("Mixer has not received any Report call: no sidecar is reporting telemetry", evidence,
                  "\n".join(fix))


def adapter_dispatches(samples: list, istio: Istio) -> list:
    """Successful dispatches to the Prometheus adapter on Mixer's page: only Report calls feed it."""
    return [s for s in find(samples, runtime(istio).dispatch, adapter="prometheus", error="false") if s.value > 0]


def _report_traces(samples: list, istio: Istio) -> list[str]:
    """Other series on Mixer's page that only move when Report calls arrive (gRPC's own counters of the method,
    dispatches to the adapters, which only Reports feed)."""
    traces = [f"{s.line()}" for name in ("grpc_server_started_total", "grpc_server_msg_received_total",
                                         "grpc_server_handling_seconds_count")
              for s in find(samples, name, grpc_method="Report") if s.value > 0]
    traces += [s.line() for s in adapter_dispatches(samples, istio)][:1]
    return traces


def _handler_kinds(istio: Istio) -> tuple:
    found = [Objects(MIXER_RULES), Objects(MIXER_PROMETHEUS_HANDLERS), Objects(MIXER_METRICS)]
    if istio.at_least(1, 1):
        found += [Objects(MIXER_HANDLERS), Objects(MIXER_INSTANCES)]
    return tuple(found)


# The instances every release installs for the standard HTTP and TCP metrics (promhttp and promtcp send them).
DEFAULT_INSTANCES = ("requestcount", "requestduration", "requestsize", "responsesize", "tcpbytesent",
                     "tcpbytereceived")

Key = tuple[str, str, str]  # (name, kind, namespace) of a Mixer object


def _ref(reference: str, namespace: str, default_kind: str) -> Key:
    """Mixer's ``name[.kind[.namespace]]`` reference as (name, kind, namespace)."""
    parts = reference.split(".")
    name = parts[0]
    kind = parts[1] if len(parts) > 1 else default_kind
    return name, kind, ".".join(parts[2:]) or namespace


def _key(obj: dict, kind: str) -> Key:
    return obj["metadata"]["name"], kind, obj["metadata"].get("namespace", "")


def _show(key: Key) -> str:
    return ".".join(key)


def _instances(ctx: Context) -> set[Key]:
    found = {_key(o, "metric") for o in ctx.get(Objects(MIXER_METRICS))}
    if ctx.istio.at_least(1, 1):  # 1.1 moved templates into generic `instance` objects
        found |= {_key(o, "instance") for o in ctx.get(Objects(MIXER_INSTANCES))
                  if (o.get("spec") or {}).get("compiledTemplate") == "metric"}
    return found


def _prometheus_handlers(ctx: Context) -> dict[Key, dict[Key, str]]:
    """Each Prometheus handler and the instances it turns into metrics ({instance: Prometheus name})."""
    handlers: list[tuple[dict, str, list]] = [(h, "prometheus", (h.get("spec") or {}).get("metrics") or [])
                                              for h in ctx.get(Objects(MIXER_PROMETHEUS_HANDLERS))]
    if ctx.istio.at_least(1, 1):
        handlers += [(h, "handler", ((h.get("spec") or {}).get("params") or {}).get("metrics") or [])
                     for h in ctx.get(Objects(MIXER_HANDLERS))
                     if (h.get("spec") or {}).get("compiledAdapter") == "prometheus"]
    found = {}
    for handler, kind, metrics in handlers:
        key = _key(handler, kind)
        found[key] = {_ref(m.get("instance_name", ""), key[2], "metric"): m.get("name", "?")
                      for m in metrics if isinstance(m, dict) and m.get("instance_name")}
    return found


@check(id="mixer.metrics-config", title="Mixer rules, Prometheus handler and metric instances exist",
       section="verify-mixer-metrics-configuration-exists", generations=MIXER_ERA, inputs=_handler_kinds,
       signatures=("prometheuses.config.istio.io", "metrics.config.istio.io", "rules.config.istio.io", "promhttp",
                   "promtcp", "requestcount", "handler.prometheus"))
def metrics_config(ctx: Context):
    """Follows each default metric instance the way Mixer does: a rule sends it to a Prometheus handler that
    exists and maps it to a metric name. An instance nothing routes, a handler that does not map it, or a
    reference to an object that does not exist, is a metric that never appears in Prometheus. Reads both
    layouts: `metric` and `prometheus` kinds (0.5-1.0), generic `instance` and `handler` objects (1.1+)."""
    try:
        rules = ctx.get(Objects(MIXER_RULES))
        instances = _instances(ctx)
        handlers = _prometheus_handlers(ctx)
    except InputUnavailable as exc:
        if isinstance(exc.cause, NotInstalled):
            return failed(f"Mixer's configuration kinds are missing: {exc.cause}", [str(exc.cause)],
                          "kubectl get crd | grep config.istio.io\n"
                          f"# re-apply the CRDs from the Istio {ctx.istio.version} release manifest")
        raise
    ns = ctx.istio.namespace
    problems: list[str] = []
    routes: dict[Key, list[tuple[str, Key]]] = {}  # instance -> (rule, Prometheus handler) that send it
    for rule in rules:
        rule_ns = rule["metadata"].get("namespace", "")
        rule_name = f"{rule_ns}/{rule['metadata']['name']}"
        for action in (rule.get("spec") or {}).get("actions") or []:
            handler = _ref(action.get("handler", ""), rule_ns, "handler")
            sent = [_ref(i, rule_ns, "metric") for i in action.get("instances") or []]
            if handler[1] == "prometheus" and handler not in handlers:
                problems.append(f"rule {rule_name} sends to handler {_show(handler)}, which does not exist")
            if handler not in handlers:
                continue  # another adapter (stdio, kubernetesenv...) is not this check's concern
            for key in sent:
                if key[1] in ("metric", "instance") and key not in instances:
                    problems.append(f"rule {rule_name} sends instance {_show(key)}, which does not exist")
                routes.setdefault(key, []).append((rule_name, handler))
    for handler, mapped in handlers.items():
        problems += [f"handler {_show(handler)} maps instance {_show(key)}, which does not exist"
                     for key in mapped if key not in instances]
    paths = []
    for name in DEFAULT_INSTANCES:
        candidates = [k for k in instances if k[0] == name and k[2] == ns]
        if not candidates:
            problems.append(f"default metric instance {name} does not exist in {ns}: its metric never appears")
            continue
        key = candidates[0]
        sent = routes.get(key, [])
        mapped = [(rule, h, handlers[h][key]) for rule, h in sent if key in handlers[h]]
        if mapped:
            rule, handler, metric = mapped[0]
            paths.append(f"{_show(key)} → rule {rule} → {_show(handler)} → {metric}")
        elif sent:
            rule, handler = sent[0]
            problems.append(f"rule {rule} sends {_show(key)} to {_show(handler)}, but that handler does not map it"
                            " to a metric: the adapter drops it")
        else:
            problems.append(f"no rule sends {_show(key)} to a Prometheus handler: its metric never appears")
    counts = f"{len(rules)} rules, {len(handlers)} Prometheus handlers, {len(instances)} metric instances"
    if problems:
        headline = problems[0] if len(problems) == 1 else f"{len(problems)} problems in Mixer's metrics configuration"
        return failed(headline, problems + paths[:3] + [counts], _reapply_config(ctx.istio, ns))
    return passed(f"{counts}; every default metric reaches a Prometheus handler", *paths)


def _reapply_config(istio: Istio, ns: str) -> str:
    lines = ["kubectl get rules.config.istio.io,prometheuses.config.istio.io,metrics.config.istio.io --all-namespaces"]
    if istio.generation is Generation.MIXER_08:
        lines.append(f"kubectl -n {ns} get configmap istio-mixer-custom-resources"
                     " -o jsonpath='{.data.custom-resources\\.yaml}' | kubectl apply -f -")
    else:
        lines.append(f"# re-apply the Mixer configuration section of the Istio {istio.version} release manifest")
    return "\n".join(lines)


@check(id="mixer.config-resolution", title="Mixer resolves its configuration without errors",
       section="verify-mixer-metrics-configuration-exists", generations=MIXER_ERA, inputs=_metrics_inputs,
       signatures=("mixer_config_resolve_count", "mixer_config_rule_config_errors_total",
                   "mixer_config_handler_validation_error_total", "mixer_handler_handler_build_failures_total",
                   'error="true"'))
def config_resolution(ctx: Context):
    """Reads Mixer's configuration health from its self-monitoring metrics, by runtime: resolution counts per
    service on the old runtime (0.5), error gauges of the rule, handler and adapter configuration since 0.6."""
    samples = mixer_metrics(ctx)
    names_in_use = runtime(ctx.istio)
    logs = _mixer_logs(ctx.istio)
    if names_in_use.resolve:
        resolves = find(samples, names_in_use.resolve)
        good = {s.labels.get("target") for s in resolves if s.labels.get("error") == "false" and s.value > 0}
        broken = sorted({s.labels.get("target") for s in resolves
                         if s.labels.get("error") == "true" and s.value > 0} - good)
        if broken:
            return failed(f"Mixer fails to resolve configuration for {len(broken)} service(s): {', '.join(broken)}",
                          [s.line() for s in resolves if s.labels.get("target") in broken], logs)
        if not resolves:
            return warned(f"Mixer has resolved no configuration yet (no {names_in_use.resolve} series)",
                          [absent_from_mixer(ctx, names_in_use.resolve)], logs)
        return passed(f"Mixer resolves configuration for {len(good)} service(s)",
                      *[s.line() for s in resolves][:10])
    always = _always_exported(ctx.istio, names_in_use)
    absent = [name for name in always if not find(samples, name)]
    if absent:  # gauges registered at start-up: their absence is a damaged page, not a healthy configuration
        raise InputUnavailable(BadPayload(
            f"{mixer_metrics_endpoint(ctx.istio)} lacks {', '.join(absent)}, which this Mixer always exports:"
            " the page is incomplete"))
    seen = _current_config([s for name in names_in_use.config_errors for s in find(samples, name)])
    errors = [s for s in seen if s.value > 0]
    if errors:
        return failed(f"Mixer's current configuration has {len(errors)} kind(s) of error",
                      [s.line() for s in errors], logs)
    if not seen:
        return warned("Mixer exposes none of its configuration health metrics",
                      [absent_from_mixer(ctx, "any of " + ", ".join(names_in_use.config_errors))], logs)
    return passed("Mixer's rule, handler and adapter configuration has no errors", *[s.line() for s in seen])


def _always_exported(istio: Istio, names_in_use: MixerRuntime) -> tuple[str, ...]:
    """The configuration gauges the 0.6-1.0 runtime registers at start-up (0.8 added the adapter-info one);
    OpenCensus (1.1+) exports a view only once it was recorded, so nothing is certain there."""
    if names_in_use is not NEW_RUNTIME:
        return ()
    adapter_info = "mixer_config_adapter_info_config_error_count"
    return tuple(n for n in names_in_use.config_errors if n != adapter_info or istio.at_least(0, 8))


def _current_config(samples: list) -> list:
    """Error counters are kept per configuration revision (configID); only the newest one is in force."""
    ids = [int(s.labels["configID"]) for s in samples if s.labels.get("configID", "").isdigit()]
    if not ids:
        return samples
    return [s for s in samples if s.labels.get("configID") == str(max(ids))]


POST_INSTALL_JOB = "istio-mixer-post-install"


@check(id="mixer.post-install-job", title="The job that applies Mixer's configuration succeeded",
       section="verify-mixer-metrics-configuration-exists", generations={Generation.MIXER_08},
       inputs=lambda istio: (Object(JOBS, istio.namespace, POST_INSTALL_JOB), Objects(MIXER_RULES)),
       signatures=("istio-mixer-post-install", "job", "istio-mixer-custom-resources", "BackoffLimitExceeded"))
def post_install_job(ctx: Context):
    """In Istio 0.8 Mixer's default rules, handlers and instances are applied by a post-install Job from a
    ConfigMap; when that Job fails the ConfigMap exists but the configuration does not."""
    ns = ctx.istio.namespace
    job = ctx.get(Object(JOBS, ns, POST_INSTALL_JOB))
    rules = ctx.maybe(Objects(MIXER_RULES), [])
    reapply = (f"kubectl -n {ns} logs job/{POST_INSTALL_JOB}\n"
               f"kubectl -n {ns} get configmap istio-mixer-custom-resources"
               " -o jsonpath='{.data.custom-resources\\.yaml}' | kubectl apply -f -")
    if job is None:
        if rules:
            return passed(f"job {POST_INSTALL_JOB} is gone (removed after success) and {len(rules)} rules exist")
        return failed(f"job {POST_INSTALL_JOB} is missing and no Mixer rule exists",
                      [f"no job {ns}/{POST_INSTALL_JOB}"], reapply)
    status = job.get("status") or {}
    line = (f"job {ns}/{POST_INSTALL_JOB}: succeeded={status.get('succeeded', 0)}"
            f" failed={status.get('failed', 0)} active={status.get('active', 0)}")
    if status.get("succeeded"):
        return passed(f"job {POST_INSTALL_JOB} succeeded", line)
    if status.get("active"):
        return warned(f"job {POST_INSTALL_JOB} is still running", [line],
                      f"kubectl -n {ns} logs job/{POST_INSTALL_JOB}")
    return failed(f"job {POST_INSTALL_JOB} did not succeed: Mixer's default configuration was not applied",
                  [line], reapply)


@check(id="mixer.prometheus-dispatch", title="Mixer dispatches metric instances to the Prometheus adapter",
       section="verify-mixer-is-sending-metric-instances-to-the-prometheus-adapter", generations=MIXER_ERA,
       inputs=_metrics_inputs,
       signatures=('mixer_runtime_dispatch_count{adapter="prometheus"}', "mixer_adapter_dispatch_count",
                   "mixer_runtime_dispatches_total", 'error="true"'))
def prometheus_dispatch(ctx: Context):
    """Counts Mixer's dispatches to the Prometheus adapter, split by error: none means a configuration problem,
    errors point at the handler named in the metric line."""
    metric = runtime(ctx.istio).dispatch
    dispatches = find(mixer_metrics(ctx), metric, adapter="prometheus")
    good = sum(s.value for s in dispatches if s.labels.get("error") == "false")
    bad = [s for s in dispatches if s.labels.get("error") == "true" and s.value > 0]
    lines = [s.line() for s in dispatches]
    logs = _mixer_logs(ctx.istio)
    grep = "Report 0 returned with" if runtime(ctx.istio) is OLD_RUNTIME else "Report failed"
    if not dispatches or (good == 0 and not bad):
        return failed("Mixer has dispatched nothing to the Prometheus adapter",
                      [absent_from_mixer(ctx, f'{metric}{{adapter="prometheus"}} with a count')],
                      "meshbot check mixer.metrics-config\n" + logs)
    if bad:
        handlers = sorted({s.labels.get("handler", "?") for s in bad})
        status = failed if good == 0 else warned
        return status(f"dispatches to the Prometheus adapter fail for handler {', '.join(handlers)}",
                      lines, f"{logs} | grep '{grep}'")
    return passed(f"Mixer has dispatched {good:g} metric batches to the Prometheus adapter", *lines)

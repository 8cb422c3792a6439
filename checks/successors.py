"""Old-guide checks on an istiod mesh: which modern check answers their section now (one skip line each)."""

from __future__ import annotations

from checks.model import Generation, Istio, Outcome, skipped

# old check id → (why it does not run on istiod, the check that answers the section today)
SUCCESSORS = {
    "pilot.registration": ("Pilot's v1 registration API is gone with Pilot", "control-plane.proxies-connected"),
    "mixer.report-calls": ("Mixer is gone: proxies report metrics themselves", "telemetry.proxy-metrics"),
    "mixer.metrics-config": ("Mixer is gone: metrics are configured with the Telemetry API", "telemetry.proxy-metrics"),
    "mixer.config-resolution": ("Mixer is gone", "telemetry.proxy-metrics"),
    "mixer.post-install-job": ("Mixer is gone", "telemetry.proxy-metrics"),
    "mixer.prometheus-dispatch": ("Mixer is gone: Prometheus scrapes the proxies", "telemetry.prometheus-scrape"),
    "prometheus.scrape-config": ("Prometheus scrapes pods by annotation, not Mixer", "telemetry.prometheus-scrape"),
    "prometheus.targets-up": ("Prometheus scrapes pods by annotation, not Mixer", "telemetry.prometheus-scrape"),
    "mtls.headless-tcp": ("certificates arrive over SDS; rotation no longer restarts Envoy", "security.certificates"),
    "envoy.refresh-delay": ("xDS pushes replaced v1 polling", "config.xds-rejects"),
    "envoy.fd-exhaustion": ("answered for istiod proxies (native sidecars included)", "proxies.crashes"),
    "envoy.http10": ("answered from istio_requests_total on the proxies", "proxies.http10"),
    "injection.webhook-certs": ("istiod patches its webhooks' CA bundle", "injection.webhook-ca"),
    "injection.apiserver-proxy": ("injection now fails closed (FailedCreate)", "injection.failed-create"),
}


def superseded(check_id: str, istio: Istio) -> Outcome | None:
    """The one-line skip of an old check on an istiod mesh, or None."""
    if istio.generation is not Generation.ISTIOD or check_id not in SUCCESSORS:
        return None
    why, successor = SUCCESSORS[check_id]
    return skipped(f"{why}; on this istiod mesh see {successor}")


def successor_groups(report_results, istio: Istio) -> list[str] | None:
    """When every result is an old check skipped on istiod (``/mesh check mixer`` on a modern mesh), the groups of
    the checks that answer those sections today, in order; else None."""
    if istio.generation is not Generation.ISTIOD or not report_results:
        return None
    if any(r.check not in SUCCESSORS or r.status.value != "skip" for r in report_results):
        return None
    return list(dict.fromkeys(SUCCESSORS[r.check][1].split(".", 1)[0] for r in report_results))

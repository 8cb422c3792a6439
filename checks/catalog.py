"""Every check, in one ordered list (the order of the guide)."""

from checks import clock, envoy, injection, mixer, mtls, pilot, prometheus
from checks.modern_catalog import MODERN_CHECKS

ALL_CHECKS = (
    pilot.pilot_registration,
    clock.node_skew,
    envoy.http10,
    clock.client_skew,
    mixer.report_calls,
    mixer.metrics_config,
    mixer.config_resolution,
    mixer.post_install_job,
    mixer.prometheus_dispatch,
    prometheus.scrape_config,
    prometheus.targets_up,
    envoy.fd_exhaustion,
    mtls.headless_tcp,
    envoy.refresh_delay,
    injection.webhook_certs,
    injection.apiserver_proxy,
) + MODERN_CHECKS

GROUPS = frozenset(c.group for c in ALL_CHECKS)

"""The istiod-era checks, in the order of the "Common problems" pages (appended to the catalogue)."""

from checks import ambient, detect, istiod, modern_injection, modern_proxies, modern_traffic
from checks.analyzers.all import ANALYZERS

MODERN_CHECKS = (
    detect.detect,
    istiod.istiod_ready,
    istiod.proxies_connected,
    modern_injection.selectors,
    modern_injection.failed_create,
    modern_injection.webhook_ca,
    modern_proxies.version_skew,
    modern_proxies.crashes,
    modern_proxies.http10,
    modern_traffic.destination_rule_tls,
    istiod.xds_rejects,
    modern_injection.validation_webhook,
    modern_proxies.certificates,
    modern_proxies.proxy_metrics,
    modern_proxies.prometheus_scrape,
    ambient.mtls_plaintext,
    ambient.node_agents,
    ambient.captured,
    ambient.hbone_policy,
    ambient.waypoints,
) + ANALYZERS

"""The istiod-era checks, in the order of the "Common problems" pages (appended to the catalogue)."""

from checks import detect, istiod

MODERN_CHECKS = (
    detect.detect,
    istiod.istiod_ready,
    istiod.proxies_connected,
    istiod.xds_rejects,
)

"""Helpers of the deployment checks: where things are, which variants exist, how to find objects."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
NAMESPACE = "meshbot"
KUBECONFIG_DIR = "/etc/meshbot/kubeconfigs"

# name → (resources, components), paths relative to deploy/
VARIANTS: dict[str, tuple[list[str], list[str]]] = {
    "socket": (["overlays/socket"], []),
    "http": (["overlays/http"], []),
    "socket-external-redis": (["overlays/socket"], ["components/external-redis"]),
    "http-external-redis-hpa": (["overlays/http"], ["components/external-redis", "components/worker-hpa"]),
    "remote-cluster": (["remote-cluster"], []),
}
MESHBOT_VARIANTS = [v for v in VARIANTS if v != "remote-cluster"]


def tool(name: str, *candidates: Path | str | None) -> str:
    """The path of a tool: the first candidate that exists, else PATH; missing fails in CI, else skips."""
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed (scripts/test installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def find(objects: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[dict], kind: str, name: str) -> dict:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_specs(objects: list[dict]) -> list[tuple[str, dict]]:
    """(Kind/name, pod spec) of every workload."""
    specs = []
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            specs.append((f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"]))
        elif o["kind"] == "CronJob":
            specs.append((f"CronJob/{o['metadata']['name']}", o["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
        elif o["kind"] == "Pod":
            specs.append((f"Pod/{o['metadata']['name']}", o["spec"]))
    return specs

"""Shared fixtures of the deployment checks: deploy/ rendered by the real kubectl.

Every variant a user can deploy is rendered: the two overlays, each with the optional components
(external Redis, worker HPA) layered on by a throw-away kustomization, and the kit for remote
clusters. Tools that CI installs (kubectl, checkov, hadolint) are required when CI=true and
skipped with a reason otherwise.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from deploykit import DEPLOY, VARIANTS, tool


@pytest.fixture(scope="session")
def kubectl() -> str:
    return tool("kubectl", os.environ.get("KUBECTL"), "/usr/bin/kubectl")


@pytest.fixture(scope="session")
def rendered(kubectl, tmp_path_factory) -> dict[str, list[dict]]:
    """variant → the objects `kubectl kustomize` renders for it."""
    work = tmp_path_factory.mktemp("kustomize")
    out: dict[str, list[dict]] = {}
    for name, (resources, components) in VARIANTS.items():
        if not components:
            target = DEPLOY / resources[0]
        else:  # a kustomization of the user's own, as deploy/README.md shows
            target = work / name
            target.mkdir()
            def rel(path: str, target: Path = target) -> str:  # kustomize refuses absolute paths
                return os.path.relpath(DEPLOY / path, target)

            (target / "kustomization.yaml").write_text(yaml.safe_dump({
                "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                "resources": [rel(p) for p in resources], "components": [rel(p) for p in components],
            }))
        proc = subprocess.run([kubectl, "kustomize", str(target)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"kubectl kustomize {name} failed:\n{proc.stderr}"
        out[name] = [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
        assert out[name], f"{name} rendered nothing"
    return out


@pytest.fixture(scope="session")
def rendered_dir(rendered, tmp_path_factory) -> Path:
    """Every variant written as one file, for scanners that read a directory."""
    folder = tmp_path_factory.mktemp("rendered")
    for name, objects in rendered.items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))
    return folder

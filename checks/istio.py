"""Which Istio runs here, and what its components are called in that version."""

from __future__ import annotations

from checks.inputs import DEPLOYMENTS, Objects
from checks.model import Generation, Istio

# Deployments whose image tag names the control plane's version, best first.
VERSION_SOURCES = ("istiod", "istio-pilot", "istio-telemetry", "istio-mixer", "istio-policy")


def deployments_input(namespace: str) -> Objects:
    return Objects(DEPLOYMENTS, namespace)


ISTIOD_ANYWHERE = Objects(DEPLOYMENTS, None, "app=istiod")


async def find_istiod(gatherer) -> str | None:
    """The namespace of an istiod found by its label anywhere, or None (the default one is istio-system)."""
    found = (await gatherer.gather([ISTIOD_ANYWHERE]))[ISTIOD_ANYWHERE]
    if isinstance(found, Exception) or not found:
        return None
    return sorted(d["metadata"]["namespace"] for d in found)[0]


def detect(namespace: str, deployments: list[dict]) -> Istio:
    by_name = {d["metadata"]["name"]: d for d in deployments}
    # revisioned control planes are istiod-<rev> (a canary upgrade runs several): the default one first
    sources = VERSION_SOURCES + tuple(sorted(n for n in by_name if n.startswith("istiod-")))
    version = next((v for name in sources if (v := _image_tag(by_name.get(name)))), None)
    return Istio(namespace, version, _generation(by_name, version), by_name)


def _image_tag(deployment: dict | None) -> str | None:
    if not deployment:
        return None
    for container in deployment["spec"]["template"]["spec"].get("containers", []):
        image = container.get("image", "")
        if container.get("name") == "istio-proxy" or ":" not in image.rsplit("/", 1)[-1]:
            continue
        tag = image.rsplit(":", 1)[1]
        return tag if tag[:1].isdigit() else None
    return None


def _generation(by_name: dict, version: str | None) -> Generation | None:
    if any(name == "istiod" or name.startswith("istiod-") for name in by_name):
        return Generation.ISTIOD
    if "istio-telemetry" in by_name or "istio-policy" in by_name:
        return Generation.MIXER_08 if (version or "").startswith("0.8") else Generation.MIXER_1X
    if "istio-mixer" in by_name or "istio-pilot" in by_name:
        return Generation.MIXER_05
    return None


def telemetry_service(istio: Istio) -> str:
    """The Mixer that receives Report calls."""
    return "istio-mixer" if istio.generation is Generation.MIXER_05 else "istio-telemetry"


def monitoring_port(istio: Istio) -> int:
    return 15014 if istio.at_least(1, 1) else 9093


def ca_deployment(istio: Istio) -> str:
    return "istio-ca" if istio.generation is Generation.MIXER_05 else "istio-citadel"


def injector_service(istio: Istio) -> str:
    return "istiod" if istio.generation is Generation.ISTIOD else "istio-sidecar-injector"


def ready_replicas(deployment: dict | None) -> int:
    return int(((deployment or {}).get("status") or {}).get("readyReplicas") or 0)


def pods_of(istio: Istio, deployment: str) -> str:
    """A kubectl selector for a deployment's pods, for fix commands."""
    labels = ((istio.deployments.get(deployment) or {}).get("spec", {}).get("selector") or {}).get("matchLabels")
    if not labels:
        labels = (istio.deployments.get(deployment) or {}).get("spec", {}).get("template", {}).get(
            "metadata", {}).get("labels", {})
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or f"app={deployment}"

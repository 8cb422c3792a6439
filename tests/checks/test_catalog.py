"""Meta-tests over the catalogue: ids, sections, help text, inputs, and coverage of the guide."""

import re
from pathlib import Path

import pytest

from checks.catalog import ALL_CHECKS, GROUPS
from checks.istio import detect
from checks.model import Context, Generation, Istio, Settings
from checks.runner import UnknownTarget, select

GUIDE = Path(__file__).parents[2].parent / "shared/guides/istio-troubleshooting.md"


def test_ids_are_unique_dotted_and_grouped():
    ids = [c.id for c in ALL_CHECKS]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][a-z-]*\.[a-z0-9-]+", i) for i in ids)
    old = {"mixer", "pilot", "prometheus", "envoy", "injection", "mtls", "clock"}
    modern = {"control-plane", "proxies", "injection", "traffic", "security", "telemetry", "ambient", "config"}
    assert old <= GROUPS <= old | modern  # modern: DESIGN.md's groups for istiod meshes


def test_every_check_has_help_text_and_a_title():
    for c in ALL_CHECKS:
        assert len(c.description) > 40, c.id
        assert c.title and c.title[0].isupper(), c.id


@pytest.mark.skipif(not GUIDE.exists(), reason="the shared guide is not beside the repository")
def test_every_section_of_the_guide_is_checked_or_answered_and_checks_cite_real_sections():
    import knowledge

    guide = {s.id for s in knowledge.load_index([str(GUIDE)], include_builtin=False).sections}
    pages = sorted(str(p) for p in (GUIDE.parent / "istio-common-problems").glob("[!_]*.md") if p.name[0].islower())
    common = {s.id for s in knowledge.load_index(pages, include_builtin=False).sections}
    checked = {c.section for c in ALL_CHECKS}
    answered_only = {"where-are-the-metrics-for-my-service", "how-can-i-debug-issues-with-the-service-mesh",
                     "with-istioctl", "with-gdb", "with-tcpdump"}
    assert checked <= guide | common
    assert guide <= checked | answered_only


def test_targets_select_groups_ids_and_all():
    assert [c.id for c in select(["pilot"])] == ["pilot.registration"]
    assert {c.group for c in select(["mixer", "clock.node-skew"])} == {"mixer", "clock"}
    assert len(select(["all"])) == len(ALL_CHECKS)
    with pytest.raises(UnknownTarget) as raised:
        select(["envoy.fd"])
    assert raised.value.suggestion == "envoy.fd-exhaustion"


def test_a_check_reads_only_the_inputs_it_declared():
    # Context.get refuses undeclared inputs; the scenario grid runs every check through it, where such a
    # read would surface as a "crashed" error and fail the grid. This shows the refusal itself.
    check = next(c for c in ALL_CHECKS if c.id == "pilot.registration")
    ready_pilot = {"istio-pilot": {"status": {"readyReplicas": 1}}}
    istio = Istio("istio-system", "0.8.0", Generation.MIXER_08, ready_pilot)
    context = Context(istio, Settings(), values={}, declared=frozenset())
    with pytest.raises(KeyError, match="was not declared"):
        check.run(context)


def _deployment(name, image):
    return {"metadata": {"name": name}, "spec": {"template": {"spec": {"containers": [
        {"name": "istio-proxy", "image": "docker.io/istio/proxy:9.9"}, {"name": "main", "image": image}]}}}}


@pytest.mark.parametrize("deployments, version, generation", [
    ([_deployment("istio-mixer", "docker.io/istio/mixer:0.5.1"), _deployment("istio-pilot", "istio/pilot:0.5.1")],
     "0.5.1", Generation.MIXER_05),
    ([_deployment("istio-telemetry", "docker.io/istio/mixer:0.8.0"), _deployment("istio-pilot", "istio/pilot:0.8.0")],
     "0.8.0", Generation.MIXER_08),
    ([_deployment("istio-telemetry", "gcr.io/istio-release/mixer:1.1.0"),
      _deployment("istio-pilot", "gcr.io/istio-release/pilot:1.1.0")], "1.1.0", Generation.MIXER_1X),
    ([_deployment("istiod", "docker.io/istio/pilot:1.20.3")], "1.20.3", Generation.ISTIOD),
    ([], None, None),
])
def test_version_and_generation_come_from_the_control_plane(deployments, version, generation):
    istio = detect("istio-system", deployments)
    assert (istio.version, istio.generation) == (version, generation)

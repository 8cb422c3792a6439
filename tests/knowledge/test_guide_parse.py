from pathlib import Path

import pytest

from knowledge import GuideError, load_index, parse_guide, slugify

SHARED_SECTIONS = [
    ("verifying-connectivity-to-istio-pilot", None),
    ("no-traces-appearing-in-zipkin-when-running-istio-locally-on-mac", None),
    ("envoy-wont-connect-to-my-http10-service", None),
    ("no-grafana-output-when-connecting-from-a-local-web-client-to-istio-remotely-hosted", None),
    ("where-are-the-metrics-for-my-service", None),
    ("verify-mixer-is-receiving-report-calls", "where-are-the-metrics-for-my-service"),
    ("verify-mixer-metrics-configuration-exists", "where-are-the-metrics-for-my-service"),
    (
        "verify-mixer-is-sending-metric-instances-to-the-prometheus-adapter",
        "where-are-the-metrics-for-my-service",
    ),
    ("verify-prometheus-configuration", "where-are-the-metrics-for-my-service"),
    ("how-can-i-debug-issues-with-the-service-mesh", None),
    ("with-istioctl", "how-can-i-debug-issues-with-the-service-mesh"),
    ("with-gdb", "how-can-i-debug-issues-with-the-service-mesh"),
    ("with-tcpdump", "how-can-i-debug-issues-with-the-service-mesh"),
    ("envoy-is-crashing-under-load", None),
    ("headless-tcp-services-losing-connection-from-istiofied-containers", None),
    ("envoy-process-high-cpu-usage", None),
    ("kubernetes-webhook-setup-script-files-are-missing-from-05-release-package", None),
    ("automatic-sidecar-injection-will-fail-if-the-kube-apiserver-has-proxy-settings", None),
]


def test_slug_contract_example():
    assert slugify("Envoy won't connect to my HTTP/1.0 service") == "envoy-wont-connect-to-my-http10-service"
    assert slugify("Where are the metrics for my service?") == "where-are-the-metrics-for-my-service"


def test_link_in_heading_keeps_text_drops_url():
    guide = parse_guide("### With [istioctl](https://istio.io/docs/x.html#a%20b)\n\ntext\n")
    assert guide.sections[0].id == "with-istioctl"
    assert guide.sections[0].title == "With istioctl"


def test_shared_guide_every_heading_is_a_section_with_its_parent(guide_path):
    guide = parse_guide(Path(guide_path).read_text(), source=guide_path)
    assert [(s.id, s.parent) for s in guide.sections] == SHARED_SECTIONS
    assert guide.url == "https://istio.io/help/troubleshooting/"
    pilot = guide.sections[0]
    assert pilot.url == "https://istio.io/help/troubleshooting/#verifying-connectivity-to-istio-pilot"
    assert any("v1/registration" in code for code in pilot.code_blocks)


def test_liquid_tags_dropped_and_home_resolved_with_configurable_base():
    text = "---\ntitle: T\n---\n{% include home.html %}\n## A\n\nSee [docs]({{home}}/docs/x.html).\n"
    guide = parse_guide(text, home="https://mirror.example")
    block = guide.sections[0].blocks[0]
    assert block.mrkdwn == "See <https://mirror.example/docs/x.html|docs>."
    assert "{%" not in guide.sections[0].text


def test_base_url_from_front_matter_or_given():
    text = "---\ndocs_url: /help/runbook/\n---\n## Step one\n\nx\n"
    assert parse_guide(text).sections[0].url == "https://istio.io/help/runbook/#step-one"
    given = parse_guide(text, base_url="https://wiki.example/mesh")
    assert given.sections[0].url == "https://wiki.example/mesh#step-one"


def test_team_runbook_file_without_front_matter(tmp_path):
    runbook = tmp_path / "runbook.md"
    runbook.write_text("# Payments mesh runbook\n\n## Ledger pods lose mTLS\n\nRestart the ledger.\n")
    index = load_index([str(runbook)], include_builtin=False)
    section = index.section("ledger-pods-lose-mtls")
    assert section.parent == "payments-mesh-runbook"
    assert section.url == runbook.resolve().as_uri() + "#ledger-pods-lose-mtls"


def test_several_guides_at_once(guide_path, tmp_path):
    runbook = tmp_path / "team.md"
    runbook.write_text("## Ledger pods lose mTLS\n\nRestart the ledger.\n")
    index = load_index([guide_path, str(runbook)])
    assert index.section("with-gdb") and index.section("ledger-pods-lose-mtls")


def test_duplicate_headings_get_numbered():
    guide = parse_guide("## Fix\n\na\n\n## Fix\n\nb\n")
    assert [s.id for s in guide.sections] == ["fix", "fix-1"]


def test_guide_without_headings_is_an_error():
    with pytest.raises(GuideError, match="no headings"):
        parse_guide("just a paragraph\n", source="notes.md")


def test_bad_front_matter_is_a_warning_naming_file_and_line():
    guide = parse_guide("---\ntitle: [unclosed\n---\n## A\n", source="bad.md")
    assert [s.id for s in guide.sections] == ["a"]
    assert guide.warnings[0].startswith("bad.md:") and "front matter" in guide.warnings[0]

"""istio.io's current "Common problems" pages: Hugo Markdown, one guide of several pages."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import knowledge.guide
from knowledge import load_index, parse_guide

# Level 2 and 3 headings of each page, by the DESIGN.md rule; {#…} anchors are the id.
MODERN_IDS = {
    "injection": [
        "the-result-of-sidecar-injection-was-not-what-i-expected", "pods-cannot-be-created-at-all",
        "x509-certificate-related-errors", "errors-in-deployment-status",
        "automatic-sidecar-injection-fails-if-the-kubernetes-api-server-has-proxy-settings",
        "limitations-for-using-tcpdump-in-pods", "cluster-is-not-scaled-down-automatically",
        "pod-or-containers-start-with-network-issues-if-istio-proxy-is-not-ready"],
    "network-issues": [
        "requests-are-rejected-by-envoy", "route-rules-dont-seem-to-affect-traffic-flow",
        "503-errors-after-setting-destination-rule", "route-rules-have-no-effect-on-ingress-gateway-requests",
        "envoy-is-crashing-under-load", "envoy-wont-connect-to-my-http10-service",
        "503-error-while-accessing-headless-services", "tls-configuration-mistakes", "sending-https-to-an-http-port",
        "gateway-mismatch", "double-tls",
        "404-errors-occur-when-multiple-gateways-configured-with-same-tls-certificate",
        "configuring-sni-routing-when-not-sending-sni", "unchanged-envoy-filter-configuration-suddenly-stops-working",
        "virtual-service-with-fault-injection-and-retrytimeout-policies-not-working-as-expected"],
    "observability-issues": [
        "no-traces-appearing-in-zipkin-when-running-istio-locally-on-mac", "missing-grafana-output",
        "verify-istio-cni-pods-are-running-if-used"],
    "security-issues": [
        "end-user-authentication-fails", "authorization-is-too-restrictive-or-permissive",
        "make-sure-there-are-no-typos-in-the-policy-yaml-file",
        "make-sure-you-are-not-using-http-only-fields-on-tcp-ports",
        "make-sure-the-policy-is-applied-to-the-correct-target",
        "pay-attention-to-the-action-specified-in-the-policy", "ensure-istiod-accepts-the-policies",
        "ensure-istiod-distributes-policies-to-proxies-correctly", "ensure-proxies-enforce-policies-correctly",
        "keys-and-certificates-errors", "mutual-tls-errors"],
    "upgrade-issues": [
        "envoyfilter-migration", "use-telemetry-api-for-metrics-customization",
        "use-the-wasmplugin-api-for-wasm-data-plane-extensibility",
        "use-gateway-topology-to-set-the-number-of-the-trusted-hops",
        "use-gateway-topology-to-enable-proxy-protocol-on-the-ingress-gateways",
        "use-a-proxy-annotation-to-customize-the-histogram-bucket-sizes"],
    "validation": [
        "seemingly-valid-configuration-is-rejected", "invalid-configuration-is-accepted",
        "creating-configuration-fails-with-x509-certificate-errors",
        "creating-configuration-fails-with-no-such-hosts-or-no-endpoints-available-errors"],
}
SHARED = {"envoy-is-crashing-under-load", "envoy-wont-connect-to-my-http10-service",
          "no-traces-appearing-in-zipkin-when-running-istio-locally-on-mac"}
BASE = "https://istio.io/latest/docs/ops/common-problems/"


def test_every_page_parses_into_the_expected_sections(modern_path):
    for page, ids in MODERN_IDS.items():
        path = Path(modern_path) / f"{page}.md"
        guide = parse_guide(path.read_text(), source=str(path))
        assert [s.id for s in guide.sections] == ids, page
        assert guide.warnings == (), page


def test_yaml_comment_in_a_text_block_under_a_list_item_is_code(modern_path):
    path = Path(modern_path) / "validation.md"
    guide = parse_guide(path.read_text(), source=str(path))
    accepted = next(s for s in guide.sections if s.id == "invalid-configuration-is-accepted")
    assert any("validatingwebhookconfiguration" in code.lower() for code in accepted.code_blocks)
    x509 = next(s for s in guide.sections if s.id == "creating-configuration-fails-with-x509-certificate-errors")
    assert any("kubectl get clusterrole istiod-istio-system" in c for c in x509.code_blocks)
    assert all("{{<" not in s.text for s in guide.sections)


def test_cli_answers_from_validation_page(modern_path):
    out = subprocess.run([sys.executable, "-m", "bot.cli", "ask", "--guide", str(Path(modern_path) / "validation.md"),
                          "--json", "x509 certificate signed by unknown authority when I kubectl apply"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    top = json.loads(out.stdout)["matches"][0]
    assert top["section"] == "creating-configuration-fails-with-x509-certificate-errors"


def test_explicit_anchor_is_the_id():
    guide = parse_guide("## Double TLS (TLS origination for a TLS request) {#double-tls}\n\ntext\n")
    assert guide.sections[0].id == "double-tls"
    assert guide.sections[0].title == "Double TLS (TLS origination for a TLS request)"
    assert guide.sections[0].url.endswith("#double-tls")
    assert guide.sections[0].aliases == ("double-tls-tls-origination-for-a-tls-request",)


def test_shortcodes_become_code_wrappers_vanish_and_links_resolve():
    text = ("## A problem\n\n{{< tip >}}\nA {{< gloss >}}sidecar{{< /gloss >}} tip.\n{{< /tip >}}\n\n"
            "See [curl]({{< github_tree >}}/samples/curl) and [the other page](../injection/#x).\n\n"
            "{{< text bash >}}\n$ istioctl analyze\n# not a heading\n{{< /text >}}\n")
    section = parse_guide(text, base_url=BASE + "validation/").sections[0]
    assert section.code_blocks == ("$ istioctl analyze\n# not a heading\n",)
    assert "A sidecar tip." in section.text
    assert "https://github.com/istio/istio/tree/master/samples/curl" in section.text
    assert BASE + "injection/#x" in section.text


def test_unreadable_parts_are_warnings_with_file_and_line(tmp_path, monkeypatch):
    page = tmp_path / "broken.md"
    page.write_text("---\ntitle: B\n---\n## Fine\n\nok\n\n## Open block\n\n{{< text bash >}}\n$ kubectl get pods\n")
    index = load_index([str(page)], include_builtin=False)
    assert index.section("open-block").code_blocks == ("$ kubectl get pods\n",)
    assert index.warnings == (f"{page}:10: a {{{{< text >}}}} block is never closed; read it to the end of its "
                              "list item or section",)

    real = knowledge.guide._blocks

    def fragile(tokens, page_url, home):
        if any("ok" in t.content for t in tokens if t.type == "inline"):
            raise IndexError("list index out of range")
        return real(tokens, page_url, home)

    monkeypatch.setattr(knowledge.guide, "_blocks", fragile)
    index = load_index([str(page)], include_builtin=False)
    assert index.section("fine").blocks == () and index.section("open-block").blocks
    assert f"{page}:4: could not read the text of \"Fine\"" in index.warnings[0]


def test_bad_front_matter_is_a_warning_not_a_failure(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("---\ntitle: [unclosed\nweight: 3\n---\n## Still answers\n\ntext\n")
    index = load_index([str(page)], include_builtin=False)
    assert index.section("still-answers")
    [warning] = index.warnings
    assert warning.startswith(f"{page}:") and "front matter is not valid YAML" in warning


def test_folder_is_one_guide_linking_each_section_to_its_page(modern_path):
    index = load_index([modern_path], include_builtin=False)
    ids = [s.id for s in index.sections]
    assert sorted(ids) == sorted(i for page in MODERN_IDS.values() for i in page)
    assert {s.guide for s in index.sections} == {"istio-common-problems"}
    assert index.section("gateway-mismatch").url == BASE + "network-issues/#gateway-mismatch"
    # the rule-derived id still finds the section (istio.io's links use the explicit anchor)
    assert index.section("gateway-to-virtual-service-tls-mismatch").id == "gateway-mismatch"
    assert index.section("missing-grafana-output").url == BASE + "observability-issues/#missing-grafana-output"
    # #### headings are steps of their parent
    assert index.section("gateway-with-tls-termination") is None
    assert "Gateway with TLS passthrough" in index.section("gateway-mismatch").text


def test_both_guides_at_once_shared_headings_are_one_section(both_index):
    ids = [s.id for s in both_index.sections]
    assert len(ids) == len(set(ids))
    for shared in SHARED:
        s = both_index.section(shared)
        assert (s.guide, s.also_in) == ("istio-troubleshooting", ("istio-common-problems",))
        assert s.blocks[-1].plain.startswith("Also in istio-common-problems: ")
        texts = [b.plain for b in s.blocks]
        assert len(texts) == len(set(texts))  # what both guides say alike is quoted once
    old = both_index.ask("mixer report calls grpc_server_handled_total is zero")[0]
    new = both_index.ask("gateway to virtual service tls mismatch")[0]
    assert (old.guide, new.guide) == ("istio-troubleshooting", "istio-common-problems")
    assert new.to_json()["url"] == BASE + "network-issues/#gateway-mismatch"


@pytest.mark.parametrize("question, expected", [
    ("envoy crashing under load, too many open files", "envoy-is-crashing-under-load"),
])
def test_shared_section_answers_with_both_guides(both_index, question, expected):
    match = both_index.ask(question)[0]
    assert match.section == expected
    assert match.to_json()["guides"] == ["istio-troubleshooting", "istio-common-problems"]

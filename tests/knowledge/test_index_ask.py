import pytest

from checks.catalog import ALL_CHECKS
from knowledge import ENTRIES, Match
from knowledge.builtin import DOCS_URL
from knowledge.text import clean_chat


def test_builtin_knowledge_offers_each_check_for_the_section_it_declares(builtin_index):
    for c in ALL_CHECKS:
        assert c.id in builtin_index.section(c.section).checks, c.id


def test_every_builtin_entry_is_a_section_of_the_shared_guide(guide_index):
    for entry in ENTRIES:
        if entry.page != DOCS_URL:
            continue  # a section of the modern pages
        section = guide_index.section(entry.section)
        assert section is not None and section.guide != "builtin", entry.section
        ids = (section.id, *section.aliases)  # a check names it as its section or as one cause's subsection
        assert section.checks == tuple(c.id for c in ALL_CHECKS if c.section == entry.section) + tuple(
            c.id for c in ALL_CHECKS if c.section != entry.section and any(sub in ids for sub, _ in c.subsections))


def test_builtin_only_index_answers_without_any_guide(builtin_index):
    [top, *_] = builtin_index.ask("envoy keeps crashing under load")
    assert top.section == "envoy-is-crashing-under-load"
    assert top.checks == ["envoy.fd-exhaustion", "proxies.crashes"]  # the Mixer-era check and the istiod one
    assert top.url == "https://istio.io/help/troubleshooting/#envoy-is-crashing-under-load"
    assert "ulimit" in top.excerpt


def test_guide_text_gives_excerpt_builtin_gives_checks(guide_index):
    [top, *_] = guide_index.ask("is mixer receiving report calls?")
    assert top.section == "verify-mixer-is-receiving-report-calls"
    assert top.checks == ["mixer.report-calls"]
    assert "grpc_server_handled_total" in top.excerpt
    assert "What meshbot checks" not in top.excerpt


def test_match_json_is_the_cli_contract(guide_index):
    [top, *_] = guide_index.ask("envoy won't connect to my HTTP/1.0 service")
    assert isinstance(top, Match)
    # DESIGN.md's five fields, plus the optional ones it allows a match to add
    assert set(top.to_json()) >= {"section", "title", "score", "excerpt", "checks"}
    assert set(top.to_json()) - {"section", "title", "score", "excerpt", "checks"} <= {"guide", "guides", "url"}
    assert top.to_json()["section"] == "envoy-wont-connect-to-my-http10-service"
    assert 0 < top.score <= 1


def test_clean_chat_strips_slack_markup():
    text = "<@U123> <!here> see <#C1|incidents> and <https://x.example/a|the doc> `kubectl` :fire: &lt;pod&gt;"
    assert clean_chat(text).split() == ["see", "and", "the", "doc", "kubectl", "<pod>"]
    assert clean_chat("at 21:51:03 fd_ != -1: impl.cc:58").split() == [
        "at",
        "21:51:03",
        "fd_",
        "!=",
        "-1:",
        "impl.cc:58",
    ]


@pytest.mark.parametrize(
    "question",
    [
        "<@U024BE7LH> envoy crashing under load :fire:",
        "`envoy` *crashing* under load <#C024BE7LR|incident-42>",
        "envoy crashing under load <https://grafana.example/d/1|dashboard>",
    ],
)
def test_slack_formatting_does_not_change_the_answer(guide_index, question):
    assert guide_index.ask(question)[0].section == "envoy-is-crashing-under-load"


@pytest.mark.parametrize(
    "question, section",
    [
        ("envoy crashng undr heavy laod", "envoy-is-crashing-under-load"),
        ("verify promethues configuraton", "verify-prometheus-configuration"),
        ("no traces in zipkn on mac", "no-traces-appearing-in-zipkin-when-running-istio-locally-on-mac"),
    ],
)
def test_typos_are_corrected(guide_index, question, section):
    assert guide_index.ask(question)[0].section == section


@pytest.mark.parametrize(
    "question",
    ["anyone up for lunch?", "how do I configure a VirtualService canary split", "thanks!", ""],
)
def test_off_topic_gets_no_answer(guide_index, builtin_index, question):
    assert guide_index.ask(question) == []
    assert builtin_index.ask(question) == []


def test_limit_and_order(guide_index):
    matches = guide_index.ask("no metrics in prometheus from mixer", limit=2)
    assert 1 <= len(matches) <= 2
    assert [m.score for m in matches] == sorted((m.score for m in matches), reverse=True)

"""The /mesh grammar: pure text → request, with a suggestion for anything else."""

import pytest

from handlers.grammar import (
    AskRequest,
    CheckRequest,
    ClustersRequest,
    DigestListRequest,
    DigestNowRequest,
    DigestSubscribeRequest,
    DigestUnsubscribeRequest,
    HelpRequest,
    Invalid,
    ListRequest,
    parse,
)

TARGETS = {"all", "mixer", "pilot", "envoy", "mixer.report-calls", "envoy.fd-exhaustion"}
CLUSTERS = {"prod", "staging"}


@pytest.mark.parametrize("text, expected", [
    ("", HelpRequest()),
    ("help", HelpRequest()),
    ("HELP me", HelpRequest()),
    ("clusters", ClustersRequest()),
    ("list", ListRequest()),
    ("check mixer", CheckRequest(("mixer",))),
    ("check Mixer pilot mixer", CheckRequest(("mixer", "pilot"))),
    ("check mixer.report-calls on prod", CheckRequest(("mixer.report-calls",), "prod")),
    ("  check   all   ON   staging ", CheckRequest(("all",), "staging")),
    ("check envoy deep", CheckRequest(("envoy",), None, deep=True)),
    ("check Deep envoy mixer on prod", CheckRequest(("envoy", "mixer"), "prod", deep=True)),
    ("check envoy on prod deep", CheckRequest(("envoy",), "prod", deep=True)),
    ("ask why is mixer   slow?", AskRequest("why is mixer slow?")),
    ("digest list", DigestListRequest()),
    ("digest now", DigestNowRequest()),
    ("digest NOW prod", DigestNowRequest("prod")),
    ('digest subscribe "0 9 * * 1-5"', DigestSubscribeRequest("0 9 * * 1-5")),
    ('digest subscribe " 0  9 * * 1-5 " prod, staging prod',
     DigestSubscribeRequest("0 9 * * 1-5", ("prod", "staging"))),
    ("digest subscribe \u201c0 9 * * *\u201d staging", DigestSubscribeRequest("0 9 * * *", ("staging",))),
    ("digest unsubscribe s3", DigestUnsubscribeRequest("s3")),
])
def test_valid_commands(text, expected):
    assert parse(text, TARGETS, CLUSTERS) == expected


@pytest.mark.parametrize("text, says", [
    ("chek mixer", "Did you mean `/mesh check mixer`?"),
    ("clustrs", "Did you mean `/mesh clusters`?"),
    ("check mixr", "Did you mean `mixer`?"),
    ("check envoy.fd-exhaustin", "Did you mean `envoy.fd-exhaustion`?"),
    ("check mixer on prd", "Did you mean `/mesh check mixer on prod`?"),
    ("check mixer on", "Name one cluster after `on`"),
    ("check mixer on prod staging", "Name one cluster after `on`"),
    ("check", "Say what to check"),
    ("check on prod", "Say what to check"),
    ("check deep", "Say what to check"),
    ("ask", "Ask a question after `ask`"),
    ("list everything", "`list` takes no arguments"),
    ("why is mixer not reporting", "Did you mean `/mesh ask why is mixer not reporting`?"),
    ("xyzzy", "I don't know `xyzzy`"),
    ("digest", "`/mesh digest now [CLUSTER]`"),
    ("digest lst", "Did you mean `/mesh digest list`?"),
    ("digest list all", "`digest list` takes no arguments"),
    ("digest now prd", "There is no cluster `prd`. Did you mean `prod`?"),
    ("digest now prod staging", "Name at most one cluster"),
    ("digest subscribe 0 9 * * *", "Put the schedule in quotes"),
    ('digest subscribe "" prod', "Put the schedule in quotes"),
    ('digest subscribe "0 9 * * *" qa', "There is no cluster `qa`"),
    ("digest unsubscribe", "Name one digest"),
])
def test_anything_else_is_invalid_with_a_hint(text, says):
    result = parse(text, TARGETS, CLUSTERS)
    assert isinstance(result, Invalid)
    assert says in result.message


def test_the_canonical_text_parses_back_to_the_same_request():
    for request in (CheckRequest(("mixer", "pilot"), "prod"), CheckRequest(("all",)),
                    CheckRequest(("envoy",), "prod", deep=True), CheckRequest(("all",), deep=True)):
        assert parse(request.text, TARGETS, CLUSTERS) == request


def test_no_clusters_configured_says_so():
    assert "none configured" in parse("check mixer on prod", TARGETS, set()).message


def test_handlers_import_no_kubernetes_http_or_queue_client():
    import subprocess
    import sys

    code = ("import sys, handlers, handlers.grammar; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('kubernetes', 'httpx', 'slack_bolt', 'slack_sdk', 'rq', 'redis') or m in ('checks.cluster', "
            "'checks.gather')))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"

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
    SuppressionsRequest,
    SuppressRequest,
    UnsuppressRequest,
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


CONFIG_TARGETS = TARGETS | {"config", "config.vs-gateways"}


@pytest.mark.parametrize("text, expected", [
    ("check config bookinfo", CheckRequest(("config",), namespace="bookinfo")),
    ("check config bookinfo on prod", CheckRequest(("config",), "prod", namespace="bookinfo")),
    ("check config.vs-gateways istio-system", CheckRequest(("config.vs-gateways",), namespace="istio-system")),
    ("check config", CheckRequest(("config",))),
    ("suppress ist0118 Service default/legacy", SuppressRequest("IST0118", "Service default/legacy")),
    ("suppress IST0139 MutatingWebhookConfiguration istio-sidecar-injector-1-27 for 2w on prod because leftover",
     SuppressRequest("IST0139", "MutatingWebhookConfiguration istio-sidecar-injector-1-27", "prod", 14 * 86400,
                     "leftover")),
    ("suppress MB0001 AuthorizationPolicy shop/cart-admin for 12h", SuppressRequest(
        "MB0001", "AuthorizationPolicy shop/cart-admin", seconds=12 * 3600)),
    ("unsuppress IST0118 Service default/legacy on staging", UnsuppressRequest("IST0118", "Service default/legacy",
                                                                                "staging")),
    ("suppressions", SuppressionsRequest()),
    ("suppressions prod", SuppressionsRequest("prod")),
])
def test_config_commands(text, expected):
    assert parse(text, CONFIG_TARGETS, CLUSTERS) == expected


@pytest.mark.parametrize("text, says", [
    ("check mixer bookinfo", "There is no check or group `bookinfo`"),  # a namespace only narrows config checks
    ("suppress IST0118", "Name the finding by its code and object"),
    ("suppress IST0118 service default/legacy", "Name the finding by its code and object"),
    ("suppress 0118 Service default/legacy", "Name the finding by its code and object"),
    ("suppress IST0118 Service default/legacy for 400d", "from 1 hour to 365 days"),
    ("suppress IST0118 Service default/legacy forever", "I don't understand `forever`"),
    ("suppress IST0118 Service default/legacy on qa", "There is no cluster `qa`"),
    ("unsuppress IST0118 Service default/legacy for 2d", "I don't understand `for`"),
    ("suppressions prod staging", "`suppressions` takes no arguments"),
])
def test_config_commands_that_are_not(text, says):
    result = parse(text, CONFIG_TARGETS, CLUSTERS)
    assert isinstance(result, Invalid) and says in result.message, result


def test_suppression_and_namespaced_check_texts_parse_back_to_the_same_request():
    for request in (CheckRequest(("config",), "prod", namespace="shop"),
                    SuppressRequest("IST0101", "VirtualService default/reviews", "prod", 30 * 86400, "known, fixing"),
                    SuppressRequest("IST0101", "Gateway istio-system/admin", "prod", 36 * 3600),
                    UnsuppressRequest("IST0101", "VirtualService default/reviews", "prod")):
        assert parse(request.text, CONFIG_TARGETS, CLUSTERS) == request


def test_help_lists_the_config_commands():
    usage = parse("help", TARGETS, CLUSTERS)
    from handlers.grammar import USAGE

    assert usage == HelpRequest()
    assert "/mesh check config [NAMESPACE]" in USAGE and "/mesh suppressions [CLUSTER]" in USAGE
    assert "/mesh suppress CODE Kind namespace/name" in USAGE and "/mesh unsuppress" in USAGE

"""The symptom vocabulary comes from the checks' own declarations (@check(signatures=...))."""

from types import SimpleNamespace

import knowledge.index
from checks.catalog import ALL_CHECKS
from knowledge import load_index


def test_every_check_declares_signatures_and_its_section_carries_them(builtin_index):
    for c in ALL_CHECKS:
        assert c.signatures, c.id
        section = builtin_index.section(c.section)
        assert c.id in section.checks
        assert set(c.signatures) <= set(section.signatures), c.id


def test_a_pasted_signature_finds_a_section_whose_text_lacks_it(tmp_path, monkeypatch):
    runbook = tmp_path / "runbook.md"
    runbook.write_text("## Ledger pods lose their database\n\nRestart the ledger and page the DBA.\n\n"
                       "## Payments gateway is slow\n\nScale the gateway.\n")
    fake = SimpleNamespace(id="ledger.db", section="ledger-pods-lose-their-database",
                           signatures=("pq: SSL SYSCALL error: EOF detected", "ledger_db_conn_errors_total"))
    monkeypatch.setattr(knowledge.index, "_all_checks", lambda: (fake,))
    index = load_index([str(runbook)], include_builtin=False)
    assert index.section("ledger-pods-lose-their-database").checks == ("ledger.db",)
    [top] = index.ask("seeing pq: SSL SYSCALL error: EOF detected in the app logs")[:1]
    assert top.section == "ledger-pods-lose-their-database" and top.checks == ["ledger.db"]
    assert index.ask("ledger_db_conn_errors_total keeps climbing")[0].section == "ledger-pods-lose-their-database"


def test_metric_and_port_from_a_declaration_answer(builtin_index):
    assert builtin_index.ask("mixer_config_handler_validation_error_total is 3")[0].section == \
        "verify-mixer-metrics-configuration-exists"
    assert builtin_index.ask("nothing listening on 42422, job_name istio-mesh")[0].section == \
        "verify-prometheus-configuration"


def test_below_the_line_are_suggestions_never_matches(both_index):
    answer = both_index.answer("how do I configure retries and timeouts for a route")
    assert answer.matches == [] and 1 <= len(answer.suggestions) <= 3
    confident = both_index.answer("Envoy is crashing under load")
    assert confident.matches and confident.suggestions == []
    assert both_index.answer("can someone approve my vacation request").to_json() == {"matches": [],
                                                                                     "suggestions": []}


def test_instruction_headings_answer_how_to_questions(both_index):
    # istio.io's upgrade notes are instructions ("Use gateway topology to …"): a how-to is what they answer
    top = both_index.ask("how do I enable PROXY protocol on the ingress gateway")[0]
    assert top.section == "use-gateway-topology-to-enable-proxy-protocol-on-the-ingress-gateways"
    # a problem heading does not answer a tutorial question, however many words they share
    assert both_index.ask("how do I configure retries and timeouts for a route") == []

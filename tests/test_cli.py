"""The `meshbot` command line: the parts not covered by the engine and guide tests."""

import io
import json

from bot.cli import main
from checks.catalog import ALL_CHECKS


def test_ask_from_stdin_answers_every_line_blank_ones_included(monkeypatch, capsys):
    lines = "sidecar keeps restarting when traffic spikes\n\nwhat's for lunch?\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(lines))
    assert main(["ask", "-"]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(answers) == 3
    assert answers[0]["matches"][0]["section"] == "envoy-is-crashing-under-load"
    assert answers[1]["matches"] == [] and answers[2]["matches"] == []
    # DESIGN.md's five fields, plus the optional ones it allows a match to add
    assert {"section", "title", "score", "excerpt", "checks"} <= set(answers[0]["matches"][0]) <= {
        "section", "title", "score", "excerpt", "checks", "guide", "guides", "url"}


def test_checks_json_lists_every_check_with_its_section_and_group(capsys):
    assert main(["checks", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["section"], r["group"]) for r in rows] == [(c.id, c.section, c.group) for c in ALL_CHECKS]


def test_an_unknown_guide_is_one_clear_line_and_exit_2(capsys):
    assert main(["ask", "why", "--guide", "/nonexistent/guide.md"]) == 2
    err = capsys.readouterr().err
    assert "/nonexistent/guide.md" in err and len(err.strip().splitlines()) == 1


def test_ask_json_keeps_matches_confident_and_lists_suggestions_apart(capsys):
    assert main(["ask", "--json", "how do I configure retries and timeouts for a route"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["matches"] == [] and answer["suggestions"]
    assert {"section", "title", "score", "excerpt", "checks"} <= set(answer["suggestions"][0])
    assert main(["ask", "--json", "Envoy is crashing under load"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["matches"][0]["section"] == "envoy-is-crashing-under-load" and answer["suggestions"] == []

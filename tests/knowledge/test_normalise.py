"""Slack markup is normalised in one place (knowledge.text.clean_chat) before ranking."""

import html
from pathlib import Path

import pytest
import yaml

from knowledge.text import clean_chat

EVAL = Path(__file__).parents[2] / "knowledge" / "questions" / "ask_eval.yaml"
DECORATIONS = {
    "mention": lambda q: f"<@U024BE7LH> {q}",
    "channel": lambda q: f"{q} <#C01ABCDEF|inc-mesh>",
    "emoji": lambda q: f":rotating_light: {q} :pray::skin-tone-2: :+1:",
    "bold": lambda q: f"*{q}*",
    "italic": lambda q: f"_{q}_",
    "code span": lambda q: f"`{q}`",
    "code block": lambda q: f"```\n{q}\n```",
    "entities": lambda q: html.escape(q, quote=False),  # Slack sends & < > as entities
}


@pytest.mark.parametrize("kind", DECORATIONS)
def test_markup_does_not_change_the_answer(both_index, kind):
    questions = [q["q"] for q in yaml.safe_load(EVAL.read_text())["questions"]]
    changed = []
    for q in questions:
        plain = [m.section for m in both_index.ask(q)][:1]
        decorated = [m.section for m in both_index.ask(DECORATIONS[kind](q))][:1]
        if kind == "entities" and "<" in q:
            continue  # escaping a real mention makes it text someone typed
        if decorated != plain:
            changed.append((q, plain, decorated))
    assert not changed, changed[:5]


def test_clean_chat_keeps_identifiers_and_code():
    text = "*istiod* _down_ ~maybe~ `grpc_server_handled_total` ```\nkubectl -n istio-system get po\n``` &lt;none&gt;"
    assert clean_chat(text).split() == ["istiod", "down", "maybe", "grpc_server_handled_total", "kubectl", "-n",
                                        "istio-system", "get", "po", "<none>"]
    assert clean_chat(":+1: :white_check_mark::skin-tone-3: done").split() == ["done"]
    assert clean_chat("see <https://x.example/a|the doc>").split() == ["see", "the", "doc"]
    assert clean_chat("<mailto:a@b.example|mail me> <!subteam^S1|@oncall>").split() == ["mail", "me"]

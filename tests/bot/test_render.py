"""Block Kit rendering: Slack's limits are kept, the text fallback exists, buttons carry commands."""

from bot import render
from checks.model import Istio, Result, Status
from checks.runner import Report
from handlers.grammar import CheckRequest, parse
from knowledge import Match

TARGETS = {"mixer", "mixer.report-calls", "envoy.fd-exhaustion"}


def result(status=Status.FAIL, evidence=("line",), fix="kubectl get pods", check="mixer.report-calls"):
    return Result(check, "Mixer receives report calls", "no-metrics", status, "no report calls", evidence, fix)


def check_limits(messages):
    for m in messages:
        assert m.text
        assert len(m.blocks) <= render.MAX_BLOCKS
        for block in m.to_json()["blocks"]:  # to_dict() runs slack_sdk's own validators too
            assert len(block.get("text", {}).get("text", "")) <= render.MAX_SECTION


def test_a_finding_has_status_evidence_guide_link_and_fix():
    [m] = render.finding(result(), "*Guide* says restart", "https://istio.io/help/#no-metrics")
    blocks = str(m.to_json()["blocks"])
    assert "*FAIL* `mixer.report-calls` no report calls" in blocks
    assert "```\\nline\\n```" in blocks and "<https://istio.io/help/#no-metrics|guide: no-metrics>" in blocks
    assert "```\\nkubectl get pods\\n```" in blocks and m.file is None
    assert m.text.startswith("FAIL  mixer.report-calls: no report calls")  # bot.text's fallback


def test_long_evidence_goes_into_a_file_and_long_text_into_several_sections():
    evidence = tuple(f"sample_metric{{pod=\"p-{i}\"}} {i}" * 3 for i in range(400))
    messages = render.finding(result(evidence=evidence, fix="\n".join(["kubectl logs x"] * 400)),
                              "x" * 7000, None)
    check_limits(messages)
    assert messages[-1].file[0] == "mixer.report-calls-evidence.txt"
    assert messages[-1].file[1] == "\n".join(evidence)
    assert sum(len(m.blocks) for m in messages) > 5


def test_more_than_fifty_blocks_become_several_messages():
    quiet = [result(Status.PASS, check=f"c.{i}") for i in range(60)]
    many = render.answer("q", [Match(f"s{i}", "T" * 3000, 1.0, "e" * 2990, ["mixer"], "https://x/") for i in range(30)],
                         ["prod"])
    check_limits(render.passing(quiet) + many)
    assert len(many) > 1 and many[1].text.endswith("(continued)")


def test_finished_run_has_counts_duration_and_a_rerun_button_that_parses_back():
    report = Report("prod", Istio("istio-system", "0.5.1", None), [result(), result(Status.PASS)], 1234)
    m = render.finished(report, CheckRequest(("mixer",), "prod").text)
    assert m.text == "prod (Istio 0.5.1): 1 pass, 1 fail in 1.2s"
    [button] = m.to_json()["blocks"][-1]["elements"]
    assert button["text"]["text"] == "Re-run" and button["action_id"].startswith(render.RUN_ACTION)
    assert parse(button["value"], TARGETS, {"prod"}) == CheckRequest(("mixer",), "prod")


def test_an_answer_offers_one_button_per_usable_cluster():
    match = Match("no-metrics", "No metrics", 0.9, "restart mixer", ["mixer.report-calls"], "https://istio.io/#x")
    [m] = render.answer("why", [match], ["prod", "staging"], asker="U1")
    blocks = m.to_json()["blocks"]
    assert blocks[0]["elements"][0]["text"] == "<@U1> asked: why"
    buttons = blocks[-1]["elements"]
    assert [b["value"] for b in buttons] == ["check mixer.report-calls on prod", "check mixer.report-calls on staging"]
    assert len({b["action_id"] for b in buttons}) == 2  # Slack wants them unique in a message
    assert "No section" in render.answer("?", [], ["prod"])[0].text


def test_evidence_and_fix_cannot_ping_or_link_in_blocks_or_the_text_fallback():
    hostile = '10.0.0.1 "GET /<!channel> HTTP/1.1" 404 "<@U123|bob> & co"'
    messages = render.finding(result(evidence=(hostile,), fix="curl '<!here>'"), None, None, cluster="prod")
    blocks = str([m.to_json()["blocks"] for m in messages])
    assert "<!channel>" not in blocks and "<@U123" not in blocks and "<!here>" not in blocks
    assert "/&lt;!channel&gt; HTTP/1.1" in blocks and "&lt;@U123|bob&gt; &amp; co" in blocks
    assert "curl '&lt;!here&gt;'" in blocks
    for m in messages:
        assert "<!channel>" not in m.text and "<!here>" not in m.text and "<@U123" not in m.text
    assert "&lt;!channel&gt;" in messages[0].text and "&lt;!here&gt;" in messages[0].text
    long = render.finding(result(evidence=(hostile,) * 40), None, None)
    assert "<!channel>" not in str([m.to_json()["blocks"] for m in long]) + "".join(m.text for m in long)
    assert long[-1].file[1].splitlines()[0] == hostile  # the uploaded file is plain text, not mrkdwn


def test_not_sure_answer_lists_up_to_three_sections_with_a_button_each():
    from bot.render import SECTION_ACTION, answer
    from knowledge import load_index

    found = load_index(()).answer("how do I configure retries and timeouts for a route")
    assert found.matches == [] and found.suggestions
    [message] = answer("q", [], ["prod"], suggestions=found.suggestions * 2)  # more than three: three shown
    [actions] = [b for b in message.to_json()["blocks"] if b["type"] == "actions"]
    assert [e["value"] for e in actions["elements"]] == [m.section for m in (found.suggestions * 2)[:3]]
    assert all(e["action_id"].startswith(SECTION_ACTION) for e in actions["elements"])
    assert message.text.startswith("Not sure; closest sections:")


class _Thread:
    def __init__(self):
        self.replies = {}

    def reply(self, key, messages):
        self.replies[key] = messages


def _one_story(simulate, index):
    """The thread reply for mixer.prometheus-dispatch on a cluster where those dispatches fail."""
    from bot import findings
    from checks.cluster import Cluster
    from checks.runner import run, select

    sim, kubeconfig = simulate("istio-0.5.1-dispatch-errors")
    report = run(Cluster.connect("prod", str(kubeconfig)), select(["mixer.prometheus-dispatch"]))
    [finding] = report.results
    assert finding.status is Status.FAIL and finding.fix
    thread = _Thread()
    findings.post(thread, index, report.results)
    [message] = thread.replies["mixer.prometheus-dispatch"]
    check_limits([message])
    return finding, [b["text"]["text"] for b in message.to_json()["blocks"] if "text" in b]


def test_a_finding_reply_tells_one_story_with_one_fix_and_real_names(simulate):
    from knowledge import load_index

    finding, texts = _one_story(simulate, load_index(()))  # built-in knowledge only, no guide configured
    joined = "\n".join(texts)
    summary, evidence, fix, guide = (next(i for i, t in enumerate(texts) if needle in t)
                                     for needle in ("*FAIL*", finding.evidence[0][:30], "*Fix*", "guide: "))
    assert summary < evidence < fix < guide  # the finding, its evidence, the fix, then the guide
    assert joined.count("Fix") == 1 and "<mixer-pod>" not in joined
    assert "-n istio-system" in texts[fix + 1] and "istio=mixer" in texts[fix + 1]  # the check's own, real names
    assert "What meshbot checks" in texts[guide] and "https://istio.io/help/troubleshooting/#" in texts[guide]


def test_with_a_guide_the_excerpt_quotes_its_prose_not_its_placeholder_commands(simulate):
    import os
    from pathlib import Path

    import pytest

    from knowledge import load_index

    guide = Path(os.environ.get("MESHBOT_SHARED_GUIDE") or Path(__file__).parents[3] / "shared/guides/"
                 "istio-troubleshooting.md")
    if not guide.is_file():
        pytest.skip(f"shared guide not found at {guide} (set MESHBOT_SHARED_GUIDE)")
    finding, texts = _one_story(simulate, load_index([str(guide)]))
    guide_at = next(i for i, t in enumerate(texts) if "guide: " in t)
    assert any("*Fix*" in t for t in texts[:guide_at])
    quoted = "\n".join(texts[guide_at:])
    assert "```" not in quoted and "<mixer pod>" not in quoted and "&lt;mixer pod&gt;" not in quoted
    assert "|More: " in quoted  # the excerpt ends with the guide's link

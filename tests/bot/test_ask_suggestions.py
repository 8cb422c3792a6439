"""Below the confidence line the bot says "not sure" with a button per close section; a click answers with it.

Through the real Bolt app (signed requests over HTTP), a real worker process and the Slack stand-in.
"""

import json
from urllib.parse import parse_qsl, urlencode

import slack_requests as sr

VAGUE = "how do I configure retries and timeouts for a route"  # a how-to: never a confident answer


def _buttons(call):
    return [e for b in call.params["blocks"] if b["type"] == "actions" for e in b["elements"]]


def _in_thread(body: str, thread_ts: str) -> str:
    """A click on a message inside a thread: Slack names the thread in the message and the container."""
    payload = json.loads(dict(parse_qsl(body))["payload"])
    payload["message"]["thread_ts"] = payload["container"]["thread_ts"] = thread_ts
    return urlencode({"payload": json.dumps(payload)})


def test_not_sure_reply_has_section_buttons_and_a_click_answers_in_the_thread(configure, serve, slack, worker):
    configure({"prod": {"kubeconfig": "/nowhere"}})
    app = serve()
    worker()
    app.post(sr.event(sr.mention(VAGUE, ts="1700000000.000500")), json_body=True)
    [unsure] = slack.wait_for(lambda s: s.to("chat.postMessage"), timeout=60)
    assert unsure.params["thread_ts"] == "1700000000.000500"
    assert unsure.params["text"].startswith("Not sure; closest sections:")
    buttons = _buttons(unsure)
    assert 1 <= len(buttons) <= 3
    assert all(b["action_id"].startswith("meshbot_section_") for b in buttons)
    assert len({b["action_id"] for b in buttons}) == len(buttons)  # Slack rejects duplicate action ids
    chosen = buttons[0]

    click = sr.click(chosen["value"], slack.response_url, action_id=chosen["action_id"], label=chosen["text"]["text"],
                     message_ts="1700000000.000600")
    assert app.post(_in_thread(click, "1700000000.000500")).status_code == 200
    [_, answer] = slack.wait_for(lambda s: len(s.to("chat.postMessage")) == 2 and s.to("chat.postMessage"),
                                 timeout=60)
    assert answer.params["thread_ts"] == "1700000000.000500"
    assert answer.params["text"].startswith("From the guide: " + chosen["text"]["text"][:40])
    assert "More:" in str(answer.params["blocks"])


def test_a_click_under_a_top_level_answer_replies_in_its_thread(configure, serve, slack, worker):
    configure({"prod": {"kubeconfig": "/nowhere"}})
    app = serve()
    worker()
    app.post(sr.command(f"ask {VAGUE}", slack.response_url))
    [parent] = slack.wait_for(lambda s: s.to("chat.postMessage"), timeout=60)
    assert "thread_ts" not in parent.params and "Not sure" in parent.params["text"]
    chosen = _buttons(parent)[-1]
    ts = "1700000000.000900"  # the parent's ts, as the click reports it
    app.post(sr.click(chosen["value"], slack.response_url, action_id=chosen["action_id"], message_ts=ts))
    [_, answer] = slack.wait_for(lambda s: len(s.to("chat.postMessage")) == 2 and s.to("chat.postMessage"),
                                 timeout=60)
    assert answer.params["thread_ts"] == ts

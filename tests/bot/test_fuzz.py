"""Generated requests against the real Bolt app: no body, header or command text gets a 5xx, and nothing a
user typed comes back able to ping a channel or a person."""

import json
import re
import time

import pytest
import slack_requests as sr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# The server is started once per test and is stateless between examples: each one only posts a request.
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20)
# Shapes Bolt looks into: a field it reads holding the wrong type.
odd_envelopes = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["event_callback", "block_actions", "url_verification", "view_submission"]) | json_values,
    "event": json_values, "team_id": json_values, "user": json_values, "actions": json_values,
    "command": st.just("/mesh") | json_values, "text": json_values, "challenge": json_values,
    "api_app_id": json_values, "authorizations": json_values, "enterprise": json_values})
deeply_nested = st.integers(1, 100_000).map(lambda n: "[" * n + "]" * n)
bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    json_values.map(lambda v: json.dumps(v).encode()),
    odd_envelopes.map(lambda v: json.dumps(v).encode()),
    deeply_nested.map(str.encode),
    json_values.map(lambda v: b"payload=" + json.dumps(v).encode()),
    st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=5).map(
        lambda form: "&".join(f"{k}={v}" for k, v in form.items()).encode()),
)
content_types = st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain", ""])
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=70).map(
    str.strip)  # what an HTTP header can carry
timestamps = st.one_of(st.just(None), header_values, st.integers(-10**12, 10**12).map(str))

BROADCASTS = ["<!channel>", "<!here>", "<!everyone>", "<!subteam^S0123|oncall>", "<@U0EVIL>", "<#C0EVIL>",
              "<!channel|channel>", "<@W123|bob>"]
# What a person types after /mesh: real verbs and arguments mixed with Slack's control sequences.
command_words = st.sampled_from(["check", "ask", "digest", "subscribe", "now", "list", "clusters", "help", "on",
                                 "prod", "mixer", "all", "unsubscribe", '"0 9 * * *"', "chek", "what", "deep"])
command_texts = st.lists(command_words | st.sampled_from(BROADCASTS) | st.text(max_size=12), max_size=7).map(" ".join)
PING = re.compile(r"<[!@#]")


def clusters():
    return {"prod": {"kubeconfig": "/nonexistent"}}


def _answered_below_500(app, response):
    assert response.status_code < 500, (response.status_code, response.text)
    assert app.http.get(app.base + "/healthz").status_code == 200


def test_unsigned_or_forged_requests_of_any_shape_get_a_4xx_and_queue_nothing(configure, serve, jobs):
    configure(clusters(), default_cluster="prod")
    app = serve()

    @FUZZ
    @given(body=bodies, content_type=content_types, timestamp=timestamps,
           signature=st.one_of(st.none(), header_values, st.just("v0=" + "0" * 64)))
    def probe(body, content_type, timestamp, signature):
        headers = {"Content-Type": content_type}
        if timestamp is not None:
            headers["X-Slack-Request-Timestamp"] = timestamp
        if signature is not None:
            headers["X-Slack-Signature"] = signature
        response = app.http.post(app.url, content=body, headers=headers)
        assert 400 <= response.status_code < 500, (response.status_code, body)

    probe()
    _answered_below_500(app, app.http.get(app.base + "/healthz"))
    assert jobs() == []


def test_signed_bodies_of_any_shape_never_get_a_5xx(configure, serve):
    configure(clusters(), default_cluster="prod")
    app = serve()

    @FUZZ
    @given(body=bodies, content_type=content_types)
    def probe(body, content_type):
        timestamp = str(int(time.time()))
        signed = sr.sign(app.secret, body.decode("utf-8", errors="replace"), int(timestamp))
        if body.decode("utf-8", errors="replace").encode() != body:  # not UTF-8: no signature can match it
            signed["X-Slack-Signature"] = "v0=" + "0" * 64
        response = app.http.post(app.url, content=body, headers={"Content-Type": content_type, **signed})
        assert response.status_code < 500, (response.status_code, body)

    probe()
    _answered_below_500(app, app.http.get(app.base + "/healthz"))


def test_an_oversized_body_is_refused_with_413(configure, serve):
    configure(clusters(), default_cluster="prod")
    app = serve()
    body = "text=" + "x" * (2 << 20)
    assert app.post(body).status_code == 413


def test_no_command_text_comes_back_able_to_ping(configure, serve, slack):
    configure(clusters(), default_cluster="prod")
    app = serve()

    @FUZZ
    @given(text=command_texts)
    def probe(text):
        response = app.post(sr.command(text, slack.response_url))
        assert response.status_code == 200, (response.status_code, text)
        assert not PING.search(response.text), (text, response.text)  # the ack is the reply, as plain text

    probe()


@pytest.mark.parametrize("sequence", BROADCASTS)
def test_a_mention_quoting_a_broadcast_is_answered_without_one(configure, serve, slack, sequence):
    configure(clusters(), default_cluster="prod")
    app = serve()
    for text in (f"check {sequence}", f"check mixer on {sequence}", f"digest {sequence}", f"list {sequence}"):
        before = len(slack.to("chat.postMessage"))
        assert app.post(sr.event(sr.mention(text)), json_body=True).status_code == 200
        [reply] = slack.wait_for(lambda stub, seen=before: stub.to("chat.postMessage")[seen:], timeout=10)
        shown = reply.params.get("text", "") + json.dumps(reply.params.get("blocks") or [])
        assert sequence not in shown and not PING.search(reply.params.get("text", "")), shown

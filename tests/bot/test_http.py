"""The real Bolt app over HTTP, with signed requests, the real Redis and the Slack stand-in (no worker)."""

import json
import time

import slack_requests as sr
from conftest import eventually, free_port, spawn, stop, wait_until_healthy
from rq.job import Job
from rq.serializers import JSONSerializer


def clusters(kubeconfig="/nonexistent"):
    return {"prod": {"kubeconfig": kubeconfig},
            "secure": {"kubeconfig": kubeconfig, "allowed_users": ["U_ADMIN"], "allowed_channels": ["C_OPS"]}}


def payload(redis, job_id):
    return Job.fetch(job_id, connection=redis, serializer=JSONSerializer).args[0]


def test_signed_command_is_acked_at_once_and_enqueues_one_json_job(configure, serve, slack, redis, jobs,
                                                                     audit_lines):
    configure(clusters(), default_cluster="prod")
    app = serve()
    started = time.monotonic()
    response = app.post(sr.command("check mixer", slack.response_url))
    assert time.monotonic() - started < 1
    assert response.status_code == 200
    assert "Checking mixer on prod" in response.text
    [job_id] = jobs()
    assert payload(redis, job_id) == {
        "kind": "check", "targets": ["mixer"], "cluster": "prod",
        "origin": {"source": "command", "user": "U1", "channel": "C1", "user_name": "alice", "channel_name": "ops",
                   "team": "T1", "thread_ts": None}}
    assert audit_lines()[-1] == {"who": "U1", "user_name": "alice", "where": "C1", "channel_name": "ops",
                                 "team": "T1", "via": "command", "what": "check mixer on prod", "outcome": "queued",
                                 "job": job_id}


def test_forged_stale_and_unsigned_requests_get_401_and_enqueue_nothing(configure, serve, slack, jobs):
    configure(clusters(), default_cluster="prod")
    app = serve()
    body = sr.command("check mixer", slack.response_url)
    forged = sr.Sender(app.url, "not-the-secret")
    assert forged.post(body).status_code == 401
    assert app.post(body, timestamp=int(time.time()) - 600).status_code == 401
    assert app.post(body, signed=False).status_code == 401
    tampered = sr.sign(app.secret, body)
    assert app.post(body.replace("mixer", "pilot"), signed=False, headers=tampered).status_code == 401
    assert jobs() == []


def test_a_retried_request_enqueues_one_job(configure, serve, slack, jobs, audit_lines):
    configure(clusters(), default_cluster="prod")
    app = serve()
    body = sr.command("check pilot", slack.response_url, trigger_id="trig.same")
    assert app.post(body).status_code == 200
    assert app.post(body, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}).status_code == 200
    event = sr.event(sr.mention("why is mixer not reporting"), event_id="EvSAME")
    for retry in ("0", "1", "2"):
        headers = {"X-Slack-Retry-Num": retry} if retry != "0" else {}
        assert app.post(event, json_body=True, headers=headers).status_code == 200
    # events are handled after the ack: wait until all three deliveries were looked at
    eventually(lambda: [line["outcome"] for line in audit_lines()].count("duplicate") == 3)
    assert len(jobs()) == 2


def test_redis_down_gets_a_fast_clear_ack_and_enqueues_nothing(configure, serve, slack, jobs, audit_lines):
    configure(clusters(), default_cluster="prod")
    app = serve(redis_url="redis://127.0.0.1:1/0")
    started = time.monotonic()
    response = app.post(sr.command("check mixer", slack.response_url))
    assert time.monotonic() - started < 1.5
    assert response.status_code == 200 and "can't reach my job queue (Redis)" in response.text
    assert jobs() == []
    assert audit_lines()[-1]["outcome"] == "queue-down"
    assert app.http.get(app.base + "/readyz").status_code == 503
    assert app.http.get(app.base + "/healthz").status_code == 200


def test_a_hung_redis_still_gets_an_ack_within_slacks_3_seconds(configure, serve, slack, audit_lines, hung_redis):
    configure(clusters(), default_cluster="prod")
    redis_url, accepted = hung_redis  # accepts connections, never answers
    app = serve(redis_url=redis_url)
    started = time.monotonic()
    response = app.post(sr.command("check mixer", slack.response_url))
    assert time.monotonic() - started < 3
    assert accepted.is_set() and "can't reach my job queue (Redis)" in response.text
    assert audit_lines()[-1]["outcome"] == "queue-down"
    # Redis is called on the event loop: the next commands must not each wait out the timeout again
    started = time.monotonic()
    for _ in range(5):
        assert "can't reach my job queue (Redis)" in app.post(sr.command("check mixer", slack.response_url)).text
    assert time.monotonic() - started < 1


def test_health_and_readiness(configure, serve):
    app = serve()
    assert app.http.get(app.base + "/healthz").status_code == 200
    assert app.http.get(app.base + "/readyz").status_code == 200


def test_denied_user_gets_a_clear_reply_an_audit_line_and_no_job(configure, serve, slack, jobs, audit_lines):
    configure(clusters(), default_cluster="prod")
    app = serve()
    response = app.post(sr.command("check mixer on secure", slack.response_url, user="U_OTHER", channel="C_OPS"))
    assert "You can't run checks on `secure`" in response.text
    assert jobs() == []
    assert audit_lines()[-1]["outcome"] == "denied" and audit_lines()[-1]["who"] == "U_OTHER"
    # allowed user, wrong channel: still denied; both right: queued
    app.post(sr.command("check mixer on secure", slack.response_url, user="U_ADMIN", channel="C_RANDOM"))
    assert jobs() == []
    app.post(sr.command("check mixer on secure", slack.response_url, user="U_ADMIN", channel="C_OPS"))
    assert len(jobs()) == 1


def test_clusters_lists_only_what_the_asker_may_use(configure, serve, slack):
    configure(clusters(), default_cluster="prod")
    app = serve()
    assert app.post(sr.command("clusters", slack.response_url)).text == (
        "Clusters you may check from here:\n• `prod` (default)")
    admin = app.post(sr.command("clusters", slack.response_url, user="U_ADMIN", channel="C_OPS")).text
    assert "`secure`" in admin and "`prod` (default)" in admin


def test_malformed_commands_get_a_suggestion_and_run_nothing(configure, serve, slack, jobs, audit_lines):
    configure(clusters(), default_cluster="prod")
    app = serve()
    assert "Did you mean `/mesh check mixer`?" in app.post(sr.command("chek mixer", slack.response_url)).text
    assert "Did you mean `mixer`?" in app.post(sr.command("check mixr", slack.response_url)).text
    assert "Did you mean `/mesh check mixer on prod`?" in app.post(
        sr.command("check mixer on prd", slack.response_url)).text
    assert "Did you mean `/mesh digest list`?" in app.post(sr.command("digest lst", slack.response_url)).text
    assert "/mesh check TARGET" in app.post(sr.command("", slack.response_url)).text
    assert "mixer.report-calls" in app.post(sr.command("list", slack.response_url)).text
    assert jobs() == []
    assert [line["outcome"] for line in audit_lines()] == [
        "invalid", "invalid", "invalid", "invalid", "answered", "answered"]


def test_a_click_makes_the_same_job_as_the_typed_command(configure, serve, slack, redis, jobs, audit_lines):
    configure(clusters(), default_cluster="prod")
    app = serve()
    app.post(sr.command("check mixer on prod", slack.response_url))
    assert app.post(sr.click("check mixer on prod", slack.response_url)).status_code == 200
    # a click is handled after its ack: its reply comes once its job is queued
    reply = slack.wait_for(lambda s: s.to("response_url"))[0]
    assert reply.params["response_type"] == "ephemeral" and "Checking mixer on prod" in reply.params["text"]
    typed, clicked = (payload(redis, j) for j in jobs())
    assert {**typed, "origin": None} == {**clicked, "origin": None}
    assert clicked["origin"]["source"] == "click"
    assert audit_lines()[-1]["via"] == "click"


def test_a_denied_click_is_answered_and_enqueues_nothing(configure, serve, slack, jobs):
    configure(clusters())
    app = serve()
    app.post(sr.click("check mixer on secure", slack.response_url, user="U_OTHER"))
    reply = slack.wait_for(lambda s: s.to("response_url"))[0]
    assert "You can't run checks on `secure`" in reply.params["text"]
    assert jobs() == []


def test_a_mention_enqueues_a_question_answered_in_its_thread(configure, serve, slack, redis, jobs):
    configure(clusters(), default_cluster="prod")
    app = serve()
    app.post(sr.event(sr.mention("mixer reports no metrics", ts="1700000000.000200")), json_body=True)
    [job_id] = eventually(jobs)
    assert payload(redis, job_id)["question"] == "mixer reports no metrics"
    assert payload(redis, job_id)["origin"]["thread_ts"] == "1700000000.000200"
    app.post(sr.event(sr.mention("check mixr")), json_body=True)  # a command by mention, with a typo
    said = slack.wait_for(lambda s: s.to("chat.postMessage"))[0]
    assert "Did you mean `mixer`?" in said.params["text"] and said.params["thread_ts"] == "1700000000.000100"
    assert len(jobs()) == 1


def test_incident_channels_enqueue_questions_without_a_mention_but_never_from_bots(configure, serve, slack, redis,
                                                                                   jobs):
    configure(clusters(), incident={"channel_prefix": "inc-"})
    slack.channel_names = {"C_INC": "inc-42", "C_CHAT": "random"}
    app = serve()
    message = {"type": "message", "user": "U1", "text": "istio-proxy keeps restarting", "ts": "1.1",
               "channel": "C_INC"}
    app.post(sr.event(message), json_body=True)
    app.post(sr.event({**message, "channel": "C_CHAT"}), json_body=True)
    app.post(sr.event({**message, "bot_id": "B2", "user": None}), json_body=True)
    app.post(sr.event({**message, "subtype": "message_changed"}), json_body=True)
    app.post(sr.event({**message, "text": "<@UBOT> hi"}), json_body=True)  # app_mention answers that
    app.post(sr.event({**message, "ts": "1.2"}), json_body=True)  # a second question: a second job
    eventually(lambda: len(jobs()) == 2)
    assert sorted(payload(redis, j)["origin"]["thread_ts"] for j in jobs()) == ["1.1", "1.2"]


def test_no_secret_in_any_log_line_or_reply(configure, serve, slack, env, caplog, jobs):
    import logging
    import sys

    from bot.logs import JsonFormatter, secrets_from_env

    caplog.set_level(logging.DEBUG)
    configure(clusters(), default_cluster="prod")
    app = serve()
    for text in ("check mixer", "clusters", "chek", "check mixer on secure", "ask mixer"):
        app.post(sr.command(text, slack.response_url))
    app.post(sr.click("check all", slack.response_url))
    app.post(sr.event(sr.mention("hello")), json_body=True)
    app.post(sr.command("check mixer", slack.response_url), signed=False)
    slack.wait_for(lambda s: s.to("response_url"))  # the click, handled after its ack
    eventually(lambda: any(r.name == "meshbot.audit" and "hello" in r.getMessage() for r in caplog.records))
    secrets = (env["SLACK_BOT_TOKEN"], env["SLACK_SIGNING_SECRET"])
    assert caplog.records
    formatter = JsonFormatter(secrets_from_env(env))  # what a process writes: message, fields and exception
    for record in caplog.records:
        line = formatter.format(record)
        assert not any(s in line for s in secrets), line
        assert json.loads(line)["level"] == record.levelname.lower()
    try:  # an exception whose text carries the token, as a Slack client's error might
        raise RuntimeError(f"POST https://slack.com/api/chat.postMessage?token={env['SLACK_BOT_TOKEN']} failed")
    except RuntimeError:
        record = logging.getLogger("meshbot.test").makeRecord("meshbot.test", logging.ERROR, __file__, 0,
                                                               "failed", (), sys.exc_info())
    line = json.loads(formatter.format(record))
    assert "chat.postMessage?token=[redacted] failed" in line["exc"]
    for call in slack.calls:
        assert not any(s in json.dumps(call.params) for s in secrets)


def test_meshbot_serve_process_binds_the_given_host_and_serves_health(configure, env, slack, tmp_path):
    port = free_port()
    proc = spawn(["serve", "--port", str(port)], env, tmp_path / "serve.log")
    try:
        wait_until_healthy(proc, f"http://127.0.0.1:{port}")
        assert slack.to("auth.test")  # Bolt checked the token at start-up, against SLACK_API_URL
        response = sr.Sender(f"http://127.0.0.1:{port}/slack/events", env["SLACK_SIGNING_SECRET"]).post(
            sr.command("help", slack.response_url))
        assert response.status_code == 200 and "/mesh check TARGET" in response.text
    finally:
        stop(proc)
    log = proc.log_path.read_text()
    assert '"outcome": "answered"' in log and env["SLACK_BOT_TOKEN"] not in log


def test_a_bot_token_slack_refuses_stops_start_up_with_one_clear_line(configure, env, slack, tmp_path):
    slack.fail("auth.test", status=200, error="invalid_auth")
    proc = spawn(["serve", "--port", str(free_port())], env, tmp_path / "serve.log")
    assert proc.wait(30) == 2
    log = proc.log_path.read_text()
    assert "Slack refused SLACK_BOT_TOKEN (invalid_auth)" in log
    assert "Traceback" not in log and env["SLACK_BOT_TOKEN"] not in log

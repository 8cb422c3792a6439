"""Slack request → Bolt app → Redis → a real `meshbot worker` process → the simulated cluster → Slack thread."""

import os
import signal
from pathlib import Path

import slack_requests as sr
from conftest import eventually, finished, parent_posts, replies


def test_check_command_answers_in_a_thread_with_evidence_guide_and_fix(simulate, configure, serve, slack, worker,
                                                                        env):
    sim, kubeconfig = simulate("istio-0.5.1-fd-crash")
    configure({"prod": {"kubeconfig": str(kubeconfig)}}, default_cluster="prod")
    app = serve()
    proc = worker()
    assert "Checking envoy on prod" in app.post(sr.command("check envoy", slack.response_url)).text

    [update] = slack.wait_for(finished, timeout=60)
    [parent] = parent_posts(slack)
    assert parent.params["text"] == "Checking envoy on prod…"
    assert "1 fail" in update.params["text"] and "Istio 0.5.1" in update.params["text"]
    thread = replies(slack)
    assert {c.params["thread_ts"] for c in thread} == {update.params["ts"]}
    [fd] = [c for c in thread if "envoy.fd-exhaustion" in c.params["text"]]
    blocks = str(fd.params["blocks"])
    assert "FAIL" in blocks and "```" in blocks and "istio.io" in blocks and "*Fix*" in blocks
    assert "pass" in thread[-1].params["text"]  # passing checks: one reply, last
    assert parent.headers["Authorization"].startswith("Bearer xoxb-")
    worker_log = eventually(lambda: "Job OK" in Path(proc.log_path).read_text() and Path(proc.log_path).read_text())
    assert env["SLACK_BOT_TOKEN"] not in worker_log and env["SLACK_SIGNING_SECRET"] not in worker_log


def test_rerun_button_runs_the_same_checks_again(simulate, configure, serve, slack, worker):
    sim, kubeconfig = simulate("istio-0.5.1-healthy")
    configure({"prod": {"kubeconfig": str(kubeconfig)}})
    app = serve()
    worker()
    app.post(sr.command("check clock on prod", slack.response_url))
    [done] = slack.wait_for(finished, timeout=60)
    rerun = [e for b in done.params["blocks"] if b["type"] == "actions" for e in b["elements"]][0]
    app.post(sr.click(rerun["value"], slack.response_url, action_id=rerun["action_id"]))
    slack.wait_for(lambda s: len(finished(s)) == 2, timeout=60)
    assert [c.params["text"] for c in parent_posts(slack)] == ["Checking clock on prod…"] * 2


def test_a_mention_is_answered_in_its_thread_with_run_buttons(simulate, configure, serve, slack, worker):
    configure({"prod": {"kubeconfig": "/nowhere"}, "secret": {"allowed_users": ["U9"]}})
    app = serve()
    worker()
    app.post(sr.event(sr.mention("mixer is not receiving any report calls", ts="1700000000.000300")),
             json_body=True)
    [answer] = slack.wait_for(lambda s: s.to("chat.postMessage"), timeout=60)
    assert answer.params["thread_ts"] == "1700000000.000300"
    buttons = [e for b in answer.params["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert buttons and all(b["value"].endswith(" on prod") for b in buttons)  # not "secret": U1 may not use it
    assert buttons[0]["text"]["text"] == "Run these checks on prod"


def test_slack_rate_limit_is_retried_after_retry_after(simulate, configure, serve, slack, worker):
    sim, kubeconfig = simulate("istio-0.5.1-healthy")
    configure({"prod": {"kubeconfig": str(kubeconfig)}})
    slack.fail("chat.postMessage", status=429, times=1, retry_after=1)
    app = serve()
    worker()
    app.post(sr.command("check clock", slack.response_url))
    slack.wait_for(finished, timeout=60)
    posts = slack.to("chat.postMessage")
    assert posts[0].params == posts[1].params  # the 429'd post, then the same post again
    assert len(parent_posts(slack)) == 2 and len(set(c.params["text"] for c in parent_posts(slack))) == 1


def test_a_worker_killed_mid_job_loses_nothing_and_answers_once(job_in_flight, slack, worker):
    _, first = job_in_flight
    horse = int(Path(f"/proc/{first.pid}/task/{first.pid}/children").read_text().split()[0])
    os.kill(first.pid, signal.SIGKILL)  # the whole worker, as when its pod is killed
    os.kill(horse, signal.SIGKILL)
    first.wait()
    assert not finished(slack)

    worker()
    [done] = slack.wait_for(finished, timeout=120)
    assert "fail" in done.params["text"]
    assert len(parent_posts(slack)) == 1  # the re-run updated the parent, did not post another
    assert any("again" in c.params["text"] for c in slack.to("chat.update"))
    texts = [c.params["text"] for c in replies(slack)]
    assert len(texts) == len(set(texts))  # every reply exactly once
    assert any("envoy.fd-exhaustion" in t for t in texts)


def test_deep_reads_every_sidecar_and_its_rerun_button_stays_deep(simulate, configure, serve, slack, worker):
    sim, kubeconfig = simulate("istio-0.5.1-envoy-restarts")
    configure({"prod": {"kubeconfig": str(kubeconfig)}}, default_cluster="prod")
    app = serve()
    worker()
    assert "reading every sidecar's log" in app.post(sr.command("check envoy.fd-exhaustion deep",
                                                                slack.response_url)).text
    [done] = slack.wait_for(finished, timeout=60)
    [fd] = [c for c in replies(slack) if "envoy.fd-exhaustion" in c.params["text"]]
    assert "every sidecar (--all-pods)" in str(fd.params["blocks"])
    rerun = [e for b in done.params["blocks"] if b["type"] == "actions" for e in b["elements"]][0]
    assert rerun["value"] == "check envoy.fd-exhaustion deep on prod"


def test_check_mixer_on_an_istiod_mesh_is_one_line_with_a_telemetry_button(simulate, configure, serve, slack, worker):
    sim, kubeconfig = simulate("istio-1.28.0-healthy")
    configure({"prod": {"kubeconfig": str(kubeconfig)}})
    app = serve()
    worker()
    app.post(sr.command("check mixer on prod", slack.response_url))
    [done] = slack.wait_for(lambda s: [c for c in s.to("chat.update") if "is gone there" in c.params["text"]],
                            timeout=60)
    assert "Istio 1.28.0 with istiod: mixer is gone there" in done.params["text"]
    buttons = [e for b in done.params["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert [b["value"] for b in buttons] == ["check telemetry on prod"]
    assert not replies(slack)  # no wall of skips in the thread
    app.post(sr.click(buttons[0]["value"], slack.response_url, action_id=buttons[0]["action_id"]))
    [ran] = slack.wait_for(finished, timeout=60)
    assert "Istio 1.28.0" in ran.params["text"] and "pass" in ran.params["text"]

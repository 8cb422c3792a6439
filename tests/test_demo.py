"""`meshbot demo`, run as a user runs it: a process with nothing configured, on the embedded queue and on Redis."""

import json
import os
import subprocess
import sys

import pytest
import redis as redis_lib

import knowledge
from bot.cli import main as meshbot

CLOSED_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1: the demo embeds its queue
TEST_REDIS = os.environ.get("MESHBOT_TEST_REDIS", "127.0.0.1:6379")
REAL_REDIS_URL = f"redis://{TEST_REDIS}/12"  # a DB of its own
QUESTION = "why are there no traces in zipkin?"
LINES = ["/mesh check mixer", f"@meshbot {QUESTION}"]


def demo(redis_url: str, tmp_path, lines=LINES, stdin: str | None = None, mixer: bool = True) -> str:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLACK_", "MESHBOT_", "PROMETHEUS_")) and k != "FORCE_COLOR"}
    args = [sys.executable, "-m", "bot.cli", "demo", *(["--mixer"] if mixer else [])] + [
        a for line in lines for a in ("--run", line)]
    done = subprocess.run(args, env={**env, "REDIS_URL": redis_url, "NO_COLOR": "1"}, cwd=tmp_path, input=stdin,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def mixer_findings(simulate, capsys):
    """What `meshbot check mixer` finds on the demo's scenario: the thread must show exactly these."""
    _, kubeconfig = simulate("demo-broken-mesh")
    meshbot(["check", "mixer", "--kubeconfig", str(kubeconfig), "--json"])
    results = json.loads(capsys.readouterr().out)["results"]
    findings = [r for r in results if r["status"] in ("fail", "warn", "error")]
    assert findings  # the demo's mesh is broken where `/mesh check mixer` looks
    return findings, [r for r in results if r not in findings]


@pytest.fixture
def real_redis():
    connection = redis_lib.Redis.from_url(REAL_REDIS_URL)
    connection.flushdb()
    yield connection
    connection.flushdb()


def assert_thread_and_answer(out: str, findings, quiet):
    ack = out.index("only visible to you\n  Checking mixer on demo")
    parent = out.index("meshbot · message 1\n  Checking mixer on demo…")
    update = out.index("meshbot · message 1 updated")
    assert ack < parent < update
    thread, after = out[parent:update], out[update:]
    for r in findings:
        assert f"in the thread of message 1\n      {'🔴' if r['status'] == 'fail' else '🟡'} {r['status'].upper()} " \
               f"`{r['check']}` {r['summary']}" in thread
        assert r["evidence"][0] in thread  # evidence, in a code block
        assert "│ " + r["fix"].splitlines()[0] in thread  # the fix, as code to paste
        assert f"https://istio.io/help/troubleshooting/#{r['section']}" in thread  # the guide's section
    for r in quiet:
        assert f"`{r['check']}` {r['summary']}" in thread
    assert f"{len(findings)} fail" in after.splitlines()[1] and "Istio 0.5.1" in after.splitlines()[1]
    assert "[1 Re-run]" in after

    [best, *_] = knowledge.load_index([]).ask(QUESTION)
    answer = out[out.index(f"you › @meshbot {QUESTION}"):]
    assert "in your thread" in answer
    assert f"{best.title} ({best.url})" in answer
    assert "[2 Run these checks on demo]" in answer


def test_demo_on_the_embedded_queue(tmp_path, mixer_findings):
    out = demo(CLOSED_REDIS_URL, tmp_path)
    assert "Queue: embedded (no Redis answered at 127.0.0.1:1/0)" in out
    assert_thread_and_answer(out, *mixer_findings)


def test_demo_on_a_real_redis_with_a_worker_process(tmp_path, mixer_findings, real_redis):
    out = demo(REAL_REDIS_URL, tmp_path)
    assert f"Queue: Redis at {TEST_REDIS}/12, with a `meshbot worker` process" in out
    assert_thread_and_answer(out, *mixer_findings)
    assert len(real_redis.zrange("rq:finished:meshbot", 0, -1)) == 2  # both lines were jobs run by the worker
    assert not real_redis.smembers("rq:workers")  # and the worker has gone


def test_demo_reads_lines_typed_at_its_prompt_and_buttons_can_be_clicked(tmp_path):
    out = demo(CLOSED_REDIS_URL, tmp_path, lines=[], stdin="/mesh check clock\nclick 1\nhello\nquit\n")
    assert out.count("Checking clock on demo…") >= 4  # two acks, two parents: the click ran it again
    assert "meshbot · message 4 updated" in out and "[2 Re-run]" in out
    assert "FAIL `clock.node-skew`" in out
    assert "meshbot only hears /mesh and @meshbot here" in out


def test_the_demo_shows_an_istiod_mesh_by_default(tmp_path, simulate, capsys):
    _, kubeconfig = simulate("demo-modern-mesh")
    meshbot(["check", "proxies", "--kubeconfig", str(kubeconfig), "--json"])
    failing = [r for r in json.loads(capsys.readouterr().out)["results"] if r["status"] == "fail"]
    out = demo(CLOSED_REDIS_URL, tmp_path, lines=["/mesh check proxies", "/mesh check mixer"], mixer=False)
    assert "Istio 1.28.0" in out and failing
    for r in failing:
        assert f"FAIL `{r['check']}` {r['summary']}" in out
    assert "mixer is gone there" in out and "[2 Check telemetry]" in out

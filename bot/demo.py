"""`meshbot demo`: the whole bot on one machine, with nothing configured.

It starts a simulated Kubernetes cluster running a broken Istio mesh (the kubesim
scenario ``demo-modern-mesh``, istiod; with --mixer ``demo-broken-mesh``, 0.5.1), a job
queue (the Redis at REDIS_URL when one answers, with a real `meshbot worker` process; else an
embedded stand-in: fakeredis
and RQ's in-process SimpleWorker, since a forking worker cannot share fakeredis),
the real Bolt app over HTTP on loopback, and the Slack stand-in (bot.slackstub) as
the app's Web API. What the user types is sent to the app as Slack would send it,
signed; what the app and worker post to "Slack" is printed as Slack would show it.
The handlers, jobs, checks and renderer are production's; nothing is canned.
Colours and emoji exist only here, in the terminal's rendering of Block Kit.
"""

from __future__ import annotations

import html
import itertools
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import httpx
import redis as redis_lib
import yaml
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

import kubesim
from bot import logs, slackstub
from bot import queue as jobqueue
from bot.config import DEFAULT_REDIS_URL, Secrets, load_config

SCENARIOS = {"modern": "demo-modern-mesh", "mixer": "demo-broken-mesh"}  # istiod by default; --mixer for 0.5.1
CLUSTER = "demo"
CHANNEL, CHANNEL_NAME, USER, USER_NAME = "C0DEMO", "mesh-demo", "U0YOU", "you"
ANSWER_SECONDS = 150.0  # a job's timeout (bot.queue.JOB_TIMEOUT) plus the worker's start-up
DONE = (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED)
HELP = """Type what you would type in Slack:
  /mesh check all                                run every check on the demo cluster
  /mesh check proxies   /mesh check mixer   /mesh list   /mesh help
  @meshbot why are there no traces in zipkin?    ask; the answer comes in your thread
  click N                                        press the button shown as [N label]
  quit"""

log = logging.getLogger("meshbot.demo")


def main(args) -> int:
    with ExitStack() as stack:
        demo = Demo(stack, sys.stdout, SCENARIOS["mixer" if args.mixer else "modern"])
        stack.callback(os.dup2, os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        if args.run:
            ok = [demo.say(line) for line in args.run]
            return 0 if all(ok) else 1
        demo.repl()
    return 0


class Demo:
    def __init__(self, stack: ExitStack, out, scenario: str):
        self.term = Terminal(out)
        self.dir = Path(tempfile.mkdtemp(prefix="meshbot-demo-"))
        self.failed = False  # when a line failed, its logs are kept for a look
        stack.callback(lambda: self.failed or shutil.rmtree(self.dir, ignore_errors=True))
        logfile = stack.enter_context(open(self.dir / "demo.log", "a"))
        logs.configure(stream=logfile)  # the terminal is Slack's; the JSON logs go to a file

        sim = kubesim.Simulator(kubesim.load(scenario)).start()
        stack.callback(sim.stop)
        kubeconfig = sim.write_kubeconfig(self.dir / "kubeconfig")
        config = self.dir / "meshbot.yaml"
        config.write_text(yaml.safe_dump({"clusters": {CLUSTER: {"kubeconfig": str(kubeconfig)}},
                                          "default_cluster": CLUSTER}))
        self.slack = slackstub.SlackStub().start()
        stack.callback(self.slack.stop)
        self.slack.listeners.append(self.term.show)
        # The demo's own Slack credentials: random, used only between this process, its worker and the stand-in.
        self.signing_secret = secrets.token_hex(16)
        env = {"MESHBOT_CONFIG": str(config), "SLACK_BOT_TOKEN": "xoxb-demo-" + secrets.token_hex(8),
               "SLACK_SIGNING_SECRET": self.signing_secret, "SLACK_API_URL": self.slack.api_url}
        os.environ.update(env)  # jobs.context() and Secrets.from_env() read them, in this process and the worker
        redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL

        self.redis = jobqueue.connect(redis_url)
        try:
            self.redis.ping()
            where = _describe(self.redis)
            self._start_worker_process(stack, {**os.environ, "REDIS_URL": redis_url})
            queue_line = f"Redis at {where}, with a `meshbot worker` process"
        except redis_lib.RedisError:
            self.redis = self._start_embedded_worker()
            queue_line = f"embedded (no Redis answered at {_describe(jobqueue.connect(redis_url))})"

        from bot.app import build_app
        from bot.serve import BackgroundServer, web_application

        async def application():
            return web_application(await build_app(load_config(), Secrets.from_env(), redis=self.redis), self.redis)

        server = BackgroundServer(application)
        stack.callback(server.stop)
        self.events_url = f"http://127.0.0.1:{server.port}/slack/events"
        self.http = stack.enter_context(httpx.Client(timeout=10))
        log.info("demo ready: cluster at %s, queue %s", sim.url, queue_line)
        self.term.banner(f"meshbot demo. The cluster `{CLUSTER}` is simulated: {sim.scenario.description}.\n"
                         f"Queue: {queue_line}. Logs: {self.dir}/*.log")

    def _start_worker_process(self, stack: ExitStack, env: dict) -> None:
        log_file = stack.enter_context(open(self.dir / "worker.log", "ab"))
        worker = subprocess.Popen([sys.executable, "-m", "bot.cli", "worker"], env=env, stdout=log_file,
                                  stderr=subprocess.STDOUT)

        def stop():  # warm shutdown: a job in hand is finished first
            worker.terminate()
            try:
                worker.wait(ANSWER_SECONDS)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()

        stack.callback(stop)

    def _start_embedded_worker(self):
        import fakeredis
        from rq import SimpleWorker
        from rq.timeouts import TimerDeathPenalty

        from bot import jobs

        class ThreadWorker(SimpleWorker):
            """RQ's in-process worker on a thread: only the main thread may set signal handlers, so it sets none,
            and job timeouts use a timer instead of SIGALRM."""

            death_penalty_class = TimerDeathPenalty

            def _install_signal_handlers(self):
                pass

        server = fakeredis.FakeServer()
        worker_connection = fakeredis.FakeRedis(server=server)
        jobs.context()  # config, guides and Slack client, loaded before the first command as `meshbot worker` does
        worker = ThreadWorker([jobqueue.queue(worker_connection)], connection=worker_connection,
                              serializer=JSONSerializer)
        threading.Thread(target=worker.work, kwargs={"logging_level": "INFO"}, daemon=True).start()
        return fakeredis.FakeRedis(server=server)

    # What the user types.

    def say(self, line: str) -> bool:
        """Send one line to the app as Slack would, and wait until everything it started has answered."""
        line = line.strip()
        self.term.echo(line)
        if line.startswith("/mesh"):
            return self._command(line[len("/mesh"):].strip())
        if re.match(r"@meshbot\b", line):
            return self._mention(line[len("@meshbot"):].strip())
        if m := re.fullmatch(r"(?:click|press) \[?(\d+)\]?", line):
            return self._click(int(m.group(1)))
        if line.startswith("/"):
            self.term.note(f"Only /mesh is installed in this workspace. {HELP}")
        elif line:
            self.term.note(f"meshbot only hears /mesh and @meshbot here. {HELP}")
        return True

    def repl(self) -> None:
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:
            pass
        self.term.note(HELP)
        while True:
            try:
                line = input(f"\n#{CHANNEL_NAME} > ")
            except (EOFError, KeyboardInterrupt):
                print()
                return
            if line.strip() in ("quit", "exit"):
                return
            self.say(line)

    def _command(self, text: str) -> bool:
        trigger = f"demo.{uuid.uuid4().hex}"
        body = slackstub.command(text, self.slack.response_url, USER, CHANNEL, trigger, USER_NAME, CHANNEL_NAME)
        with self.term.held():  # the ack (only the asker sees it) comes first, as in Slack
            response = self._post(body)
            self.term.ephemeral(_ack_text(response))
        return self._wait_for_job(jobqueue.job_id_for("command:" + trigger))

    def _mention(self, text: str) -> bool:
        ts, event_id = f"{time.time():.6f}", f"Ev{uuid.uuid4().hex[:16]}"
        self.term.own_message(ts)
        seen = len(self.slack.calls)
        self._post(slackstub.event(slackstub.mention(text, USER, CHANNEL, ts), event_id), json_body=True)
        job_id = jobqueue.job_id_for("event:" + event_id)
        # Bolt acks an event before its listener runs: it then either queues a job or replies at once.
        answered = _poll(lambda: self._job(job_id) or any(
            c.params.get("thread_ts") == ts for c in self.slack.calls[seen:]), 10)
        return answered and self._wait_for_job(job_id)

    def _click(self, number: int) -> bool:
        button = self.term.button(number)
        if button is None:
            self.term.note(f"There is no button [{number}].")
            return True
        trigger, seen = f"demo.{uuid.uuid4().hex}", len(self.slack.to("response_url"))
        self._post(slackstub.click(button["value"], self.slack.response_url, USER, CHANNEL, button["action_id"],
                                   trigger, button["label"], button["ts"]))
        # The click's reply goes to response_url after the job is queued.
        _poll(lambda: len(self.slack.to("response_url")) > seen, 10)
        return self._wait_for_job(jobqueue.job_id_for("click:" + trigger))

    def _post(self, body: str, json_body: bool = False) -> httpx.Response:
        headers = {"Content-Type": "application/json" if json_body else "application/x-www-form-urlencoded",
                   **slackstub.sign(self.signing_secret, body)}
        return self.http.post(self.events_url, content=body.encode(), headers=headers)

    def _job(self, job_id: str) -> Job | None:
        try:
            return Job.fetch(job_id, connection=self.redis, serializer=JSONSerializer)
        except Exception:  # rq.exceptions.NoSuchJobError, or not there yet
            return None

    def _wait_for_job(self, job_id: str) -> bool:
        """True when no job was queued, or it finished; False (and a note) when it failed or ran out of time."""
        job = self._job(job_id)
        if job is None:
            return True
        if not _poll(lambda: job.get_status(refresh=True) in DONE, ANSWER_SECONDS):
            self.term.note(f"No answer after {ANSWER_SECONDS:.0f}s; the logs are in {self.dir}")
        elif job.get_status() != JobStatus.FINISHED:
            self.term.note(f"The job {job.get_status()}; the logs are in {self.dir}")
        else:
            return True
        self.failed = True
        return False


def _poll(probe, timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def _ack_text(response: httpx.Response) -> str:
    try:
        return json.loads(response.text).get("text", "")
    except ValueError:
        return response.text


def _describe(connection) -> str:
    """host:port/db, never the password."""
    kwargs = connection.connection_pool.connection_kwargs
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


# The terminal as a Slack client.

OFF = {"1": "22", "2": "22", "3": "23", "4": "24"}  # SGR codes that end bold, dim, italic, underline
STATUS = {"FAIL": ("🔴", "31"), "ERROR": ("🟠", "35"), "WARN": ("🟡", "33"), "PASS": ("🟢", "32"), "SKIP": ("⚪", "2")}


class Terminal:
    """Prints what meshbot posts to the demo channel the way Slack lays it out: messages with their number,
    thread replies indented under their parent, updates marked as such, Block Kit as text, buttons as [N label]."""

    def __init__(self, out):
        self.out = out
        self.colour = bool(os.environ.get("FORCE_COLOR")) or (out.isatty() and not os.environ.get("NO_COLOR"))
        self.lock = threading.RLock()
        self.numbers: dict[str, int] = {}  # message ts → the number shown
        self.own: set[str] = set()  # ts of the user's own messages (mentions)
        self.buttons: list[dict] = []
        self._held: list | None = None
        self._next = itertools.count(1)

    def show(self, call: slackstub.Call, answer: dict) -> None:
        """A Web API call the app or worker made, and Slack's answer (a SlackStub listener)."""
        with self.lock:
            if self._held is not None:
                self._held.append((call, answer))
            else:
                self._show(call, answer)

    def held(self):
        """A context in which calls are queued, then shown when it ends."""
        terminal = self

        class Held:
            def __enter__(self):
                terminal.lock.acquire()
                terminal._held = []

            def __exit__(self, *exc):
                calls, terminal._held = terminal._held, None
                for call, answer in calls:
                    terminal._show(call, answer)
                terminal.lock.release()

        return Held()

    def _show(self, call: slackstub.Call, answer: dict) -> None:
        p = call.params
        if not answer.get("ok"):
            return  # an error Slack answered: nothing was posted
        if call.method == "response_url":
            if p.get("text"):
                self.ephemeral(p["text"])
            return
        if p.get("channel", p.get("channel_id", CHANNEL)) != CHANNEL:
            return  # someone else's job (a shared Redis): not in this channel
        if call.method == "chat.postMessage":
            self._message(answer["ts"], p, thread=p.get("thread_ts"))
        elif call.method == "chat.update":
            self._message(p["ts"], p, updated=True)
        elif call.method == "files.completeUploadExternal":
            files = p.get("files")
            files = json.loads(files) if isinstance(files, str) else files or []
            for f in files:
                self._print(self._indent(p.get("thread_ts")) + f"📎 {f.get('title') or f.get('id')} (file)")

    def _message(self, ts: str, params: dict, thread: str | None = None, updated: bool = False) -> None:
        if ts not in self.numbers:
            self.numbers[ts] = next(self._next)
        number = self.numbers[ts]
        if updated:
            head = f"meshbot · message {number} updated"
        elif thread and thread in self.own:
            head = f"↳ meshbot · message {number}, in your thread"
        elif thread:
            head = f"↳ meshbot · message {number}, in the thread of message {self.numbers.get(thread, '?')}"
        else:
            head = f"meshbot · message {number}"
        indent = self._indent(thread)
        lines = [indent + self._style(head, "1;36")]
        blocks = params.get("blocks")
        blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
        body = self._blocks(blocks, ts) if blocks else [html.unescape(params.get("text", ""))]
        lines += [indent + "  " + line for line in body]
        self._print("\n".join(lines))

    def _indent(self, thread: str | None) -> str:
        return "    " if thread else ""

    def _blocks(self, blocks: list[dict], ts: str) -> list[str]:
        lines: list[str] = []
        for block in blocks:
            kind = block.get("type")
            if kind in ("section", "header"):
                lines += self._mrkdwn((block.get("text") or {}).get("text", ""))
                for f in block.get("fields") or []:
                    lines += self._mrkdwn(f.get("text", ""))
            elif kind == "context":
                lines.append(self._style(" · ".join(
                    self._inline(e.get("text", "")) for e in block.get("elements", []) if "text" in e), "2"))
            elif kind == "divider":
                lines.append(self._style("─" * 48, "2"))
            elif kind == "actions":
                labels = []
                for e in block.get("elements", []):
                    if e.get("type") == "button":
                        label = (e.get("text") or {}).get("text", "")
                        self.buttons.append({"label": label, "value": e.get("value", ""),
                                             "action_id": e.get("action_id", ""), "ts": ts})
                        labels.append(self._style(f"[{len(self.buttons)} {label}]", "1;34"))
                lines.append("  ".join(labels))
        return lines

    def _mrkdwn(self, text: str) -> list[str]:
        lines, code = [], False
        for raw in text.split("\n"):
            stripped = raw.strip()
            if stripped.startswith("```"):
                if not (len(stripped) > 6 and stripped.endswith("```")):  # a fence, not ```one line of code```
                    code = not code
                rest = stripped.strip("`")
                if rest:
                    lines.append(self._style("│ ", "2") + self._style(html.unescape(rest), "36"))
                continue
            if code:
                lines.append(self._style("│ ", "2") + self._style(html.unescape(raw), "36"))
            else:
                lines.append(self._inline(raw))
        return lines

    def _inline(self, text: str) -> str:
        text = re.sub(r"<(https?://[^|>]+)\|([^>]+)>", lambda m: f"{m.group(2)} ({self._style(m.group(1), '4')})",
                      text)
        text = re.sub(r"<(https?://[^>]+)>", lambda m: self._style(m.group(1), "4"), text)
        text = re.sub(r"<@(\w+)>", lambda m: "@" + (USER_NAME if m.group(1) == USER else m.group(1)), text)
        # A result's status word leads its line (its value in capitals); counts read "3 pass, 1 fail".
        text = re.sub(r"^(\s*)\*?(FAIL|ERROR|WARN|PASS|SKIP)\b\*?", lambda m: m.group(1) + self._mark(m.group(2)),
                      text)
        text = re.sub(r"\b\d+ (fail|error|warn|pass|skip)\b", lambda m: self._mark(m.group(0), m.group(1)), text)
        text = re.sub(r"`([^`\n]+)`", lambda m: self._style(m.group(0), "36"), text)
        text = re.sub(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])", lambda m: self._style(m.group(1), "1"), text)
        return html.unescape(text)

    def _mark(self, text: str, status: str | None = None) -> str:
        emoji, sgr = STATUS[(status or text).upper()]
        return f"{emoji} {self._style(text, sgr)}"

    def _style(self, text: str, sgr: str) -> str:
        # Each attribute is switched off by its own code, so styles nest (a bold line with a red word in it).
        off = ";".join(OFF[code] if code in OFF else "39" for code in sgr.split(";"))
        return f"\033[{sgr}m{text}\033[{off}m" if self.colour else text

    def _print(self, text: str) -> None:
        with self.lock:
            if self.out is None:
                return
            try:
                print(text + "\n", file=self.out, flush=True)
            except BrokenPipeError:  # `meshbot demo ... | head`: the reader has gone, the run goes on
                self.out = None

    # What the user did, and what only they see.

    def banner(self, text: str) -> None:
        self._print(self._style(text, "2"))

    def echo(self, line: str) -> None:
        self._print(self._style(f"{USER_NAME} › {line}", "1"))

    def own_message(self, ts: str) -> None:
        with self.lock:
            self.own.add(ts)

    def ephemeral(self, text: str) -> None:
        if text:
            lines = [self._inline(line) for line in text.splitlines()]
            self._print(self._style("only visible to you", "2;3") + "\n" + "\n".join("  " + x for x in lines))

    def note(self, text: str) -> None:
        self._print(self._style(text, "2"))

    def button(self, number: int) -> dict | None:
        with self.lock:
            return self.buttons[number - 1] if 0 < number <= len(self.buttons) else None

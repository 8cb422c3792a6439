"""Digests: cron lines, the once-per-firing lock, and the digest job against simulated clusters.

The clock is the firing's scheduled time: each firing is made by calling the job (or
``fire``) with the time it was due, so no test waits for a schedule.
"""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from rq.job import Job
from rq.serializers import JSONSerializer

import knowledge
from bot import queue as jobqueue
from bot import render
from bot.app import web_client
from bot.config import Config, ConfigurationError, Secrets, load_config
from bot.digest import digest
from bot.jobs import Context
from bot.scheduler import fire
from bot.schedules import BadCron, Schedule, Subscriptions, digest_payload, fire_times, trigger
from bot.thread import Thread
from checks.modern_catalog import MODERN_CHECKS  # istiod-only checks skip on 0.5.1

pytestmark = pytest.mark.redis_db(13)  # digests: a Redis DB of their own

T1 = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)  # a Monday, 09:00


@pytest.mark.parametrize("cron, days", [
    ("0 9 * * 1-5", ["Mon", "Tue", "Wed", "Thu", "Fri"]),  # crontab weekdays, not APScheduler 3's (0 = Monday)
    ("0 9 * * 0", ["Sun"]),
    ("0 9 * * 7", ["Sun"]),
    ("0 9 * * mon,wed", ["Mon", "Wed"]),
    ("0 9 * * */3", ["Sun", "Wed", "Sat"]),
])
def test_weekdays_are_read_as_crontab_reads_them(cron, days):
    fired = fire_times(cron, "UTC", T1 - timedelta(days=1), 7)
    assert sorted({t.strftime("%a") for t in fired}, key=days.index) == days
    assert all(t.hour == 9 and t.minute == 0 for t in fired)


@pytest.mark.parametrize("cron, says", [
    ("0 25 * * *", "the hour field `25`"),
    ("61 9 * * *", "the minute field `61`"),
    ("0 9 32 * *", "the day of month field `32`"),
    ("0 9 * 13 *", "the month field `13`"),
    ("0 9 * * 8", "the day of week field `8`"),
    ("0 9 * * mon-fry", "the day of week field `mon-fry`"),
    ("0 9 * *", "has 4 fields; a cron line has 5"),
    ("0 9 31 2 *", "never fires"),
])
def test_a_bad_cron_line_says_which_field_is_wrong(cron, says):
    with pytest.raises(BadCron, match=says.replace("`", ".").replace("*", r"\*")):
        trigger(cron)


def test_the_config_file_rejects_a_bad_schedule(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("clusters: {prod: {}}\ndigests: [{channel: C1, cron: '0 9 * * *', timezone: Mars/Base}]\n")
    with pytest.raises(ConfigurationError, match="unknown time zone `Mars/Base`"):
        load_config(path)
    path.write_text("clusters: {prod: {}}\ndigests: [{channel: C1, cron: '0 9 * *'}]\n")
    with pytest.raises(ConfigurationError, match="digests.0: .*has 4 fields"):
        load_config(path)
    path.write_text("clusters: {prod: {}}\ndigests: [{channel: C1, cron: '0 9 * * *', clusters: [nope]}]\n")
    with pytest.raises(ConfigurationError, match="unknown clusters: nope"):
        load_config(path)


def test_one_firing_enqueues_one_digest_however_often_it_fires(redis, jobs):
    q = jobqueue.queue(redis)
    schedule = Schedule("daily", "C1", "0 9 * * *", clusters=("prod",)).to_json()
    first = fire(schedule, T1.isoformat(), q)
    assert first and fire(schedule, T1.isoformat(), q) is None  # a second scheduler, same firing
    second = fire(schedule, (T1 + timedelta(days=1)).isoformat(), q)
    assert jobs() == [first, second]
    payload = Job.fetch(first, connection=redis, serializer=JSONSerializer).args[0]
    assert payload == {"kind": "digest", "schedule": "daily", "channel": "C1", "clusters": ["prod"],
                       "checks": ["all"], "quiet": False, "at": T1.isoformat(),
                       "origin": {"source": "schedule", "user": "", "channel": "C1", "user_name": "",
                                  "channel_name": "", "team": "", "thread_ts": None}}
    assert 0 < redis.ttl(f"meshbot:digest:fired:daily:{T1.isoformat()}") <= 7200


def test_an_unsubscribed_schedule_no_longer_fires(redis, jobs):
    made = Subscriptions(redis).add("C1", "0 9 * * *", ("prod",), "U1")
    Subscriptions(redis).remove(made.id)
    assert fire(made.to_json(), T1.isoformat(), jobqueue.queue(redis)) is None
    assert jobs() == []


# The digest job, in this process: the same function the worker runs, with the Slack stand-in.

@pytest.fixture(scope="module")
def index():
    return knowledge.load_index([])


@pytest.fixture
def clusters(simulate, tmp_path):
    """Clusters whose scenario a test switches between firings: ``clusters.set(name, scenario)``."""
    sims = {}

    def set_(name: str, scenario: str | None) -> None:
        path = tmp_path / f"{name}.kubeconfig"
        if scenario is None:  # nothing listens there: unreachable
            path.write_text("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "
                            "'http://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: c, "
                            "context: {cluster: c, user: u}}]\ncurrent-context: c\n")
            return
        if scenario not in sims:
            sims[scenario] = simulate(scenario)[0]
        sims[scenario].write_kubeconfig(path)

    return SimpleNamespace(set=set_, path=lambda name: str(tmp_path / f"{name}.kubeconfig"))


@pytest.fixture
def run_digest(redis, slack, index):
    client = web_client(Secrets(slack_bot_token="xoxb-test", slack_api_url=slack.api_url))

    def run(config: Config, at: datetime, quiet: bool = False, clusters=(), channel="C1", checks=("all",)):
        payload = digest_payload(Schedule("daily", channel, "0 9 * * *", clusters=tuple(clusters), quiet=quiet,
                                          checks=tuple(checks)), at.isoformat())
        job_id = jobqueue.job_id_for(f"test:{at.isoformat()}")
        thread = Thread(client, redis, job_id, channel)
        before = len(slack.calls)
        result = digest(Context(config, index, client), thread, payload, SimpleNamespace(connection=redis, id=job_id))
        result["posts"] = [c for c in slack.calls[before:] if c.method == "chat.postMessage"]
        return result

    return run


def config_for(clusters, *names):
    return Config.model_validate({"clusters": {n: {"kubeconfig": clusters.path(n)} for n in names}})


def parent(result):
    [p] = [c for c in result["posts"] if not c.params.get("thread_ts")]
    return p


def test_what_changed_between_firings_new_resolved_and_still_failing_for_how_long(clusters, run_digest):
    config = config_for(clusters, "prod", "staging")
    clusters.set("prod", "istio-0.5.1-healthy")
    clusters.set("staging", "istio-0.5.1-no-reports")
    first = run_digest(config, T1)
    text = parent(first).params["text"]
    assert "2 clusters, 2 new" in text
    blocks = str(parent(first).params["blocks"])
    assert f"`prod` Istio 0.5.1: 15 pass, {1 + len(MODERN_CHECKS)} skip" in blocks
    assert "First digest in this channel." in blocks

    clusters.set("prod", "istio-0.5.1-fd-crash")
    clusters.set("staging", "istio-0.5.1-healthy")
    second = run_digest(config, T1 + timedelta(days=1))
    assert second["new"] == ["prod:envoy.fd-exhaustion"]
    assert second["resolved"] == ["staging:mixer.report-calls", "staging:mixer.prometheus-dispatch"]
    blocks = str(parent(second).params["blocks"])
    assert "Since the previous digest (Mon 06 May 2024 09:00 UTC)" in blocks
    assert "New (1):" in blocks and "`prod` `envoy.fd-exhaustion` FAIL" in blocks
    assert "Resolved (2):" in blocks and "`staging` `mixer.report-calls` was FAIL" in blocks
    thread = [c for c in second["posts"] if c.params.get("thread_ts")]
    [fd] = thread  # details: one reply per current finding, with the guide excerpt and the fix
    assert fd.params["text"].startswith("prod: FAIL  envoy.fd-exhaustion")
    assert "`prod` · *FAIL*" in str(fd.params["blocks"]) and "*Fix*" in str(fd.params["blocks"])

    third = run_digest(config, T1 + timedelta(days=2, hours=3))
    assert third["still"] == ["prod:envoy.fd-exhaustion"] and not third["new"] and not third["resolved"]
    assert "`prod` `envoy.fd-exhaustion` FAIL for 1 d 3 h" in str(parent(third).params["blocks"])


def test_quiet_skips_the_post_when_nothing_changed(clusters, run_digest, slack):
    config = config_for(clusters, "prod")
    clusters.set("prod", "istio-0.5.1-fd-crash")
    assert run_digest(config, T1, quiet=True)["posted"]  # the first digest here: everything is news
    again = run_digest(config, T1 + timedelta(days=1), quiet=True)
    assert not again["posted"] and again["posts"] == [] and again["still"] == ["prod:envoy.fd-exhaustion"]
    clusters.set("prod", "istio-0.5.1-healthy")
    resolved = run_digest(config, T1 + timedelta(days=2), quiet=True)
    assert resolved["posted"] and resolved["resolved"] == ["prod:envoy.fd-exhaustion"]


def test_an_unreachable_cluster_is_reported_not_skipped(clusters, run_digest):
    config = config_for(clusters, "prod", "staging")
    clusters.set("prod", "istio-0.5.1-fd-crash")
    clusters.set("staging", None)
    first = run_digest(config, T1)
    assert first["unreachable"] == ["staging"]
    blocks = str(parent(first).params["blocks"])
    assert "`staging` *unreachable*: cannot reach the API server of staging" in blocks
    assert f"`prod` Istio 0.5.1: 14 pass, 1 fail, {1 + len(MODERN_CHECKS)} skip" in blocks
    replies = [c.params["text"] for c in first["posts"] if c.params.get("thread_ts")]
    assert any(t.startswith("staging: could not be checked: cannot reach") for t in replies)
    assert sum("staging" in t for t in replies) == 1  # one reply for the cluster, not one per check

    clusters.set("staging", "istio-0.5.1-healthy")
    second = run_digest(config, T1 + timedelta(days=1), quiet=True)
    assert second["posted"] and "Reachable again: `staging`" in str(parent(second).params["blocks"])


def test_a_digest_re_run_after_a_crash_posts_nothing_twice(clusters, run_digest, slack):
    config = config_for(clusters, "prod")
    clusters.set("prod", "istio-0.5.1-fd-crash")
    run_digest(config, T1)
    again = run_digest(config, T1)  # same job id: the worker died after posting, RQ runs the job again
    assert again["posts"] == [] and len(slack.to("chat.update")) == 1


def test_the_digest_parent_stays_within_slack_limits():
    from bot.digest import Change, Changes, ClusterDigest
    from checks.model import Istio
    from checks.runner import Report

    many = [ClusterDigest(f"cluster-{i:02}", Report(f"cluster-{i:02}", Istio("istio-system", "0.5.1", None), [], 1))
            for i in range(60)]
    changes = Changes(new=[Change(f"cluster-{i:02}", "envoy.fd-exhaustion", "fail") for i in range(60)],
                      previous_at=T1.timestamp())
    message = render.digest(many, changes, T1.timestamp() + 86400, "s1")
    assert len(message.blocks) <= render.MAX_BLOCKS
    assert all(len(b.text.text) <= render.MAX_SECTION for b in message.blocks if hasattr(b, "text") and b.text)
    assert "and 35 more" in str(message.to_json())
    assert "`/mesh digest unsubscribe s1`" in str(message.to_json())


def test_a_digest_of_fewer_checks_or_clusters_resolves_only_what_it_checked():
    from bot.digest import ClusterDigest, compare
    from checks.model import Istio, Result, Status
    from checks.runner import Report

    def seen(status, since):
        return {"status": status, "since": since}

    at = T1.timestamp()
    previous = {"prod": {"at": at, "reachable": True, "findings": {"mixer.report-calls": seen("fail", at - 10),
                                                                   "envoy.fd-exhaustion": seen("warn", at - 20)}},
                "staging": {"at": at, "reachable": True, "findings": {"mixer.report-calls": seen("fail", at)}}}
    mixer_only = [Result("mixer.report-calls", "t", "s", Status.PASS, "ok"),
                  Result("mixer.policy-checks", "t", "s", Status.PASS, "ok")]
    digests = [ClusterDigest("prod", Report("prod", Istio("istio-system", "0.5.1", None), mixer_only, 1))]
    changes, state = compare(previous, digests, at + 86400)  # `checks: [mixer]`, one cluster
    assert [(c.cluster, c.check) for c in changes.resolved] == [("prod", "mixer.report-calls")]
    assert not changes.new and not changes.still
    assert state == {"prod": {"at": at + 86400, "reachable": True,
                              "findings": {"envoy.fd-exhaustion": seen("warn", at - 20)}}}


def test_a_digest_to_a_channel_named_in_the_config_updates_its_parent_by_channel_id(clusters, run_digest, slack):
    slack.channel_names = {"C9": "ops"}
    config = config_for(clusters, "prod")
    clusters.set("prod", "istio-0.5.1-fd-crash")
    first = run_digest(config, T1, channel="#ops")
    assert parent(first).params["channel"] == "#ops"
    again = run_digest(config, T1, channel="#ops")  # the same job run again: it updates what it posted
    assert again["posts"] == []
    [update] = slack.to("chat.update")
    assert update.params["channel"] == "C9"


def test_concurrent_deliveries_of_one_subscribe_make_one_subscription(redis):
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    import redis as redis_lib

    barrier = Barrier(16)

    def subscribe(_):
        connection = redis_lib.Redis(connection_pool=redis.connection_pool)
        barrier.wait()
        return Subscriptions(connection).add("C1", "0 9 * * *", ("prod",), "U1", request="command:trig.1").id

    for _ in range(5):
        redis.flushdb()
        with ThreadPoolExecutor(16) as pool:
            made = set(pool.map(subscribe, range(16)))
        assert len(made) == 1 and [s.id for s in Subscriptions(redis).all()] == list(made)


def test_a_subscribe_whose_first_delivery_was_unsubscribed_or_expired_is_stored_again(redis):
    subscriptions = Subscriptions(redis)
    first = subscriptions.add("C1", "0 9 * * *", ("prod",), "U1", request="r1")
    subscriptions.remove(first.id)
    again = subscriptions.add("C1", "0 9 * * *", ("prod",), "U1", request="r1")
    assert again.id != first.id and subscriptions.all() == [again]
    assert redis.get("meshbot:digest:request:r1").decode() == again.id


def test_configuration_findings_are_news_when_they_appear_go_or_are_suppressed_not_while_they_stay(
        clusters, run_digest, redis):
    from bot.suppressions import Suppressions
    from checks.suppression import Suppression

    config = config_for(clusters, "prod")
    clusters.set("prod", "istio-1.28.0-config-gateways")
    first = run_digest(config, T1, checks=["config"])
    assert "prod:config.gateway-conflicts:IST0145 Gateway default/bookinfo-gateway-v2" in first["new"]
    assert len(first["new"]) == 12  # one per finding: several per check
    coded = [c for c in first["posts"] if c.params.get("thread_ts")]
    assert len(coded) == 12 and all("Suppress for 30 days" in str(c.params["blocks"]) for c in coded)

    second = run_digest(config, T1 + timedelta(days=1), checks=["config"])
    assert second["new"] == [] and second["still"] == [] and second["unchanged_config"] == 12
    assert [c for c in second["posts"] if c.params.get("thread_ts")] == []  # nothing new, nothing re-posted
    blocks = str(parent(second).params["blocks"])
    assert "12 configuration finding(s) unchanged" in blocks and "Still failing" not in blocks

    Suppressions(redis).add("prod", Suppression("IST0138", "Gateway istio-system/admin-gateway", "U1",
                                                until=T1.timestamp() + 30 * 86400 + 10 ** 9))
    clusters.set("prod", "istio-1.28.0-config-healthy")
    third = run_digest(config, T1 + timedelta(days=2), checks=["config"])
    assert third["suppressed"] == []  # gone from the cluster: resolved, whatever suppresses it
    assert len(third["resolved"]) == 12 and third["new"] == []
    assert "`prod` `IST0132` VirtualService default/admin was WARN" in str(parent(third).params["blocks"])

    clusters.set("prod", "istio-1.28.0-config-gateways")
    fourth = run_digest(config, T1 + timedelta(days=3), checks=["config"])
    assert len(fourth["new"]) == 11  # the suppressed one is not news
    assert "`prod` `IST0145` Gateway default/bookinfo-gateway-v2 FAIL" in str(parent(fourth).params["blocks"])
    fifth_config = config_for(clusters, "prod")
    Suppressions(redis).add("prod", Suppression("IST0132", "VirtualService default/admin", "U1",
                                                until=T1.timestamp() + 10 ** 9))
    fifth = run_digest(fifth_config, T1 + timedelta(days=4), checks=["config"])
    assert fifth["suppressed"] == ["prod:config.vs-gateways:IST0132 VirtualService default/admin"]
    assert fifth["resolved"] == [] and fifth["unchanged_config"] == 10
    assert "Suppressed (1):" in str(parent(fifth).params["blocks"])

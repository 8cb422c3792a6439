"""`/mesh digest ...` through the real Bolt app with signed requests, the real Redis and the Slack stand-in."""

import pytest
import slack_requests as sr
from rq.job import Job
from rq.serializers import JSONSerializer

from bot.schedules import Subscriptions
from checks.modern_catalog import MODERN_CHECKS  # istiod-only checks skip on 0.5.1

pytestmark = pytest.mark.redis_db(13)  # digests: a Redis DB of their own


def clusters(kubeconfig="/nonexistent"):
    return {"prod": {"kubeconfig": kubeconfig},
            "secure": {"kubeconfig": kubeconfig, "allowed_users": ["U_ADMIN"], "allowed_channels": ["C_OPS"]}}


def payload(redis, job_id):
    return Job.fetch(job_id, connection=redis, serializer=JSONSerializer).args[0]


def test_subscribe_list_unsubscribe(configure, serve, slack, redis, audit_lines):
    configure(clusters(), digests=[{"channel": "C1", "cron": "30 8 * * 1-5", "clusters": ["prod"], "quiet": True}])
    app = serve()
    said = app.post(sr.command('digest subscribe "0 9 * * 1-5" prod', slack.response_url)).text
    assert said.startswith("Subscribed this channel to digest `s1` of prod at `0 9 * * 1-5` (UTC)")
    assert "`/mesh digest unsubscribe s1`" in said
    [stored] = Subscriptions(redis).all()
    assert (stored.channel, stored.cron, stored.clusters, stored.by) == ("C1", "0 9 * * 1-5", ("prod",), "U1")
    assert audit_lines()[-1]["outcome"] == "subscribed" and audit_lines()[-1]["schedule"] == "s1"

    listing = app.post(sr.command("digest list", slack.response_url)).text
    assert "`30 8 * * 1-5` (UTC): prod, only when something changed" in listing and "from the config file" in listing
    assert "• `s1` `0 9 * * 1-5` (UTC): prod" in listing and "by <@U1>" in listing
    assert "No digests are posted in this channel" in app.post(
        sr.command("digest list", slack.response_url, channel="C_OTHER")).text

    assert "posts in <#C1>" in app.post(
        sr.command("digest unsubscribe s1", slack.response_url, channel="C_OTHER")).text
    assert "config file" in app.post(sr.command(f"digest unsubscribe {listing.split('`')[1]}",
                                                slack.response_url)).text
    assert "There is no digest `s9`" in app.post(sr.command("digest unsubscribe s9", slack.response_url)).text
    assert "will not be posted again" in app.post(sr.command("digest unsubscribe s1", slack.response_url)).text
    assert Subscriptions(redis).all() == []


def test_subscribe_with_curly_quotes_and_every_usable_cluster_by_default(configure, serve, slack, redis):
    configure(clusters())
    app = serve()
    app.post(sr.command("digest subscribe \u201c0 9 * * *\u201d", slack.response_url))
    app.post(sr.command('digest subscribe "0 9 * * *"', slack.response_url, user="U_ADMIN", channel="C_OPS"))
    assert [s.clusters for s in Subscriptions(redis).all()] == [("prod",), ("prod", "secure")]


def test_a_retried_subscribe_makes_one_subscription(configure, serve, slack, redis):
    configure(clusters())
    app = serve()
    body = sr.command('digest subscribe "0 9 * * *" prod', slack.response_url, trigger_id="trig.digest")
    first = app.post(body).text
    again = app.post(body, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}).text
    assert first == again and len(Subscriptions(redis).all()) == 1


def test_bad_cron_too_often_and_unquoted_get_a_clear_reply_and_store_nothing(configure, serve, slack, redis,
                                                                              audit_lines):
    configure(clusters())
    app = serve()
    said = app.post(sr.command('digest subscribe "0 25 * * *" prod', slack.response_url)).text
    assert said.startswith("I can't use that schedule: the hour field `25` is not valid")
    assert '/mesh digest subscribe "0 9 * * 1-5" prod' in said  # an example that works
    assert "has 4 fields" in app.post(sr.command('digest subscribe "0 9 * *"', slack.response_url)).text
    assert "the day of week field `mon-fry`" in app.post(
        sr.command('digest subscribe "0 9 * * mon-fry"', slack.response_url)).text
    assert "would post every 5 minutes" in app.post(
        sr.command('digest subscribe "*/5 * * * *"', slack.response_url)).text
    assert "Put the schedule in quotes" in app.post(sr.command("digest subscribe 0 9 * * *", slack.response_url)).text
    assert "There is no cluster `prd`. Did you mean `prod`?" in app.post(
        sr.command('digest subscribe "0 9 * * *" prd', slack.response_url)).text
    assert Subscriptions(redis).all() == []
    assert {line["outcome"] for line in audit_lines()} == {"invalid"}


def test_access_control_applies_to_each_cluster_named(configure, serve, slack, redis, jobs, audit_lines):
    configure(clusters())
    app = serve()
    denied = app.post(sr.command('digest subscribe "0 9 * * *" prod secure', slack.response_url)).text
    assert "You can't run checks on `secure` from here" in denied
    assert audit_lines()[-1]["outcome"] == "denied" and audit_lines()[-1]["cluster"] == "secure"
    assert "You can't run checks on `secure`" in app.post(sr.command("digest now secure", slack.response_url)).text
    assert Subscriptions(redis).all() == [] and jobs() == []
    # the admin in the ops channel may
    app.post(sr.command('digest subscribe "0 9 * * *" prod secure', slack.response_url, user="U_ADMIN",
                        channel="C_OPS"))
    assert [s.clusters for s in Subscriptions(redis).all()] == [("prod", "secure")]


def test_digest_now_enqueues_a_digest_of_the_clusters_the_asker_may_use(configure, serve, slack, redis, jobs):
    configure(clusters())
    app = serve()
    assert "Building a digest of prod…" in app.post(sr.command("digest now", slack.response_url)).text
    assert "Building a digest of prod…" in app.post(sr.command("digest now prod", slack.response_url)).text
    first, second = (payload(redis, j) for j in jobs())
    assert first["kind"] == "digest" and first["clusters"] == ["prod"] and first["channel"] == "C1"
    assert first["schedule"] == "now" and first["quiet"] is False and first["origin"]["source"] == "command"


def test_digest_now_posts_a_digest_through_the_worker(simulate, configure, serve, slack, worker):
    sim, kubeconfig = simulate("istio-0.5.1-fd-crash")
    configure({"prod": {"kubeconfig": str(kubeconfig)}, "staging": {"kubeconfig": "/nonexistent"}})
    app = serve()
    worker()
    app.post(sr.command("digest now", slack.response_url))
    done = slack.wait_for(lambda s: [c for c in s.to("chat.postMessage")
                                     if "envoy.fd-exhaustion" in c.params["text"]], timeout=60)
    [parent] = [c for c in slack.to("chat.postMessage") if not c.params.get("thread_ts")]
    assert "2 clusters, 1 new" in parent.params["text"] and "1 unreachable" in parent.params["text"]
    blocks = str(parent.params["blocks"])
    assert f"`prod` Istio 0.5.1: 14 pass, 1 fail, {1 + len(MODERN_CHECKS)} skip" in blocks
    assert "`staging` *unreachable*: kubeconfig /nonexistent does not exist" in blocks
    assert "istio.io" in str(done[0].params["blocks"])  # the guide excerpt's link

"""Suppressing configuration findings: from a finding's button or `/mesh suppress`, per cluster in Redis or in the
config; audited; listed by `/mesh suppressions`; lifted by command or button; expiring; never hidden."""

import json
import time

import pytest
import slack_requests as sr
from conftest import finished, replies

from bot.cli import main
from bot.suppressions import Suppressions
from checks.suppression import Suppression

pytestmark = pytest.mark.redis_db(14)  # a Redis DB of their own: the worker test reads what the commands wrote


def buttons(blocks) -> list[dict]:
    return [e for b in blocks or [] if b["type"] == "actions" for e in b["elements"]]


def cli_json(monkeypatch, capsys, env, *args) -> tuple[int, dict]:
    monkeypatch.setenv("MESHBOT_CONFIG", env["MESHBOT_CONFIG"])
    monkeypatch.setenv("REDIS_URL", env["REDIS_URL"])
    code = main(["check", *args, "--cluster", "prod", "--json"])
    return code, {(r["check"], r.get("code"), (r.get("objects") or [""])[0]): r
                  for r in json.loads(capsys.readouterr().out)["results"]}


def test_a_findings_button_suppresses_it_and_every_report_still_shows_it(simulate, configure, serve, slack, worker,
                                                                         redis, env, monkeypatch, capsys,
                                                                         audit_lines):
    sim, kubeconfig = simulate("istio-1.28.0-config-routing")
    configure({"prod": {"kubeconfig": str(kubeconfig)}})
    app = serve()
    worker()
    said = app.post(sr.command("check config default on prod", slack.response_url)).text
    assert "Checking config (namespace default) on prod" in said
    slack.wait_for(finished, timeout=90)
    [subset] = [c for c in replies(slack) if "config.vs-destination-subsets" in c.params["text"]]
    [button] = buttons(subset.params["blocks"])
    assert button["text"]["text"] == "Suppress for 30 days"
    assert button["value"] == "suppress IST0101 VirtualService default/reviews for 30d on prod"
    assert len([c for c in replies(slack) if "config.vs-mesh-hosts" in c.params["text"]]) == 2  # one per finding

    app.post(sr.click(button["value"], slack.response_url, action_id=button["action_id"]))
    [response] = slack.wait_for(lambda s: s.to("response_url"), timeout=10)
    assert response.params["text"].startswith("Suppressed IST0101 VirtualService default/reviews on prod until ")
    lift = buttons(response.params["blocks"])[0]
    assert lift["value"] == "unsuppress IST0101 VirtualService default/reviews on prod"
    [stored] = Suppressions(redis).active("prod")
    assert (stored.code, stored.object, stored.by) == ("IST0101", "VirtualService default/reviews", "U1")
    assert 29 * 86400 < stored.until - time.time() <= 30 * 86400
    line = audit_lines()[-1]
    assert (line["outcome"], line["via"], line["code"], line["object"], line["cluster"]) == (
        "suppressed", "click", "IST0101", "VirtualService default/reviews", "prod")

    code, results = cli_json(monkeypatch, capsys, env, "config.vs-destination-subsets")
    r = results[("config.vs-destination-subsets", "IST0101", "VirtualService default/reviews")]
    assert r["status"] == "skip" and code == 0  # still listed, under its own status; no longer a failure
    assert r["summary"].startswith("suppressed by <@U1>: IST0101 VirtualService default/reviews until ")
    assert "was FAIL: IST0101 VirtualService default/reviews: spec.http[1]" in r["summary"]
    assert r["evidence"] and r["fix"]

    # the next check in Slack shows it among the passing and skipped results, with a button to report it again
    app.post(sr.command("check config.vs-destination-subsets on prod", slack.response_url))
    slack.wait_for(lambda s: len(finished(s)) == 2, timeout=90)
    passing = [c for c in replies(slack) if "suppressed by" in str(c.params["blocks"])][-1]
    [again] = buttons(passing.params["blocks"])
    assert again["value"] == "unsuppress IST0101 VirtualService default/reviews on prod"


def test_suppressions_are_listed_lifted_and_expire(configure, serve, slack, redis, audit_lines):
    configure({"prod": {"kubeconfig": "/nowhere", "suppressions": [
        {"code": "IST0118", "object": "Service default/legacy-billing", "reason": "speaks a server-first protocol"}]},
               "secure": {"kubeconfig": "/nowhere", "allowed_users": ["U_ADMIN"]}}, default_cluster="prod")
    app = serve()
    said = app.post(sr.command("suppress IST0129 DestinationRule default/httpbin-org for 12h because pinned by "
                               "the egress proxy", slack.response_url)).json()
    assert said["text"].startswith("Suppressed IST0129 DestinationRule default/httpbin-org on prod until ")

    listing = app.post(sr.command("suppressions", slack.response_url)).json()
    text = str(listing["blocks"])
    assert "IST0118" in text and "the config file" in text and "until lifted" in text
    assert "IST0129" in text and "<@U1>" in text and "pinned by the egress proxy" in text
    [lift] = buttons(listing["blocks"])  # the config's cannot be lifted from Slack
    assert lift["value"] == "unsuppress IST0129 DestinationRule default/httpbin-org on prod"

    assert "config file" in app.post(sr.command("unsuppress IST0118 Service default/legacy-billing",
                                                slack.response_url)).text
    app.post(sr.click(lift["value"], slack.response_url, action_id=lift["action_id"]))
    [response] = slack.wait_for(lambda s: s.to("response_url"), timeout=10)
    assert response.params["text"].startswith("Lifted: `IST0129 DestinationRule default/httpbin-org` is reported")
    assert Suppressions(redis).active("prod") == []
    assert audit_lines()[-1]["outcome"] == "unsuppressed" and audit_lines()[-1]["was_by"] == "U1"

    # one that ended is dropped when it is next read, and the drop is audited once
    Suppressions(redis).add("prod", Suppression("IST0162", "Gateway istio-system/admin", "U2", until=time.time() - 1))
    assert "Nothing is suppressed" not in app.post(sr.command("suppressions prod", slack.response_url)).text
    assert redis.hlen("meshbot:suppressions:prod") == 0
    expired = [line for line in audit_lines() if line["outcome"] == "expired"]
    assert len(expired) == 1 and expired[0]["what"] == "suppression IST0162 Gateway istio-system/admin"

    assert "You can't change what is reported on `secure`" in app.post(
        sr.command("suppress IST0118 Service default/x on secure", slack.response_url)).text
    assert "You can't see `secure`" in app.post(sr.command("suppressions secure", slack.response_url)).text
    assert redis.hlen("meshbot:suppressions:secure") == 0


def test_the_cli_applies_config_suppressions_without_redis_and_warns_when_redis_is_away(simulate, tmp_path,
                                                                                     monkeypatch, capsys):
    sim, kubeconfig = simulate("istio-1.28.0-config-injection")
    config = tmp_path / "meshbot.yaml"
    config.write_text(json.dumps({"clusters": {"prod": {"kubeconfig": str(kubeconfig), "suppressions": [
        {"code": "IST0118", "object": "Service default/legacy-billing", "reason": "server-first",
         "until": "2999-01-01T00:00:00Z"}]}}}))
    monkeypatch.setenv("MESHBOT_CONFIG", str(config))
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    main(["check", "config.service-port-names", "--cluster", "prod", "--json"])
    out = capsys.readouterr()
    assert "suppressions made in Slack not applied" in out.err
    by = {r["code"]: r for r in json.loads(out.out)["results"]}
    assert by["IST0118"]["status"] == "skip"
    assert by["IST0118"]["summary"].startswith("suppressed by the cluster's config: IST0118 Service "
                                               "default/legacy-billing until 2999-01-01 00:00 UTC (server-first)")
    assert by["IST0150"]["status"] == "warn"  # what the suppression does not name is reported as before


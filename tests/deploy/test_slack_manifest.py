"""deploy/slack-app-manifest.yaml: the /mesh command, the minimal scopes, the events and interactivity.

Field limits are Slack's app manifest schema (v1) as documented; the grammar's verbs come from
handlers.grammar so a new verb shows up in the usage hint or fails here.
"""

from __future__ import annotations

import copy
import re

import pytest
import yaml
from deploykit import DEPLOY

from handlers.grammar import VERBS

MANIFEST = DEPLOY / "slack-app-manifest.yaml"
# What meshbot does in Slack, and the one scope each needs.
NEEDED_SCOPES = {
    "commands": "the /mesh slash command",
    "chat:write": "post and update run messages and thread replies",
    "app_mentions:read": "@meshbot questions",
    "files:write": "output longer than a message is uploaded",
    "channels:history": "incident-channel mode reads public channels it is in",
    "groups:history": "incident-channel mode reads private channels it is in",
}
# Event → the scope Slack requires to deliver it.
EVENT_SCOPES = {"app_mention": "app_mentions:read", "message.channels": "channels:history",
                "message.groups": "groups:history"}
SETTINGS_KEYS = {"event_subscriptions", "interactivity", "org_deploy_enabled", "socket_mode_enabled",
                 "token_rotation_enabled", "allowed_ip_address_ranges", "incoming_webhooks", "function_runtime",
                 "siws_links", "hermes_app_type", "is_hosted"}


@pytest.fixture(scope="module")
def manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


def test_display_information_fits_slacks_limits(manifest):
    info = manifest["display_information"]
    assert 1 <= len(info["name"]) <= 35
    assert 1 <= len(info["description"]) <= 140
    assert 175 <= len(info["long_description"]) <= 4000, "Slack rejects a shorter long_description"
    assert re.fullmatch(r"#[0-9a-fA-F]{6}", info["background_color"])
    assert 1 <= len(manifest["features"]["bot_user"]["display_name"]) <= 80
    assert set(manifest) <= {"_metadata", "display_information", "features", "oauth_config", "settings"}
    assert set(manifest["settings"]) <= SETTINGS_KEYS


def test_declares_the_mesh_command_with_the_grammar_in_its_hint(manifest):
    commands = manifest["features"]["slash_commands"]
    assert [c["command"] for c in commands] == ["/mesh"]
    mesh = commands[0]
    assert 1 <= len(mesh["description"]) <= 2000
    assert 1 <= len(mesh["usage_hint"]) <= 1000
    words = set(re.findall(r"[a-z]+", mesh["usage_hint"]))
    assert set(VERBS) <= words, f"usage hint misses {sorted(set(VERBS) - words)}"
    assert "on CLUSTER" in mesh["usage_hint"]
    assert mesh.get("should_escape") is False, "meshbot parses plain text, not escaped <@U…> links"


def test_requests_exactly_the_scopes_the_bot_uses(manifest):
    scopes = manifest["oauth_config"]["scopes"]
    assert set(scopes) == {"bot"}, "no user token: meshbot acts as its bot user only"
    assert sorted(scopes["bot"]) == sorted(NEEDED_SCOPES)
    for unneeded in ("users:read", "chat:write.public", "channels:read", "im:history", "admin"):
        assert unneeded not in scopes["bot"]


def test_subscribes_to_the_events_it_handles_with_their_scopes(manifest):
    events = manifest["settings"]["event_subscriptions"]["bot_events"]
    assert "app_mention" in events and "message.channels" in events
    assert set(events) <= set(EVENT_SCOPES), f"unhandled events: {set(events) - set(EVENT_SCOPES)}"
    for event in events:
        assert EVENT_SCOPES[event] in manifest["oauth_config"]["scopes"]["bot"], f"{event} needs {EVENT_SCOPES[event]}"
    assert "user_events" not in manifest["settings"]["event_subscriptions"]


def test_interactivity_on_and_socket_mode_by_default(manifest):
    settings = manifest["settings"]
    assert settings["interactivity"]["is_enabled"] is True, "buttons: Re-run, Run these checks"
    assert settings["socket_mode_enabled"] is True, "deploy/overlays/socket is the default"
    assert settings["org_deploy_enabled"] is False and settings["token_rotation_enabled"] is False
    # Socket Mode: Slack reaches meshbot over the websocket, so no URL is set anywhere.
    assert "url" not in manifest["features"]["slash_commands"][0]
    assert "request_url" not in settings["event_subscriptions"]
    assert "request_url" not in settings["interactivity"]


def test_the_http_mode_variant_the_readme_describes(manifest):
    """Uncommenting the three url lines and flipping socket_mode_enabled gives a valid HTTP-mode app."""
    text = MANIFEST.read_text()
    commented = re.findall(r"^\s*# ((?:url|request_url): https://HOST/slack/events)$", text, re.M)
    assert len(commented) == 3, "the three URLs to uncomment for HTTP mode"
    http = yaml.safe_load(re.sub(r"^(\s*)# ((?:url|request_url): https://HOST/slack/events)$", r"\1\2", text,
                                 flags=re.M).replace("socket_mode_enabled: true", "socket_mode_enabled: false"))
    assert http["features"]["slash_commands"][0]["url"] == "https://HOST/slack/events"
    assert http["settings"]["event_subscriptions"]["request_url"] == "https://HOST/slack/events"
    assert http["settings"]["interactivity"]["request_url"] == "https://HOST/slack/events"
    assert http["settings"]["socket_mode_enabled"] is False
    rest = copy.deepcopy(http)
    del rest["features"]["slash_commands"][0]["url"]
    del rest["settings"]["event_subscriptions"]["request_url"]
    del rest["settings"]["interactivity"]["request_url"]
    rest["settings"]["socket_mode_enabled"] = True
    assert rest == manifest, "HTTP mode differs only by the URLs and the socket flag"


def test_the_http_overlay_serves_the_manifests_request_url(rendered):
    ingress = [o for o in rendered["http"] if o["kind"] == "Ingress"]
    paths = {p["path"] for i in ingress for r in i["spec"]["rules"] for p in r["http"]["paths"]}
    assert paths == {"/slack/events"}

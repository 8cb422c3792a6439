import socket

import httpx
import pytest

from knowledge import Fetcher, GuideError, load_index

URL = "https://guides.example/troubleshooting.md"
GUIDE = (
    "---\ntitle: Remote\ndocs_url: https://docs.example/help/\n---\n## Envoy is crashing under load\n\nRaise ulimit.\n"
)


def mock_client(calls, status=200, body=GUIDE):
    def handler(request):
        calls.append(str(request.url))
        return httpx.Response(status, text=body)

    return httpx.Client(transport=httpx.MockTransport(handler))


def failing_client(exc):
    def handler(request):
        raise exc

    return httpx.Client(transport=httpx.MockTransport(handler))


def test_url_guide_is_fetched_and_merged_with_builtin():
    calls = []
    index = load_index([URL], fetcher=Fetcher(client=mock_client(calls)))
    section = index.section("envoy-is-crashing-under-load")
    assert calls == [URL]
    assert section.url == "https://docs.example/help/#envoy-is-crashing-under-load"
    assert section.checks == ("envoy.fd-exhaustion", "proxies.crashes")
    assert "Raise ulimit." in section.text


def test_memory_cache_fetches_once():
    calls = []
    fetcher = Fetcher(client=mock_client(calls))
    load_index([URL], fetcher=fetcher)
    load_index([URL], fetcher=fetcher)
    assert calls == [URL]


def test_disk_cache_survives_a_restart_and_an_outage(tmp_path):
    calls = []
    Fetcher(client=mock_client(calls), cache_dir=tmp_path).read(URL)
    offline = failing_client(httpx.ConnectError("down"))
    assert Fetcher(client=offline, cache_dir=tmp_path).read(URL) == GUIDE
    # Even a stale copy beats nothing when the network is down.
    assert Fetcher(client=offline, cache_dir=tmp_path, max_age=0).read(URL) == GUIDE
    assert calls == [URL]


def test_unreachable_url_is_a_friendly_error():
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(GuideError, match=f"Cannot fetch the guide at http://127.0.0.1:{port}/g.md"):
        load_index([f"http://127.0.0.1:{port}/g.md"], fetcher=Fetcher(timeout=2))


def test_http_error_status_and_timeout():
    with pytest.raises(GuideError, match="HTTP 404"):
        Fetcher(client=mock_client([], status=404)).read(URL)
    with pytest.raises(GuideError, match="Timed out after 3s"):
        Fetcher(client=failing_client(httpx.ReadTimeout("slow")), timeout=3).read(URL)


def test_missing_file_is_a_friendly_error(tmp_path):
    with pytest.raises(GuideError, match="Cannot read guide file"):
        load_index([str(tmp_path / "nope.md")])

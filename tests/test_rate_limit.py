"""Rate limits: sliding window per IP and per client id, reads apart from writes."""
from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.helpers import assert_error


SHORT_WINDOW_S = 10


@pytest.fixture
def limited(api_factory, db):
    # A day-long window: the counting tests must not depend on how fast a loaded
    # machine sends ~100 requests.
    with api_factory(RATE_LIMIT_MAX_REQUESTS="60", RATE_LIMIT_READ_MAX_REQUESTS="100",
                     RATE_LIMIT_WINDOW_MS="86400000", PROXIES_COUNT="1") as proc:
        yield proc


@pytest.fixture
def short_window(api_factory, db):
    with api_factory(RATE_LIMIT_MAX_REQUESTS="60", RATE_LIMIT_WINDOW_MS=str(SHORT_WINDOW_S * 1000),
                     PROXIES_COUNT="1") as proc:
        yield proc


def _post(base: str, ip: str | None = None, client_id: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": ip} if ip else {}
    body = {"postId": "test-post-id", "op": "like"}
    if client_id:
        body["clientId"] = client_id
    return httpx.post(base + "/api/posts/like", json=body, headers=headers)


def test_the_61st_write_in_a_window_gets_429_and_the_next_window_accepts(short_window, db):
    limited = short_window
    # The runbook's loop: 65 POSTs from one address. A window starts at an
    # address's first request, so the burst has SHORT_WINDOW_S seconds.
    statuses = [_post(limited.base_url, ip="198.51.100.7").status_code for _ in range(65)]
    assert statuses[:60] == [200] * 60
    assert statuses[60:] == [429] * 5
    r = _post(limited.base_url, ip="198.51.100.7")
    assert_error(r, 429, "rate_limited")
    assert r.headers["RateLimit-Limit"] == "60" and r.headers["RateLimit-Remaining"] == "0"
    retry = int(r.headers["Retry-After"])
    assert 1 <= retry <= SHORT_WINDOW_S and int(r.headers["RateLimit-Reset"]) == retry
    # Nothing was stored for refused requests.
    assert db.execute("SELECT count(*) FROM eng_post_likes").fetchone()[0] == 60
    time.sleep(retry + 0.2)
    assert _post(limited.base_url, ip="198.51.100.7").status_code == 200


def test_reads_have_their_own_higher_limit(limited, db):
    for _ in range(61):
        _post(limited.base_url, ip="198.51.100.8")
    assert _post(limited.base_url, ip="198.51.100.8").status_code == 429
    reads = [httpx.get(limited.base_url + "/api/posts/like/count", params={"postId": "a"},
                       headers={"X-Forwarded-For": "198.51.100.8"}).status_code for _ in range(101)]
    assert reads[:100] == [200] * 100 and reads[100] == 429


def test_one_client_id_is_limited_across_addresses(limited, db):
    # The request that issues the id is not counted against it: the id then gets 60.
    cid = _post(limited.base_url, ip="203.0.113.1").json()["clientId"]
    statuses = [_post(limited.base_url, ip=f"203.0.113.{i + 2}", client_id=cid).status_code for i in range(61)]
    assert statuses[:60] == [200] * 60 and statuses[60] == 429


def test_forwarded_for_is_ignored_without_proxy_settings(api_factory, db):
    with api_factory(RATE_LIMIT_MAX_REQUESTS="5", RATE_LIMIT_WINDOW_MS="5000") as proc:
        statuses = [_post(proc.base_url, ip=f"192.0.2.{i}").status_code for i in range(6)]
    assert statuses == [200] * 5 + [429]


def test_rejections_are_logged_counted_and_stored_aggregated_per_minute(limited, db):
    for _ in range(65):
        _post(limited.base_url, ip="198.51.100.9")
    lines = [json.loads(l) for l in limited.log_lines() if "rate_limited" in l]
    assert len(lines) == 5 and all(l["status"] == 429 for l in lines)
    metrics = httpx.get(limited.base_url + "/metrics").text
    assert 'likes_rate_limit_hits_total{kind="write"} 5.0' in metrics
    deadline = time.monotonic() + 15
    rows = []
    while time.monotonic() < deadline:
        rows = db.execute("SELECT event_type, severity, occurrences, octet_length(ip_hash) "
                          "FROM eng_security_events").fetchall()
        if sum(r[2] for r in rows) >= 5:
            break
        time.sleep(0.5)
    assert sum(r[2] for r in rows) == 5
    assert 1 <= len(rows) <= 2          # one row per minute, not one per request
    assert all(r[0] == "rate_limited" and r[1] == "warning" and r[3] == 16 for r in rows)

"""The HTTP contract of like, unlike and count."""
from __future__ import annotations

import httpx
import pytest

from tests.helpers import JSON, assert_error, counter, like, like_rows


def test_like_without_client_id_issues_a_signed_id_in_body_and_cookie(client, db):
    r = like(client, "test-post-id")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"postId", "op", "liked", "changed", "count", "clientId"}
    assert body["postId"] == "test-post-id" and body["op"] == "like"
    assert body["liked"] is True and body["changed"] is True and body["count"] == 1
    cookie = r.headers["set-cookie"]
    assert f"likes_cid={body['clientId']}" in cookie and "HttpOnly" in cookie
    assert counter(db, "test-post-id") == 1


def test_each_call_without_an_id_counts_as_a_new_client(api, db):
    # The runbook's curl sends no id and no cookie: every call is a new client.
    for expected in (1, 2, 3):
        with api.client() as fresh:
            assert like(fresh, "p1").json()["count"] == expected
    assert like_rows(db, "p1") == 3


def test_repeated_like_by_same_client_reports_unchanged(client, db):
    cid = like(client, "p1").json()["clientId"]
    again = like(client, "p1", client_id=cid).json()
    assert again["changed"] is False and again["liked"] is True and again["count"] == 1
    assert like_rows(db, "p1") == 1


def test_client_id_in_header_is_the_same_client(client, db):
    cid = like(client, "p1").json()["clientId"]
    r = client.post("/api/posts/like", json={"postId": "p1", "op": "like"}, headers={"X-Client-Id": cid})
    assert r.json()["changed"] is False
    assert r.json()["clientId"] == cid


def test_cookie_identifies_the_client_when_no_id_is_sent(client, db):
    like(client, "p1")      # the client keeps the HttpOnly cookie
    r = like(client, "p1")
    assert r.json()["changed"] is False and r.json()["count"] == 1


def test_unlike_removes_the_like_and_a_repeat_is_unchanged(client, db):
    cid = like(client, "p1").json()["clientId"]
    r = like(client, "p1", "unlike", cid).json()
    assert r == {"postId": "p1", "op": "unlike", "liked": False, "changed": True, "count": 0, "clientId": cid}
    r2 = like(client, "p1", "unlike", cid).json()
    assert r2["changed"] is False and r2["count"] == 0
    assert like_rows(db, "p1") == 0


def test_unlike_by_a_client_that_never_liked_changes_nothing(client, db):
    like(client, "p1")
    with httpx.Client(base_url=str(client.base_url)) as other:
        r = like(other, "p1", "unlike").json()
    assert r["changed"] is False and r["count"] == 1


def test_count_returns_count_and_liked_for_a_client(client, db):
    cid = like(client, "p1").json()["clientId"]
    assert client.get("/api/posts/like/count", params={"postId": "p1"}).json() == {"postId": "p1", "count": 1}
    r = client.get("/api/posts/like/count", params={"postId": "p1"}, headers={"X-Client-Id": cid})
    assert r.json() == {"postId": "p1", "count": 1, "liked": True}
    assert r.headers["cache-control"].startswith("private")


def test_count_of_a_never_liked_post_is_zero(client, db):
    assert client.get("/api/posts/like/count", params={"postId": "never"}).json() == {"postId": "never", "count": 0}


def test_count_sends_cache_control_and_etag_and_answers_304(client, db):
    like(client, "p1")
    r = client.get("/api/posts/like/count", params={"postId": "p1"})
    assert r.headers["cache-control"] == "public, max-age=10"
    etag = r.headers["etag"]
    r304 = client.get("/api/posts/like/count", params={"postId": "p1"}, headers={"If-None-Match": etag})
    assert r304.status_code == 304 and r304.content == b""
    like(httpx.Client(base_url=str(client.base_url)), "p1")
    changed = client.get("/api/posts/like/count", params={"postId": "p1"}, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.json()["count"] == 2


def test_a_write_refreshes_the_cached_count_at_once(client, db):
    assert client.get("/api/posts/like/count", params={"postId": "p1"}).json()["count"] == 0   # cached as 0
    like(client, "p1")
    assert client.get("/api/posts/like/count", params={"postId": "p1"}).json()["count"] == 1


def test_batch_counts_return_every_requested_post(client, db):
    cid = like(client, "a").json()["clientId"]
    like(httpx.Client(base_url=str(client.base_url)), "b")
    r = client.get("/api/posts/like/counts", params=[("postId", "a"), ("postId", "b"), ("postId", "c")])
    assert r.json() == {"counts": {"a": 1, "b": 1, "c": 0}, "readOnly": False}
    r = client.get("/api/posts/like/counts", params=[("postId", "a"), ("postId", "b")], headers={"X-Client-Id": cid})
    assert r.json() == {"counts": {"a": 1, "b": 1}, "liked": {"a": True, "b": False}, "readOnly": False}


def test_batch_counts_accept_exactly_100_ids(client, db):
    r = client.get("/api/posts/like/counts", params=[("postId", f"p{i}") for i in range(100)])
    assert r.status_code == 200 and len(r.json()["counts"]) == 100


def test_liveness_does_no_io(client):
    assert client.get("/health").json() == {"status": "ok"}


def test_api_health_has_status_and_timestamp(client):
    body = client.get("/api/health").json()
    assert body["status"] == "ok" and body["timestamp"].endswith("Z")


def test_monitoring_health_reports_database_redis_and_pool(client):
    r = client.get("/api/monitoring/health")
    body = r.json()
    assert r.status_code == 200
    assert body["status"] == "ok" and body["database"] == "connected" and body["redis"] == "connected"
    assert {"min_size", "max_size", "size", "available", "waiting"} <= set(body["pool"])


def test_metrics_expose_attempts_rate_limits_db_errors_cache_and_durations(client, db):
    like(client, "p1")
    client.get("/api/posts/like/count", params={"postId": "p1"})
    text = client.get("/metrics").text
    for name in ("likes_like_attempts_total{op=\"like\",result=\"changed\"}", "likes_rate_limit_hits_total",
                 "likes_database_errors_total", "likes_cache_hits_total", "likes_cache_misses_total",
                 "likes_request_duration_seconds_bucket{"):
        assert name in text, name
    assert 'route="/api/posts/like",status="200"' in text


def test_openapi_document_and_docs_page(client):
    spec = client.get("/openapi.json").json()
    assert "/api/posts/like" in spec["paths"] and "post" in spec["paths"]["/api/posts/like"]
    assert "/api/posts/like/counts" in spec["paths"]
    assert client.get("/docs", follow_redirects=True).status_code == 200


def test_every_request_is_logged_as_one_json_line_without_ids(api, client, db):
    cid = like(client, "logged-post").json()["clientId"]
    import json
    lines = [json.loads(line) for line in api.log_lines() if '"likes.access"' in line]
    entry = [e for e in lines if e["route"] == "/api/posts/like"][-1]
    assert {"method", "route", "status", "duration_ms", "request_id", "outcome"} <= set(entry)
    assert entry["outcome"] == "liked"
    text = api.log_file.read_text()
    assert cid not in text and "127.0.0.1\"" not in text.replace('"host":"127.0.0.1"', "")


def test_unknown_route_is_a_json_404(client):
    assert_error(client.get("/api/nope"), 404, "not_found")


def test_wrong_method_is_a_json_405(client, db):
    r = client.delete("/api/posts/like")
    assert_error(r, 405, "method_not_allowed")
    assert_error(client.post("/api/posts/like/count", headers=JSON, content=b"{}"), 405, "method_not_allowed")


def test_every_response_names_the_release_that_served_it(api_factory, db):
    with api_factory(LIKES_RELEASE="abc123def456") as proc, proc.client() as c:
        for path in ("/health", "/api/health", "/api/posts/like/count?postId=x", "/nope"):
            assert c.get(path).headers["X-Likes-Release"] == "abc123def456", path
        assert c.get("/api/health").json()["release"] == "abc123def456"
        assert c.get("/api/monitoring/health").json()["release"] == "abc123def456"
    access = [line for line in proc.log_lines() if '"logger":"likes.access"' in line]
    assert access and all('"release":"abc123def456"' in line for line in access)   # the access log names it too


def test_a_malformed_release_name_is_a_configuration_error():
    from api.settings import ConfigError, Settings
    with pytest.raises(ConfigError, match="LIKES_RELEASE must be"):
        Settings.from_env({"DATABASE_URL": "postgresql://u:p@h/d", "CLIENT_ID_SECRET": "x" * 32,
                           "LIKES_RELEASE": "bad release; rm -rf"})

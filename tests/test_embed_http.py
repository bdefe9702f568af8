"""What the embeddable like button needs from the API, over plain HTTP: CORS for the
allowed origins only, the script at a content-hashed URL cached for a year, the demo
page, and `readOnly` in the batch counts."""
from __future__ import annotations

import hashlib
import re
import time

import pytest

from tests.conftest import ROOT
from tests.helpers import JSON, assert_error, flags, like, nothing_stored

ALLOWED = "https://blog.example"
OTHER = "https://evil.example"
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,x-client-id"}
SCRIPT = (ROOT / "api" / "static" / "like-button.js").read_bytes()
DIGEST = hashlib.sha256(SCRIPT).hexdigest()[:16]


@pytest.fixture(scope="module")
def cors_api(api_factory):
    with api_factory(CORS_ALLOWED_ORIGINS=f"{ALLOWED},http://127.0.0.1:9", CACHE_TTL_SECONDS="1") as proc:
        yield proc


@pytest.fixture
def web(cors_api, db):
    with cors_api.client() as c:
        yield c


def cors_headers(response) -> dict[str, str]:
    return {k.lower(): v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


def test_preflight_from_an_allowed_origin_allows_post_with_json_and_the_client_id(web):
    r = web.options("/api/posts/like", headers={"Origin": ALLOWED, **PREFLIGHT})
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in r.headers["access-control-allow-methods"]
    allowed_headers = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
    assert {"content-type", "x-client-id"} <= allowed_headers
    assert int(r.headers["access-control-max-age"]) > 0
    assert "Origin" in r.headers["vary"]


def test_preflight_from_another_origin_is_refused_with_json_and_no_cors_headers(web, db):
    r = web.options("/api/posts/like", headers={"Origin": OTHER, **PREFLIGHT})
    body = assert_error(r, 403, "cors_origin_not_allowed")
    assert OTHER in body["error"]["message"] and "CORS_ALLOWED_ORIGINS" in body["error"]["message"]
    assert cors_headers(r) == {}
    assert nothing_stored(db)


def test_preflight_from_an_allowed_origin_on_an_unknown_route_is_a_json_404(web):
    assert_error(web.options("/api/nope", headers={"Origin": ALLOWED, **PREFLIGHT}), 404, "not_found")


def test_allowed_origin_gets_its_origin_echoed_and_the_rate_limit_headers_exposed(web):
    r = like(web, "c1", headers={"Origin": ALLOWED})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ALLOWED
    exposed = {h.strip().lower() for h in r.headers["access-control-expose-headers"].split(",")}
    assert {"retry-after", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= exposed
    assert "access-control-allow-credentials" not in r.headers


def test_other_origins_and_requests_without_origin_get_no_cors_headers(web):
    for headers in ({"Origin": OTHER}, {"Origin": "null"}, {"Origin": ALLOWED + ".evil.example"}, {}):
        r = web.get("/api/posts/like/counts", params={"postId": "c1"}, headers=headers)
        assert r.status_code == 200
        assert cors_headers(r) == {}, headers
        assert "Origin" in r.headers["vary"]   # a shared cache must not hand this answer to an allowed origin


def test_counts_vary_on_the_client_id_and_the_origin(web):
    r = web.get("/api/posts/like/counts", params={"postId": "c1"}, headers={"Origin": ALLOWED})
    assert {v.strip() for v in r.headers["vary"].split(",")} == {"X-Client-Id", "Origin"}


def test_errors_to_an_allowed_origin_are_json_and_readable_by_the_page(web, db):
    r = web.post("/api/posts/like", content=b"{", headers={**JSON, "Origin": ALLOWED})
    assert_error(r, 400, "invalid_json")
    assert r.headers["access-control-allow-origin"] == ALLOWED
    assert nothing_stored(db)


def test_a_429_to_an_allowed_origin_exposes_retry_after(api_factory, db):
    with api_factory(CORS_ALLOWED_ORIGINS=ALLOWED, RATE_LIMIT_MAX_REQUESTS="1") as proc, proc.client() as c:
        assert like(c, "c1", headers={"Origin": ALLOWED}).status_code == 200
        r = like(c, "c2", headers={"Origin": ALLOWED})
    assert_error(r, 429, "rate_limited")
    assert r.headers["access-control-allow-origin"] == ALLOWED
    assert int(r.headers["retry-after"]) >= 1
    assert "retry-after" in r.headers["access-control-expose-headers"].lower()


def test_without_allowed_origins_no_response_carries_cors_headers(client):
    r = client.options("/api/posts/like", headers={"Origin": ALLOWED, **PREFLIGHT})
    assert_error(r, 403, "cors_origin_not_allowed")
    r = like(client, "c1", headers={"Origin": ALLOWED})
    assert r.status_code == 200 and cors_headers(r) == {}


def test_the_hashed_script_is_cached_for_a_year_as_immutable(web):
    r = web.get(f"/static/like-button.{DIGEST}.js")
    assert r.status_code == 200
    assert r.content == SCRIPT
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert r.headers["content-type"].startswith("text/javascript")
    assert r.headers["x-content-type-options"] == "nosniff"


def test_the_stable_script_url_redirects_to_the_hashed_one_with_a_short_cache(web):
    r = web.get("/static/like-button.js")
    assert r.status_code == 302
    assert r.headers["location"] == f"like-button.{DIGEST}.js"
    max_age = int(re.search(r"max-age=(\d+)", r.headers["cache-control"]).group(1))
    assert 0 < max_age <= 3600
    followed = web.get("/static/like-button.js", follow_redirects=True)
    assert followed.status_code == 200 and followed.content == SCRIPT


def test_an_older_hash_redirects_to_the_current_script(web):
    r = web.get("/static/like-button.0123456789abcdef.js")
    assert r.status_code == 302 and r.headers["location"] == f"like-button.{DIGEST}.js"
    assert "immutable" not in r.headers["cache-control"]


def test_unknown_static_files_are_a_json_404(web):
    for path in ("/static/demo.html", "/static/like-button.js.map", "/static/..%2Fsettings.py"):
        assert_error(web.get(path), 404, "not_found")


def test_the_demo_page_loads_the_hashed_script_and_shows_posts(web):
    r = web.get("/demo")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert f'<script src="static/like-button.{DIGEST}.js" defer></script>' in r.text
    assert len(re.findall(r'<button data-post-id="[^"]+"', r.text)) >= 4
    assert "script-src 'self'" in r.headers["content-security-policy"]


def test_counts_report_read_only_while_the_kill_switch_is_on(pg, web, db):
    params = [("postId", "c1"), ("postId", "c2")]
    assert web.get("/api/posts/like/counts", params=params).json()["readOnly"] is False
    flags(pg, "kill")
    try:
        # The flag is read once per CACHE_TTL_SECONDS (1 s here), like the cached counts.
        deadline = time.monotonic() + 5
        while (body := web.get("/api/posts/like/counts", params=params).json())["readOnly"] is not True:
            assert time.monotonic() < deadline, body
            time.sleep(0.2)
        assert body["counts"] == {"c1": 0, "c2": 0}
    finally:
        flags(pg, "restore")
    deadline = time.monotonic() + 5
    while web.get("/api/posts/like/counts", params=params).json()["readOnly"] is not False:
        assert time.monotonic() < deadline
        time.sleep(0.2)


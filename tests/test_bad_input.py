"""Bad input: each case gets its own 4xx JSON error, and nothing is stored."""
from __future__ import annotations

import pytest

from tests.helpers import JSON, assert_error, nothing_stored

LIKE = "/api/posts/like"


@pytest.mark.parametrize("body, code", [
    (b"{not json", "invalid_json"),
    (b'{"postId": "a", "op": "like"', "invalid_json"),
    (b"[1, 2]", "invalid_json"),
    (b'"a string"', "invalid_json"),
    (b"null", "invalid_json"),
    (b"42", "invalid_json"),
])
def test_malformed_or_non_object_json_is_rejected(client, db, body, code):
    assert_error(client.post(LIKE, content=body, headers=JSON), 400, code)
    assert nothing_stored(db)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_wrong_content_type_is_415(client, db, content_type):
    r = client.post(LIKE, content=b'{"postId":"a","op":"like"}', headers={"Content-Type": content_type})
    assert_error(r, 415, "unsupported_media_type")
    assert nothing_stored(db)


def test_missing_content_type_is_415(client, db):
    assert_error(client.post(LIKE, content=b'{"postId":"a","op":"like"}'), 415, "unsupported_media_type")
    assert nothing_stored(db)


@pytest.mark.parametrize("body", [b"", b"   "])
def test_empty_body_is_rejected(client, db, body):
    assert_error(client.post(LIKE, content=body, headers=JSON), 400, "empty_body")
    assert nothing_stored(db)


def test_body_over_the_size_limit_is_413(client, db):
    big = b'{"postId":"a","op":"like","pad":"' + b"x" * 8192 + b'"}'
    assert_error(client.post(LIKE, content=big, headers=JSON), 413, "payload_too_large")
    assert nothing_stored(db)
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize("post_id", [
    None, "", "x" * 129, "has space", "emoji-\u2764", "slash/inside", "tab\tchar", "nul\x00byte", "new\nline",
    "'; DROP TABLE eng_post_likes; --", "1 OR 1=1", "a\"b", 12345, ["a"], {"a": 1}, True,
])
def test_invalid_post_id_is_rejected_and_nothing_stored(client, db, post_id):
    body = {"op": "like"} if post_id is None else {"postId": post_id, "op": "like"}
    r = client.post(LIKE, json=body)
    assert_error(r, 400, "invalid_post_id")
    assert nothing_stored(db)


def test_longest_allowed_post_id_is_accepted(client, db):
    assert client.post(LIKE, json={"postId": "x" * 128, "op": "like"}).status_code == 200


@pytest.mark.parametrize("op", [None, "", "LIKE", "toggle", 1, None])
def test_missing_or_unknown_op_is_rejected(client, db, op):
    body = {"postId": "a"} if op is None else {"postId": "a", "op": op}
    assert_error(client.post(LIKE, json=body), 400, "invalid_op")
    assert nothing_stored(db)


def _forged(client_id: str) -> list[str]:
    kid, nonce, sig = client_id.split(".")
    flipped = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    return [
        f"{kid}.{nonce}.{flipped}",                 # bad signature
        f"{kid}.{nonce}",                           # unsigned
        client_id[:-3],                             # truncated
        f"deadbeef.{nonce}.{sig}",                  # unknown key id
        client_id + "x",                            # too long for its shape
        "00000000.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",
        "not-an-id", "' OR 1=1 --",
    ]


def test_forged_truncated_or_garbled_client_ids_are_rejected(client, db):
    real = client.post(LIKE, json={"postId": "seed", "op": "like"}).json()["clientId"]
    db.execute("TRUNCATE eng_post_likes, eng_post_like_counter_slots, eng_post_like_events_daily")
    for bad in _forged(real):
        assert_error(client.post(LIKE, json={"postId": "a", "op": "like", "clientId": bad}), 400, "invalid_client_id")
        assert_error(client.post(LIKE, json={"postId": "a", "op": "like"}, headers={"X-Client-Id": bad}),
                     400, "invalid_client_id")
        assert_error(client.get("/api/posts/like/count", params={"postId": "a"}, headers={"X-Client-Id": bad}),
                     400, "invalid_client_id")
    assert nothing_stored(db)


@pytest.mark.parametrize("client_id", [123, ["x"], {"id": "x"}, True])
def test_client_id_of_the_wrong_type_is_rejected(client, db, client_id):
    r = client.post(LIKE, json={"postId": "a", "op": "like", "clientId": client_id})
    assert_error(r, 400, "invalid_client_id")
    assert nothing_stored(db)


def test_count_without_post_id_is_rejected(client, db):
    assert_error(client.get("/api/posts/like/count"), 400, "invalid_post_id")
    assert_error(client.get("/api/posts/like/count", params={"postId": "bad id"}), 400, "invalid_post_id")


def test_batch_without_ids_or_with_a_bad_id_is_rejected(client, db):
    assert_error(client.get("/api/posts/like/counts"), 400, "invalid_post_id")
    assert_error(client.get("/api/posts/like/counts", params=[("postId", "ok"), ("postId", "no way")]),
                 400, "invalid_post_id")


def test_too_many_ids_in_the_batch_call_is_rejected(client, db):
    r = client.get("/api/posts/like/counts", params=[("postId", f"p{i}") for i in range(101)])
    assert_error(r, 400, "too_many_post_ids")

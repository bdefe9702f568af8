"""Like, unlike and count. Handlers parse and validate, call one store
function, and shape the response.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import time

from pydantic import ValidationError
from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse
from sanic_ext import openapi

from api import metrics, store
from api.errors import ApiError
from api.identity import InvalidClientId
from api.models import (MAX_BATCH_POST_IDS, CountResponse, CountsResponse, ErrorResponse, LikeRequest, LikeResponse)

bp = Blueprint("likes", url_prefix="/api/posts")
log = logging.getLogger("likes.api")
CLIENT_COOKIE = "likes_cid"
_POST_ID = LikeRequest.model_fields["postId"]


@bp.post("/like")
@openapi.summary("Like or unlike a post")
@openapi.body({"application/json": LikeRequest}, required=True)
@openapi.response(200, {"application/json": LikeResponse})
@openapi.response(400, {"application/json": ErrorResponse})
@openapi.response(429, {"application/json": ErrorResponse})
@openapi.response(503, {"application/json": ErrorResponse})
async def like(request: Request):
    ctx = request.app.ctx
    body = _parse_like(request)
    raw_id = body.clientId or request.headers.get("x-client-id") or request.cookies.get(CLIENT_COOKIE)
    issued = raw_id is None
    client_id = ctx.client_ids.issue() if issued else raw_id
    client_hash = _client_hash(request, client_id)
    identities = [f"ip:{_ip_hash(request).hex()}"] + ([] if issued else [f"cid:{client_hash.hex()}"])
    await _limit(request, "write", identities)
    try:
        result = await store.apply_like(ctx.pool, body.postId, client_hash, body.op)
    except store.LikesDisabled:
        metrics.LIKE_ATTEMPTS.labels(body.op, "disabled").inc()
        request.ctx.outcome = "likes_disabled"
        raise ApiError(503, "likes_disabled", "Likes are temporarily read-only; counts still work.",
                       {"Retry-After": "60"})
    except Exception as exc:
        _database_failure(request, exc, body.op)
    metrics.LIKE_ATTEMPTS.labels(body.op, "changed" if result.changed else "unchanged").inc()
    request.ctx.outcome = f"{body.op}d" if result.changed else "unchanged"
    await ctx.cache.put_many({body.postId: result.count})
    response = json({"postId": body.postId, "op": body.op, "liked": result.liked, "changed": result.changed,
                     "count": result.count, "clientId": client_id},
                    headers={"Cache-Control": "no-store", **request.ctx.rate_headers})
    if issued:
        response.add_cookie(CLIENT_COOKIE, client_id, httponly=True, samesite="Lax", max_age=400 * 86400,
                            secure=request.scheme == "https", path="/api/posts/like")
    return response


@bp.get("/like/count")
@openapi.summary("Count of one post")
@openapi.parameter("postId", str, "query", required=True)
@openapi.parameter("X-Client-Id", str, "header")
@openapi.response(200, {"application/json": CountResponse})
@openapi.response(400, {"application/json": ErrorResponse})
async def count(request: Request):
    ctx = request.app.ctx
    post_ids = request.args.getlist("postId") or []
    if len(post_ids) != 1:
        raise ApiError(400, "invalid_post_id", "Send exactly one postId query parameter.")
    post_id = _valid_post_id(post_ids[0])
    raw_id = request.headers.get("x-client-id")
    client_hash = _client_hash(request, raw_id) if raw_id is not None else None
    await _limit(request, "read", [f"ip:{_ip_hash(request).hex()}"])
    try:
        if client_hash is None:
            (n,) = await ctx.cache.get_many([post_id])
            if n is None:
                n = await store.count(ctx.pool, post_id)
                await ctx.cache.put_many({post_id: n})
            body, etag = {"postId": post_id, "count": n}, f'"{n}"'
            cache_control = f"public, max-age={ctx.settings.cache_ttl_seconds}"
        else:
            n, liked = await store.status(ctx.pool, post_id, client_hash)
            body, etag = {"postId": post_id, "count": n, "liked": liked}, f'"{n}-{int(liked)}"'
            cache_control = "private, no-cache"
    except Exception as exc:
        _database_failure(request, exc, None)
    headers = {"Cache-Control": cache_control, "ETag": etag, "Vary": "X-Client-Id", **request.ctx.rate_headers}
    if etag in _if_none_match(request):
        return HTTPResponse(status=304, headers=headers)
    return json(body, headers=headers)


@bp.get("/like/counts")
@openapi.summary("Counts of up to 100 posts, for feed pages")
@openapi.parameter("postId", [str], "query", required=True)
@openapi.parameter("X-Client-Id", str, "header")
@openapi.response(200, {"application/json": CountsResponse})
@openapi.response(400, {"application/json": ErrorResponse})
async def counts(request: Request):
    ctx = request.app.ctx
    raw = request.args.getlist("postId") or []
    if not raw:
        raise ApiError(400, "invalid_post_id", "Send at least one postId query parameter.")
    if len(raw) > MAX_BATCH_POST_IDS:
        raise ApiError(400, "too_many_post_ids", f"Send at most {MAX_BATCH_POST_IDS} postId parameters, not {len(raw)}.")
    post_ids = list(dict.fromkeys(_valid_post_id(p) for p in raw))
    raw_id = request.headers.get("x-client-id")
    client_hash = _client_hash(request, raw_id) if raw_id is not None else None
    await _limit(request, "read", [f"ip:{_ip_hash(request).hex()}"])
    try:
        cached = await ctx.cache.get_many(post_ids)
        result = {p: n for p, n in zip(post_ids, cached) if n is not None}
        missing = [p for p in post_ids if p not in result]
        if missing:
            fresh = await store.counts(ctx.pool, missing)
            await ctx.cache.put_many(fresh)
            result.update(fresh)
        body = {"counts": {p: result[p] for p in post_ids}}
        if client_hash is not None:
            liked = await store.liked_among(ctx.pool, post_ids, client_hash)
            body["liked"] = {p: p in liked for p in post_ids}
    except Exception as exc:
        _database_failure(request, exc, None)
    body["readOnly"] = await _read_only(ctx)
    return json(body, headers={"Cache-Control": "private, no-cache" if client_hash else
                               f"public, max-age={ctx.settings.cache_ttl_seconds}",
                               "Vary": "X-Client-Id", **request.ctx.rate_headers})


async def _read_only(ctx) -> bool:
    """The kill switch for the counts response, read at most once per CACHE_TTL_SECONDS per
    worker, as stale as the cached counts may be. Writes check it in the database every time."""
    checked_at, value = getattr(ctx, "read_only", (float("-inf"), False))
    now = time.monotonic()
    if now - checked_at < ctx.settings.cache_ttl_seconds:
        return value
    ctx.read_only = (now, value)      # concurrent requests use the last value meanwhile
    try:
        value = await store.likes_read_only(ctx.pool)
    except Exception as exc:
        if not store.is_database_error(exc):
            raise
        store.purge_broken(ctx.pool)  # the counts may still come from the cache: keep the last value
    ctx.read_only = (now, value)
    return value


def _parse_like(request: Request) -> LikeRequest:
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise ApiError(415, "unsupported_media_type",
                       f"The body must be JSON sent as Content-Type: application/json, not {content_type or 'no content type'}.")
    if not request.body or not request.body.strip():
        raise ApiError(400, "empty_body", 'The body is empty: send {"postId": "...", "op": "like"}.')
    try:
        return LikeRequest.model_validate_json(request.body)
    except ValidationError as exc:
        raise _validation_error(exc) from None


def _validation_error(exc: ValidationError) -> ApiError:
    err = exc.errors(include_url=False)[0]
    field = err["loc"][0] if err["loc"] else None
    if err["type"] == "json_invalid":
        return ApiError(400, "invalid_json", "The body is not valid JSON.")
    if err["type"] == "model_type":
        return ApiError(400, "invalid_json", "The body must be a JSON object.")
    if field == "postId":
        return ApiError(400, "invalid_post_id", _post_id_message(err))
    if field == "op":
        return ApiError(400, "invalid_op", 'op is required and must be "like" or "unlike".')
    if field == "clientId":
        return ApiError(400, "invalid_client_id", "clientId must be the string id the server issued.")
    return ApiError(400, "invalid_request", f"{field}: {err['msg']}")


def _post_id_message(err: dict) -> str:
    if err["type"] == "missing":
        return "postId is required."
    if err["type"] == "string_type":
        return "postId must be a string."
    return "postId must be 1-128 characters from A-Z a-z 0-9 _ . : -"


def _valid_post_id(value: str) -> str:
    try:
        return LikeRequest.model_validate({"postId": value, "op": "like"}).postId
    except ValidationError as exc:
        raise _validation_error(exc) from None


def _client_hash(request: Request, client_id: str) -> bytes:
    try:
        return request.app.ctx.client_ids.hash(client_id)
    except InvalidClientId as exc:
        raise ApiError(400, "invalid_client_id", str(exc)) from None


def _ip_hash(request: Request) -> bytes:
    ip = request.remote_addr or request.ip or "unknown"
    key = request.app.ctx.settings.client_id_secret.encode()
    return hmac.new(key, b"ip:" + ip.encode(), hashlib.sha256).digest()[:16]


async def _limit(request: Request, kind: str, identities: list[str]) -> None:
    decision = await request.app.ctx.limiter.hit(kind, identities)
    # Allowed requests carry the policy; reading the remaining count would cost
    # another Redis round trip, so the full set is sent with the 429 only.
    request.ctx.rate_headers = {"RateLimit-Limit": str(decision.limit),
                                "RateLimit-Policy": f"{decision.limit};w={decision.window}"}
    if not decision.allowed:
        metrics.RATE_LIMIT_HITS.labels(kind).inc()
        request.ctx.outcome = "rate_limited"
        request.app.ctx.security_events.record("rate_limited", "warning", _ip_hash(request))
        headers = {**request.ctx.rate_headers, "RateLimit-Remaining": str(decision.remaining),
                   "RateLimit-Reset": str(decision.reset_in), "Retry-After": str(decision.reset_in)}
        raise ApiError(429, "rate_limited",
                       f"Rate limit exceeded: at most {decision.limit} {kind}s per {decision.window} s. "
                       f"Retry after {decision.reset_in} s.", headers)


def _database_failure(request: Request, exc: Exception, op: str | None):
    if store.is_database_error(exc):
        store.purge_broken(request.app.ctx.pool)
        metrics.DATABASE_ERRORS.inc()
        if op:
            metrics.LIKE_ATTEMPTS.labels(op, "db_error").inc()
        request.ctx.outcome = "database_unavailable"
        log.warning("database connection failed or query timed out: %s", exc.__class__.__name__)
        raise ApiError(503, "database_unavailable", "The database is unavailable; try again shortly.",
                       {"Retry-After": "5"}) from None
    raise exc


def _if_none_match(request: Request) -> set[str]:
    header = request.headers.get("if-none-match") or ""
    return {t.strip().removeprefix("W/") for t in header.split(",") if t.strip()}

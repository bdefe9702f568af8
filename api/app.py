"""The Sanic app factory: `create_app(settings)`.

Run it with `python -m api serve`, or `sanic api.app:create_app --factory`
(which reads the settings from the environment).
"""
from __future__ import annotations

import logging
import time

from psycopg_pool import AsyncConnectionPool
from sanic import Request, Sanic
from sanic.response import redirect

from api import logs, metrics, store
from api.blueprints import browser, health, likes, ops_metrics
from api.cors import add_cors
from api.errors import JsonErrorHandler
from api.identity import ClientIds
from api.redislayer import CountCache, RateLimiter, RedisGate
from api.security_events import SecurityEvents
from api.settings import Settings

access_log = logging.getLogger("likes.access")


def create_app(settings: Settings | None = None, name: str = "likes") -> Sanic:
    settings = settings or Settings.from_env()
    logs.configure(settings.log_level, settings.log_file)
    app = Sanic(name, error_handler=JsonErrorHandler(), configure_logging=False)
    app.config.update({
        "REQUEST_MAX_SIZE": settings.request_max_size,
        "REQUEST_TIMEOUT": settings.request_timeout,
        "RESPONSE_TIMEOUT": settings.request_timeout + settings.db_timeout_seconds,
        "KEEP_ALIVE_TIMEOUT": 5,
        "GRACEFUL_SHUTDOWN_TIMEOUT": 10.0,
        "ACCESS_LOG": False,
        "PROXIES_COUNT": settings.proxies_count,
        "REAL_IP_HEADER": settings.real_ip_header,
        "REQUEST_ID_HEADER": "X-Request-ID",
        "OAS_UI_DEFAULT": "redoc",
        "OAS_URL_PREFIX": "",
        "OAS_UI_REDOC": True,
        "OAS_UI_SWAGGER": False,
        "CORS": False,          # api/cors.py does CORS
    })
    app.ext.openapi.describe("Likes API", version="1",
                             description="Anonymous post likes. Errors are JSON: {error: {code, message}}.")
    app.ctx.settings = settings
    app.ctx.client_ids = ClientIds(settings.client_id_secret, settings.client_id_secret_previous)
    app.ctx.browser_files = browser.load()
    app.blueprint([likes.bp, health.bp, ops_metrics.bp, browser.bp])
    add_cors(app, settings.cors_allowed_origins)
    app.add_route(lambda request: redirect("/redoc"), "/docs", name="docs")
    app.register_listener(_open_resources, "before_server_start")
    app.register_listener(_close_resources, "after_server_stop")
    app.register_middleware(_start_timer, "request")
    app.register_middleware(_log_request, "response")
    return app


async def _open_resources(app: Sanic) -> None:
    s: Settings = app.ctx.settings
    app.ctx.pool = AsyncConnectionPool(
        s.database_url, min_size=s.db_pool_min, max_size=s.db_pool_max, timeout=s.db_timeout_seconds,
        open=False, name="likes",
        kwargs={"autocommit": True, "connect_timeout": max(1, int(s.db_timeout_seconds)),
                "options": f"-c statement_timeout={int(s.db_timeout_seconds * 1000)}",
                "application_name": "likes-api"})
    # Never wait for the pool here: psycopg closes a pool whose wait() times out.
    # It fills in the background, so the API starts (health 503) while the
    # database is down and serves as soon as it returns.
    await app.ctx.pool.open(wait=False)
    try:
        await store.ping(app.ctx.pool)
    except Exception as exc:
        logging.getLogger("likes").warning("database not reachable at start: %s", exc.__class__.__name__)
    app.ctx.redis = RedisGate(s.redis_url)
    await app.ctx.redis.ping()
    app.ctx.limiter = RateLimiter(s, app.ctx.redis)
    app.ctx.cache = CountCache(app.ctx.redis, s.cache_ttl_seconds)
    app.ctx.security_events = SecurityEvents(app.ctx.pool)
    app.ctx.security_events.start()


async def _close_resources(app: Sanic) -> None:
    await app.ctx.security_events.stop()
    await app.ctx.redis.close()
    await app.ctx.pool.close()


async def _start_timer(request: Request) -> None:
    request.ctx.start = time.perf_counter()


async def _log_request(request: Request, response) -> None:
    elapsed = time.perf_counter() - getattr(request.ctx, "start", time.perf_counter())
    route = request.route.path if request.route else "unmatched"
    route = "/" + route.lstrip("/")
    metrics.REQUEST_DURATION.labels(route, str(response.status)).observe(elapsed)
    response.headers["X-Request-ID"] = str(request.id)
    if request.app.ctx.settings.release:
        # Which release answered: a rolling deploy's tests and operators read it.
        response.headers["X-Likes-Release"] = request.app.ctx.settings.release
    logs.event(access_log, logging.INFO, event="request", method=request.method, route=route,
               status=response.status, duration_ms=round(elapsed * 1000, 2), request_id=str(request.id),
               outcome=getattr(request.ctx, "outcome", "ok" if response.status < 400 else "error"),
               **({"release": request.app.ctx.settings.release} if request.app.ctx.settings.release else {}))


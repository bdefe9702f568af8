"""CORS for the embeddable like button, in one place, for the /api/ routes.

Only the origins in CORS_ALLOWED_ORIGINS get CORS headers: the origin echoed in
Access-Control-Allow-Origin, and the rate-limit headers exposed to the script.
A preflight from an allowed origin gets 204 with the methods, headers and
Max-Age; from any other origin a 403 JSON error and no CORS headers, so the
browser refuses the request before it is sent.

sanic-ext's CORS is not used: it overwrites the Vary header (dropping
Vary: X-Client-Id) and answers a refused preflight with a bare 204.
"""
from __future__ import annotations

from sanic import Request, Sanic
from sanic.response import HTTPResponse

from api.errors import error_response

ALLOW_METHODS = "GET, POST"
ALLOW_HEADERS = "Content-Type, X-Client-Id"
EXPOSE_HEADERS = ("Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, RateLimit-Policy, "
                  "X-Request-ID")
MAX_AGE_SECONDS = 600
PATH_PREFIX = "/api/"


def add_cors(app: Sanic, allowed_origins: tuple[str, ...]) -> None:
    allowed = frozenset(allowed_origins)

    async def answer_preflight(request: Request):
        if not (request.method == "OPTIONS" and request.route is not None and _applies(request)
                and "access-control-request-method" in request.headers):
            return None
        origin = request.headers.get("origin", "")
        if origin not in allowed:
            return error_response(403, "cors_origin_not_allowed",
                                  f"Origin {origin or '(none)'} may not call this API from a browser: "
                                  "the operator can add it to CORS_ALLOWED_ORIGINS.")
        return HTTPResponse(status=204, headers={"Access-Control-Allow-Methods": ALLOW_METHODS,
                                                 "Access-Control-Allow-Headers": ALLOW_HEADERS,
                                                 "Access-Control-Max-Age": str(MAX_AGE_SECONDS)})

    async def add_headers(request: Request, response: HTTPResponse) -> None:
        if not allowed or not _applies(request):
            return
        # Shared caches must keep the answers for each origin apart.
        vary = response.headers.get("vary")
        response.headers["Vary"] = f"{vary}, Origin" if vary else "Origin"
        origin = request.headers.get("origin")
        if origin in allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS

    app.register_middleware(answer_preflight, "request")
    app.register_middleware(add_headers, "response")


def _applies(request: Request) -> bool:
    return request.path.startswith(PATH_PREFIX)

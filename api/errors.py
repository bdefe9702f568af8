"""Every error is JSON: {"error": {"code": "<stable_snake_case>", "message": "..."}}."""
from __future__ import annotations

import logging

from sanic import Request, json
from sanic.exceptions import SanicException
from sanic.handlers import ErrorHandler

log = logging.getLogger("likes.error")

_SANIC_CODES = {
    400: ("bad_request", "The request could not be understood."),
    404: ("not_found", "No such route."),
    405: ("method_not_allowed", "This route does not accept that method."),
    408: ("request_timeout", "The request took too long to arrive."),
    413: ("payload_too_large", "The request body is larger than the limit."),
    415: ("unsupported_media_type", "The body must be JSON, sent as Content-Type: application/json."),
    503: ("service_unavailable", "The service is unavailable, try again shortly."),
}


class ApiError(SanicException):
    """An error with a stable code; raised by handlers, rendered below."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message, status_code=status, headers=headers)
        self.code = code


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None):
    return json({"error": {"code": code, "message": message}}, status=status, headers=headers)


class JsonErrorHandler(ErrorHandler):
    def default(self, request: Request, exception: Exception):
        if isinstance(exception, ApiError):
            return error_response(exception.status_code, exception.code, str(exception), exception.headers)
        if isinstance(exception, SanicException):
            status = exception.status_code
            code, message = _SANIC_CODES.get(status, ("error", "The request failed."))
            if status == 405:
                allowed = getattr(exception, "allowed_methods", None)
                headers = {"Allow": ", ".join(sorted(allowed))} if allowed else None
                return error_response(405, code, message, headers)
            return error_response(status, code, message)
        log.error("unhandled error on %s %s", request.method, request.path, exc_info=exception)
        return error_response(500, "internal_error", "Something went wrong on our side; it has been logged.")

"""Typed request errors: each names its HTTP status, a stable ``code`` and a rejection reason.

Like ``kserve.errors`` (one exception class per status), but every error renders the same
JSON shape, ``{"error": "<human message>", "code": "<machine code>"}``, and never carries a stack
trace or model internals: the message is written for the client, from the client's input.
"""

from __future__ import annotations

from fastapi.responses import ORJSONResponse


class ServingError(Exception):
    """Base class: a request the server refuses. Subclasses fix ``status`` and a default code.

    ``reason`` labels ``roadvision_rejections_total`` (a small fixed vocabulary, unlike the
    message, so that dashboards can group by it).
    """

    status: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        reason: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.reason = reason or self.code
        self.headers = headers or {}

    def to_body(self) -> dict[str, str]:
        return {"error": self.message, "code": self.code}

    def to_response(self) -> ORJSONResponse:
        return ORJSONResponse(self.to_body(), status_code=self.status, headers=self.headers)


class BadRequest(ServingError):
    """400: the request cannot be parsed (malformed JSON, bad base64, wrong request shape)."""

    status = 400
    code = "bad_request"


class Unauthorized(ServingError):
    """401: API keys are enabled and the request carries none, or an unknown one."""

    status = 401
    code = "unauthorized"

    def __init__(self, message: str = "missing or invalid API key", **kwargs) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="roadvision"'})
        super().__init__(message, **kwargs)


class Forbidden(ServingError):
    """403: the route exists but this server does not allow it (model control is off)."""

    status = 403
    code = "forbidden"


class ModelNotFoundError(ServingError):
    """404: no model is served under that name."""

    status = 404
    code = "model_not_found"


class PayloadTooLarge(ServingError):
    """413: the body, or the image's pixel count, exceeds the server's limit."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ServingError):
    """415: an image format the server does not accept (only JPEG, PNG and WebP are)."""

    status = 415
    code = "unsupported_format"


class Unprocessable(ServingError):
    """422: well-formed request whose content breaks the schema (metadata, TTA, image data)."""

    status = 422
    code = "invalid_input"


class RateLimited(ServingError):
    """429: the API key used up its requests for the current window; Retry-After says when."""

    status = 429
    code = "rate_limited"

    def __init__(self, retry_after_s: int, limit: int) -> None:
        super().__init__(
            f"rate limit of {limit} requests per minute exceeded; retry after {retry_after_s} s",
            headers={"Retry-After": str(retry_after_s)},
        )
        self.retry_after_s = retry_after_s


class NotReady(ServingError):
    """503: the model is registered but not loaded (or reloading failed)."""

    status = 503
    code = "model_not_ready"


class RateLimiterUnavailable(ServingError):
    """503: Redis is unavailable and the server's policy is to refuse unchecked requests
    (``ratelimit_on_outage=closed``)."""

    status = 503
    code = "rate_limiter_unavailable"

    def __init__(self) -> None:
        super().__init__("the rate limiter is unavailable; retry shortly",
                         headers={"Retry-After": "1"})


class ForwardWorkerCrashed(ServingError):
    """503: the process computing this request's forward died; it is being restarted."""

    status = 503
    code = "forward_worker_crashed"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


class DeadlineExceeded(ServingError):
    """504: the request ran past the server's per-request deadline; its work was dropped."""

    status = 504
    code = "deadline_exceeded"


class InternalError(ServingError):
    """500: a bug or an unexpected failure; the details go to the server log, not the client."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str = "internal error; the server log has the details") -> None:
        super().__init__(message)

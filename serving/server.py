"""KServe's ModelServer with our inference routes, limits, errors and reloads.

Where we plug into KServe 0.21 (KServe's internals are touched only in ``kserve_seam``):

* ``ServerHooks`` registers our ``/v1/models/{name}:predict``, ``/v2/models/{name}/infer`` and
  ``/v2/models/{name}`` routes ahead of KServe's (the seam drops KServe's routes of the same
  path), adds a guard middleware and replaces the exception handlers so that every error is
  ``{"error", "code"}`` JSON without type names or stack traces.
* ``RoadvisionModelServer`` is the seam's single-process ModelServer with those hooks (one
  front process per replica: the micro-batcher, the caches and the event loop live there; the
  forward runs in its worker processes, see ``forward_workers``).
* ``RoadvisionRepository(ModelRepository)`` implements ``load(name)`` so that
  ``POST /v2/repository/models/{name}/load`` reloads a model from its URI (a promoted MLflow
  alias, or a new bundle in its directory) without a restart.

Limits every request meets: an API key and the rate limit first, the body limit while reading,
a JSON body parsed in a worker thread when it is large (so health and /metrics keep answering),
the compute budget before decoding (``budget``), and one deadline over all of it
(``request_timeout_s``): past it the client gets 504 and the request's queued work is dropped.
The model repository's load/unload routes answer 403 unless ``allow_model_control`` is set,
and need a key when keys are on.

Our routes still run KServe's data plane (``DataPlane.infer`` -> ``Model.__call__`` ->
preprocess/predict/postprocess with KServe's step histograms, ``DataPlane.encode``); only
what comes before (auth, rate limit, body limit, v2 decoding) and the error rendering are ours.
``InferenceDispatch``, the innermost middleware, hands a POST to them straight to
``InferenceRoutes.serve``: FastAPI's router and dependency solving did nothing for them but
cost time.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
import uuid
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from kserve import errors as kerrors
from kserve.model_repository import ModelRepository

from . import audit, metrics
from .areas import AREAS_PATH, AreaRoutes
from .auth import Authenticator, RateLimiter
from .config import ServingConfig
from .errors import (
    BadRequest,
    DeadlineExceeded,
    Forbidden,
    InternalError,
    ModelNotFoundError,
    NotReady,
    PayloadTooLarge,
    ServingError,
)
from .kserve_seam import SingleProcessModelServer, add_innermost_middleware
from .openapi import AREAS_OPENAPI, DESCRIPTION, V1_OPENAPI, V2_OPENAPI, add_docs_routes
from .predictor import CACHE_HEADER, VERSION_HEADER
from .v2codec import decode_request

log = logging.getLogger("roadvision.serving")

V1_PATH = "/v1/models/{model_name}:predict"
V2_PATH = "/v2/models/{model_name}/infer"
V2_METADATA_PATH = "/v2/models/{model_name}"


class JSONBody(Response):
    """JSON rendered by orjson. FastAPI 0.16x deprecates its ``ORJSONResponse`` (a warning in
    the log at every new call site); this is the same rendering without it."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)


def _error_response(exc: ServingError) -> Response:
    return JSONBody(exc.to_body(), status_code=exc.status, headers=exc.headers)


class Guard:
    """Per-server safety settings shared by the routes and the middleware."""

    def __init__(self, config: ServingConfig, auth: Authenticator, limiter: RateLimiter,
                 redis=None, areas=None) -> None:
        self.config = config
        self.auth = auth
        self.limiter = limiter
        self.redis = redis  # the shared client (cache + limiter), warmed at start
        self.areas = areas  # areas.AreasConfig of POST /v1/areas:analyze (None: not set up)


def _content_length(request_headers: Any) -> int | None:
    value = request_headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"Content-Length {value!r} is not an integer",
                         reason="malformed") from None


def _too_large(size: int | str, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body of {size} bytes exceeds the limit of {limit} bytes",
                           code="body_too_large", reason="body_too_large")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 before reading when Content-Length is over ``limit``, and
    while streaming when a chunked (or lying) client sends more."""
    declared = _content_length(request.headers)
    if declared is not None and declared > limit:
        raise _too_large(declared, limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(f"more than {limit}", limit)
        chunks.append(chunk)
    return b"".join(chunks)


class InferenceRoutes:
    """The two inference endpoints, with accounting (metrics + audit) around each request."""

    def __init__(self, dataplane, guard: Guard) -> None:
        self.dataplane = dataplane
        self.guard = guard

    async def v1_predict(self, model_name: str, request: Request) -> Response:
        return await self.serve(request, model_name, "v1")

    async def v2_infer(self, model_name: str, request: Request) -> Response:
        return await self.serve(request, model_name, "v2")

    async def v2_metadata(self, model_name: str) -> Response:
        """KServe's v2 model metadata plus ``parameters``: the model's identity (bundle hash,
        registry name, version and alias, source), which KServe's own response model drops."""
        metadata = await self.dataplane.model_metadata(model_name)  # 404 when not served
        model = self.dataplane.model_registry.get_model(model_name)
        identity = model.identity() if hasattr(model, "identity") else {}
        identity.pop("name", None)
        return JSONBody({**metadata, "parameters": identity})

    async def serve(self, request: Request, model_name: str, protocol: str) -> Response:
        """One inference request, answered: every error is caught here and rendered as our
        JSON error (nothing reaches FastAPI's exception handlers), then metrics and audit."""
        start = time.perf_counter()
        headers = dict(request.headers)
        model = self.dataplane.model_registry.get_model(model_name)
        label = model_name if model is not None else metrics.UNKNOWN_MODEL
        request_id = (headers.get("x-request-id") or uuid.uuid4().hex)[:128]
        record = audit.AuditRecord(request_id=request_id, key_id="-", model=label,
                                   protocol=protocol, method=request.method,
                                   route=request.url.path)
        metrics.INFLIGHT.labels(label).inc()
        try:
            response = await self._infer(request, headers, model, model_name, protocol, record)
        except ServingError as exc:
            response = self._refuse(exc, label, record)
        except kerrors.InvalidInput as exc:  # e.g. an unknown requested v2 output
            response = self._refuse(BadRequest(str(exc), reason="malformed"), label, record)
        except kerrors.ModelNotFound:  # unloaded while this request was running
            response = self._refuse(ModelNotFoundError(f"model {model_name!r} is not served"),
                                    label, record)
        except Exception:  # noqa: BLE001 - a bug: log it fully, tell the client nothing inside
            log.exception("request %s to %s failed", request_id, model_name)
            response = self._refuse(InternalError(), label, record)
        finally:
            metrics.INFLIGHT.labels(label).dec()
        elapsed = time.perf_counter() - start
        record.status = response.status_code
        record.latency_ms = elapsed * 1000
        metrics.REQUESTS.labels(label, protocol, str(response.status_code)).inc()
        metrics.LATENCY.labels(label, protocol).observe(elapsed)
        response.headers["x-request-id"] = request_id
        audit.emit(record)
        return response

    @staticmethod
    def _refuse(exc: ServingError, label: str, record: audit.AuditRecord) -> Response:
        record.code = exc.code
        if 400 <= exc.status < 500:
            metrics.REJECTIONS.labels(label, exc.reason).inc()
        return _error_response(exc)

    async def _infer(self, request: Request, headers: dict, model, model_name: str,
                     protocol: str, record: audit.AuditRecord) -> Response:
        limit = self.guard.config.request_timeout_s
        try:
            async with asyncio.timeout(limit):
                return await self._infer_within_deadline(request, headers, model, model_name,
                                                         protocol, record)
        except TimeoutError:
            # The cancellation reached predict(): its queued items are cancelled futures, which
            # the batcher skips, so no forward runs for a request nobody waits for.
            raise DeadlineExceeded(f"the request took longer than this server's deadline of "
                                   f"{limit:g} s; its work was dropped", reason="deadline"
                                   ) from None

    async def _infer_within_deadline(self, request: Request, headers: dict, model,
                                     model_name: str, protocol: str,
                                     record: audit.AuditRecord) -> Response:
        guard = self.guard
        if model is None:
            served = sorted(self.dataplane.model_registry.get_models())
            raise ModelNotFoundError(f"model {model_name!r} is not served; served: {served}")
        if getattr(model, "loaded", None) is not None:
            record.version = model.loaded.version
        client = request.client.host if request.client else None
        record.key_id = guard.auth.key_id(headers, client)
        await guard.limiter.check(record.key_id, model_name,
                                  guard.auth.limit_for(record.key_id))
        body = await read_body(request, guard.config.max_body_bytes)
        if not model.ready:
            raise NotReady(f"model {model_name!r} is not ready (loading or failed to load)")
        payload = await self._decode(body, headers, model_name, protocol)
        result, response_headers = await self.dataplane.infer(
            model_name=model_name, request=payload, headers=headers)
        record.version = response_headers.get(VERSION_HEADER, "")
        record.cache = response_headers.get(CACHE_HEADER, "off")
        if protocol == "v1":
            record.instances = len(result.get("predictions", []))
            record.tta = ",".join(sorted({p.get("tta", "") for p in result["predictions"]}))
        else:
            record.instances = result.outputs[0].shape[0] if result.outputs else 0
            record.tta = (result.parameters or {}).get("tta", "")
        encoded, encode_headers = self.dataplane.encode(
            model_name=model_name, response=result, headers=headers, req_attributes={})
        response_headers.update(encode_headers)
        response_headers.pop("content-length", None)
        response_headers.pop("content-type", None)
        if isinstance(encoded, bytes):  # v2 with binary outputs
            return Response(content=encoded, media_type="application/octet-stream",
                            headers=response_headers)
        return JSONBody(content=encoded, headers=response_headers)


    async def _decode(self, body: bytes, headers: dict, model_name: str, protocol: str):
        """The request body as KServe's payload; parsed in a worker thread when large."""
        from .validation import load_json

        max_elements = self.guard.config.max_instances

        def decode():
            if protocol == "v1":
                return load_json(body)
            return decode_request(body, headers, model_name, max_elements=max_elements)

        if len(body) <= INLINE_PARSE_BYTES:
            return decode()
        return await asyncio.to_thread(decode)


#: Bodies up to this size are parsed on the event loop (well under a millisecond).
INLINE_PARSE_BYTES = 256 << 10


def route_pattern(template: str) -> re.Pattern[str]:
    """The regex of a route template, capturing its ``{model_name}`` (one path segment)."""
    return re.compile("^" + re.escape(template).replace(r"\{model_name\}", "([^/]+)") + "$")


#: The inference routes as (protocol, pattern capturing the model name), for the dispatch:
#: made from the templates the router registers, so the two cannot drift apart.
INFERENCE_ROUTES = (("v1", route_pattern(V1_PATH)), ("v2", route_pattern(V2_PATH)))
#: Any inference route (the middlewares below leave those to the routes' own checks).
OUR_ROUTES = re.compile("|".join(pattern.pattern for _, pattern in INFERENCE_ROUTES))
CONTROL_ROUTES = re.compile(r"^/v2/repository/")


class InferenceDispatch:
    """The innermost middleware: a POST to an inference route goes straight to
    ``InferenceRoutes.serve``.

    Those requests parse their own body, catch every error and render their own response, so
    FastAPI's router, dependency solving and exception middleware do nothing for them except
    cost time: about an eighth of a cached request's CPU. Everything outside (the error guard,
    our middlewares, an operator's access log) still sees them. The routes stay registered
    with FastAPI, for the OpenAPI document and for what this passes on (another method gets
    FastAPI's 405).
    """

    def __init__(self, app, hooks: ServerHooks) -> None:
        self.app = app
        self.hooks = hooks  # its inference routes exist once KServe has called add_routes

    async def __call__(self, scope, receive, send):
        routes = self.hooks.inference
        if scope["type"] == "http" and scope["method"] == "POST" and routes is not None:
            path, root = scope["path"], scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root):]  # what the router matches (Starlette's route path)
            for protocol, pattern in INFERENCE_ROUTES:
                match = pattern.match(path)
                if match:
                    response = await routes.serve(Request(scope, receive), match[1], protocol)
                    return await response(scope, receive, send)
        return await self.app(scope, receive, send)


class GuardMiddleware:
    """ASGI middleware for every route that is not ours: the body limit, (when keys are
    enabled) an API key on every POST - KServe's model-repository load/unload, ``:explain`` and
    the versioned v2 infer route must not be open when inference is not - and the model
    repository routes only when model control is enabled."""

    def __init__(self, app, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or OUR_ROUTES.match(scope.get("path", "")):
            return await self.app(scope, receive, send)  # our routes check for themselves
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            declared = _content_length(headers)
            limit = self.guard.config.max_body_bytes
            if declared is not None and declared > limit:
                raise _too_large(declared, limit)
            if scope.get("method") == "POST" and self.guard.auth.enabled:
                self.guard.auth.key_id(headers)
            if (CONTROL_ROUTES.match(scope.get("path", ""))
                    and not self.guard.config.allow_model_control):
                raise Forbidden("model control (load/unload) is disabled on this server; "
                                "start it with --allow-model-control to enable it",
                                code="model_control_disabled", reason="forbidden")
        except ServingError as exc:
            return await _error_response(exc)(scope, receive, send)
        return await self.app(scope, receive, send)


def _caller(auth: Authenticator, headers: dict, client: str | None) -> str:
    """The key id for the log line; "-" when the key is missing or unknown (the guard or the
    route answers 401 for that, and the log must not fail the request)."""
    try:
        return auth.key_id(headers, client)
    except ServingError:
        return "-"


class RequestLogMiddleware:
    """One structured log line for every HTTP request that is not an inference request (those
    log their own line, with the model, version and cache fields: ``InferenceRoutes.serve``).
    Replaces uvicorn's access line and KServe's two timing lines per request."""

    def __init__(self, app, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or OUR_ROUTES.match(scope.get("path", "")):
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        client = (scope.get("client") or (None,))[0]
        record = audit.AuditRecord(
            request_id=(headers.get("x-request-id") or uuid.uuid4().hex)[:128],
            key_id=_caller(self.guard.auth, headers, client),
            model="", protocol="http", cache="", method=scope.get("method", ""),
            route=scope.get("path", ""))

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                record.status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            record.latency_ms = (time.perf_counter() - start) * 1000
            record.status = record.status or 500
            audit.emit(record, event="http")


def _json_error(status: int, message: str, code: str) -> JSONBody:
    return JSONBody({"error": message, "code": code}, status_code=status)


async def _serving_error_handler(_, exc: ServingError):
    return _error_response(exc)


async def _invalid_input_handler(_, exc):
    return _json_error(400, str(exc), "bad_request")


async def _not_found_handler(_, exc):
    return _json_error(404, str(exc), "model_not_found")


async def _not_ready_handler(_, exc):
    log.warning("%s", exc)  # may hold the load error: for the log, not for the client
    name = getattr(exc, "model_name", "")
    return _json_error(503, f"model {name!r} is not ready; the server log has the details",
                       "model_not_ready")


async def _server_not_ready_handler(_, exc):
    return _json_error(503, str(exc), "server_not_ready")


async def _not_implemented_handler(_, exc):
    # KServe raises NotImplementedError for what a client asked and this server does not have
    # (a model_version, an explainer): a missing resource (404), not a server fault (5xx).
    return _json_error(404, "not supported by this server (model versions and explainers are "
                            "not served)", "not_supported")


async def _internal_handler(_, exc):
    log.error("unhandled error", exc_info=exc)
    return _json_error(500, "internal error; the server log has the details", "internal_error")


class ServerHooks:
    """What roadvision adds to KServe's app (``kserve_seam.AppHooks``): the inference and
    metadata routes, the guard middleware, error rendering, and warming the Redis pool."""

    default_response_class = JSONBody
    #: KServe's timing middleware only feeds the kserve.trace log lines that
    #: RoadvisionModelServer silences (/metrics has the same latencies): its cost buys nothing
    kserve_timing = False

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        # KServe binds 0.0.0.0; we bind what the operator chose (127.0.0.1 by default, the
        # images and the chart set 0.0.0.0).
        self.host = guard.config.host
        self.inference: InferenceRoutes | None = None  # made by add_routes

    def add_routes(self, app: FastAPI, dataplane) -> list:
        app.title = "roadvision serving"
        app.description = DESCRIPTION
        routes = self.inference = InferenceRoutes(dataplane, self.guard)
        for path, endpoint, extra, summary in (
            (V1_PATH, routes.v1_predict, V1_OPENAPI, "Predict (KServe v1, JSON)"),
            (V2_PATH, routes.v2_infer, V2_OPENAPI,
             "Infer (Open Inference Protocol v2, binary tensor extension supported)"),
        ):
            app.add_api_route(path, endpoint, methods=["POST"], response_model=None,
                              summary=summary, openapi_extra=extra, tags=["roadvision"])
        app.add_api_route(V2_METADATA_PATH, routes.v2_metadata, methods=["GET"],
                          response_model=None, tags=["roadvision"],
                          summary="Model metadata (v2), with the model's registry identity")
        ours = app.router.routes[-3:]
        # /docs: Swagger UI from local files (KServe's, with --enable_docs_url, loads a CDN's)
        ours += add_docs_routes(app)
        # POST /v1/areas:analyze: analysis by coordinates, next to predict (serving/areas.py)
        areas = AreaRoutes(dataplane, self.guard, self.guard.areas)
        app.add_api_route(AREAS_PATH, areas.analyze, methods=["POST"], response_model=None,
                          summary="Analyse an area (WGS84 bbox or polygon): lane-marking "
                                  "vectors", openapi_extra=AREAS_OPENAPI, tags=["roadvision"])
        # Ours come first, so they win; the seam drops KServe's routes of the same path and
        # method so that the OpenAPI document describes one operation per path.
        return ours

    def add_middlewares(self, app: FastAPI) -> None:
        # KServe adds its middlewares before its routes, hence before add_routes has made
        # the inference routes: the dispatch finds them on these hooks when requests come.
        add_innermost_middleware(app, InferenceDispatch, hooks=self)
        app.add_middleware(GuardMiddleware, guard=self.guard)
        # added last, so outermost: it times and logs what the guard refuses too
        app.add_middleware(RequestLogMiddleware, guard=self.guard)

    def add_exception_handlers(self, app: FastAPI) -> None:
        app.add_exception_handler(ServingError, _serving_error_handler)
        app.add_exception_handler(kerrors.InvalidInput, _invalid_input_handler)
        app.add_exception_handler(kerrors.ModelNotFound, _not_found_handler)
        app.add_exception_handler(kerrors.ModelNotReady, _not_ready_handler)
        app.add_exception_handler(kerrors.ServerNotReady, _server_not_ready_handler)
        app.add_exception_handler(kerrors.ServerNotLive, _server_not_ready_handler)
        app.add_exception_handler(kerrors.InferenceError, _internal_handler)
        app.add_exception_handler(NotImplementedError, _not_implemented_handler)
        app.add_exception_handler(Exception, _internal_handler)

    async def before_serving(self) -> None:
        redis = self.guard.limiter.redis or self.guard.redis
        if redis is not None:  # connect the pool before traffic: a burst must not pay for it
            opened = await redis.warm()
            log.info("redis: %d of %d pooled connections open", opened, redis.pool_size)


class RoadvisionRepository(ModelRepository):
    """Model repository whose ``load(name)`` reloads the model from its URI."""

    async def load(self, name: str) -> bool:
        model = self.get_model(name)
        if model is None:
            raise KeyError(f"model {name} is not served")
        # Loading reads files and runs a warm-up forward: keep it off the event loop. The old
        # version keeps serving until the new one has answered its warm-up.
        await asyncio.to_thread(model.load)
        return model.ready


class RoadvisionModelServer(SingleProcessModelServer):
    """KServe's ModelServer in one process, with roadvision's routes, limits and reloads."""

    def __init__(self, *, guard: Guard, **kwargs) -> None:
        kwargs.setdefault("registered_models", RoadvisionRepository())
        super().__init__(hooks=ServerHooks(guard), **kwargs)
        self.guard = guard
        # One line per request is ours (audit); KServe's trace logger (set up by the line
        # above) writes two timing lines per request and one per inference: they are the same
        # latencies, which /metrics has as histograms.
        logging.getLogger("kserve.trace").setLevel(logging.WARNING)
        if not kwargs.get("access_log_format"):  # asked for: the operator's own access log
            logging.getLogger("uvicorn.access").setLevel(logging.WARNING)

    def start(self, models: list) -> None:
        # Decoding and large-JSON parsing run in threads (and, with --forward_workers 0, the
        # forward); the event loop thread (health, /metrics, every request's I/O) waits up to
        # one switch interval for the GIL at each hand-off. 1 ms instead of Python's 5 ms
        # keeps health answering fast while a costly request computes.
        sys.setswitchinterval(0.001)
        super().start(models)

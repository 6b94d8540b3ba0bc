"""The one module that touches KServe's (and FastAPI's router) internals; everything else in
``roadvision.serving`` uses KServe's public API.

KServe 0.21 has no public hook for what a server adds to its FastAPI app, and
``ModelServer.start`` builds its ``RESTServer`` itself. So, here and only here:

* ``HookedRESTServer`` overrides ``RESTServer``'s three private build steps
  (``_register_endpoints``, ``_add_middlewares``, ``_add_exception_handlers``, which
  ``create_application`` calls) to run an ``AppHooks`` object after each: our routes go first
  (so they win), KServe's routes of the same path and method are then dropped from the router
  (``replace_routes``: FastAPI keeps no public "remove route"), our middleware wraps KServe's,
  and our exception handlers replace KServe's. ``add_innermost_middleware`` puts one inside
  all of them (Starlette's ``add_middleware`` only adds outermost ones).
* ``SingleProcessModelServer.start`` is ``ModelServer.start`` for one process built from
  public pieces (``register_model``, ``Model.start``, ``setup_event_loop``,
  ``register_signal_handler``, ``servers``), with ``HookedRESTServer`` and an
  ``AppHooks.before_serving`` coroutine run in the server's event loop; it sets the private
  ``_rest_server`` / ``_grpc_server`` attributes that ``ModelServer.stop`` reads. Unlike
  KServe's, it serves on the loop ``--event-loop`` names (``new_event_loop``, uvicorn's own
  loop choice: uvloop by default) instead of ``asyncio.run``'s standard one.

``tests/test_kserve_seam.py`` pins every private name and signature used here, so a KServe or
FastAPI upgrade that moves one fails that test by name instead of breaking serving silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Protocol

from fastapi import FastAPI
from kserve import ModelServer
from kserve.errors import NoModelReady
from kserve.model import BaseKServeModel
from kserve.protocol.rest.server import RESTServer

log = logging.getLogger("roadvision.serving")

#: The KServe release whose internals this module was written against (``pyproject`` pins it).
KSERVE_VERSION = "0.21.0"


class AppHooks(Protocol):
    """What a server adds to KServe's app; each hook runs after KServe's own step."""

    host: str  # the address to bind (KServe binds 0.0.0.0)
    #: what KServe's own routes (health, model ready, ...) render JSON with: KServe's app sets
    #: FastAPI's ORJSONResponse, deprecated since FastAPI 0.16x (a warning in the log);
    #: None (or absent) keeps KServe's
    default_response_class: type | None
    #: False drops KServe's per-request timing middleware (``drop_kserve_timing``); absent
    #: keeps it
    kserve_timing: bool

    def add_routes(self, app: FastAPI, dataplane) -> Iterable:
        """Add routes before KServe's; returns those that replace KServe's of the same path
        and method."""

    def add_middlewares(self, app: FastAPI) -> None: ...

    def add_exception_handlers(self, app: FastAPI) -> None: ...

    async def before_serving(self) -> None:
        """Runs in the server's event loop before it accepts connections."""


def replace_routes(router, replacements: Iterable) -> None:
    """Drop every route with the path and a method of one of ``replacements`` except the
    replacements themselves, also inside included routers (FastAPI >= 0.16x keeps
    ``include_router`` children in their own router)."""
    replacements = list(replacements)
    taken = {(r.path, m) for r in replacements for m in r.methods}
    kept = []
    for route in router.routes:
        child = getattr(route, "original_router", None)
        if child is not None:
            replace_routes(child, replacements)
        methods = getattr(route, "methods", None) or set()
        path = getattr(route, "path", None)
        if route in replacements or not any((path, m) in taken for m in methods):
            kept.append(route)
    if len(kept) != len(router.routes):
        router.routes[:] = kept
        mark_changed = getattr(router, "_mark_routes_changed", None)
        if mark_changed is not None:
            mark_changed()


def new_event_loop(config) -> asyncio.AbstractEventLoop:
    """A new event loop of the kind a ``uvicorn.Config`` names (``loop``: KServe passes its
    ``--event-loop`` there), made by uvicorn's own choice: uvloop for "uvloop", and for "auto"
    when uvloop is installed; the standard loop for "asyncio"."""
    factory = config.get_loop_factory() or asyncio.new_event_loop
    return factory()


def drop_kserve_timing(app: FastAPI) -> None:
    """Remove the ``TimingMiddleware`` KServe's ``_add_middlewares`` adds: it takes two
    ``getrusage`` readings and matches the path against every route on each request, only to
    write a ``kserve.trace`` INFO line."""
    from timing_asgi import TimingMiddleware

    app.user_middleware[:] = [m for m in app.user_middleware if m.cls is not TimingMiddleware]


def add_innermost_middleware(app: FastAPI, cls: type, **options) -> None:
    """Add ``cls`` inside every middleware added so far and to come (KServe's access logger
    included), just outside FastAPI's exception middleware and router; ``add_middleware``
    always adds the outermost one."""
    from starlette.middleware import Middleware

    app.user_middleware.append(Middleware(cls, **options))


class HookedRESTServer(RESTServer):
    """KServe's REST server with ``hooks`` run after each of its app-building steps."""

    def __init__(self, *args, hooks: AppHooks, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.hooks = hooks
        self.config.host = hooks.host  # uvicorn.Config, built by RESTServer.__init__

    def _register_endpoints(self, app: FastAPI) -> None:
        # Before KServe includes its routers: each takes its response class from the app's
        # router when it is included.
        response_class = getattr(self.hooks, "default_response_class", None)
        if response_class is not None:
            app.router.default_response_class = response_class
        ours = list(self.hooks.add_routes(app, self.dataplane))
        super()._register_endpoints(app)
        replace_routes(app.router, ours)
        app.openapi_schema = None  # rebuilt without KServe's replaced operations

    def _add_middlewares(self, app: FastAPI) -> None:
        super()._add_middlewares(app)
        if not getattr(self.hooks, "kserve_timing", True):
            drop_kserve_timing(app)
        self.hooks.add_middlewares(app)

    def _add_exception_handlers(self, app: FastAPI) -> None:
        super()._add_exception_handlers(app)
        self.hooks.add_exception_handlers(app)


class SingleProcessModelServer(ModelServer):
    """KServe's ModelServer in one process (workers=1), with ``HookedRESTServer``."""

    def __init__(self, *, hooks: AppHooks, **kwargs) -> None:
        if kwargs.get("workers", 1) != 1:
            raise ValueError("roadvision serves from one process per replica (workers=1); "
                             "scale with replicas")
        super().__init__(**kwargs)
        self.hooks = hooks

    def start(self, models: list[BaseKServeModel]) -> None:
        """Register ``models`` (ready or not: ours answer 503 until loaded), then serve."""
        from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
        from kserve.model_server import args as kserve_args

        for model in models:
            self.register_model(model)
            model.enable_latency_logging = self.enable_latency_logging
            model.start()
            if model.engine:
                self.servers.append(model.start_engine())
        if models and not any(model.ready for model in models):
            raise NoModelReady(models)
        self._rest_server = HookedRESTServer(
            FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension,
            self.http_port, access_log_format=self.access_log_format, workers=1,
            grace_period=self.grace_period, event_loop=self.event_loop,
            timeout_keep_alive=self.timeout_keep_alive, ssl_certfile=self.ssl_certfile,
            ssl_keyfile=self.ssl_keyfile, hooks=self.hooks,
        )
        self.servers.append(self._rest_server.start())
        if self.enable_grpc:
            from kserve.protocol.grpc.server import GRPCServer

            self._grpc_server = GRPCServer(
                self.grpc_port, self.dataplane, self.model_repository_extension,
                kwargs=vars(kserve_args), grace_period=self.grace_period,
            )
            self.servers.append(self._grpc_server.start(self.max_threads))
        # KServe's start() ends in asyncio.run(): the standard loop whatever --event_loop says,
        # and setup_event_loop() configures a loop that asyncio.run then does not use. Here the
        # loop is the one the flag names (uvicorn's choice from the REST server's config),
        # made current first so that setup_event_loop()'s exception handler and default
        # executor apply to the loop that serves.
        loop = new_event_loop(self._rest_server.config)
        asyncio.set_event_loop(loop)
        self.setup_event_loop()
        self.register_signal_handler()
        with asyncio.Runner(loop_factory=lambda: loop) as runner:
            runner.run(self._run())

    async def _run(self) -> None:
        loop = type(asyncio.get_running_loop())
        log.info("event loop: %s.%s (--event-loop %s)", loop.__module__, loop.__qualname__,
                 self.event_loop)
        await self.hooks.before_serving()
        await asyncio.gather(*self.servers)

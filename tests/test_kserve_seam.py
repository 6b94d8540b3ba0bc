"""Pins every KServe (and FastAPI router) internal that ``roadvision.serving.kserve_seam`` uses.

The seam overrides private ``RESTServer`` methods and re-implements ``ModelServer.start``: if an
upgrade renames one of these, changes its signature or stops calling it, this file fails by
name, instead of the server silently losing its routes, limits or error rendering.
"""

from __future__ import annotations

import asyncio
import inspect
from importlib import metadata

import pytest

pytest.importorskip("kserve")

from fastapi import FastAPI  # noqa: E402
from kserve import ModelServer  # noqa: E402
from kserve.protocol.rest.server import RESTServer  # noqa: E402

from roadvision.serving import kserve_seam  # noqa: E402


def _params(function) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_the_installed_kserve_is_the_one_the_seam_was_written_for():
    assert metadata.version("kserve") == kserve_seam.KSERVE_VERSION


@pytest.mark.parametrize("name", ["_register_endpoints", "_add_middlewares",
                                  "_add_exception_handlers"])
def test_rest_server_build_steps_exist_and_are_called_by_create_application(name):
    assert _params(getattr(RESTServer, name)) == ["self", "app"]
    # create_application() is where KServe calls them; our overrides run only if it still does
    assert f"self.{name}(app)" in inspect.getsource(RESTServer.create_application)


def test_rest_server_constructor_and_config_match_what_the_seam_passes():
    assert _params(RESTServer.__init__) == [
        "self", "app", "data_plane", "model_repository_extension", "http_port",
        "access_log_format", "workers", "grace_period", "event_loop", "timeout_keep_alive",
        "ssl_certfile", "ssl_keyfile"]
    # HookedRESTServer sets config.host: RESTServer.__init__ must build a uvicorn.Config there;
    # the seam's start() takes the serving loop from that config's loop (--event-loop)
    source = inspect.getsource(RESTServer.__init__)
    assert "self.config = uvicorn.Config(" in source and "loop=event_loop" in source
    assert inspect.iscoroutinefunction(RESTServer.start)


def test_model_server_attributes_and_public_steps_used_by_start():
    server = ModelServer(http_port=0, grpc_port=0, enable_grpc=False)
    for attribute in ("dataplane", "model_repository_extension", "servers", "http_port",
                      "grpc_port", "access_log_format", "grace_period", "event_loop",
                      "timeout_keep_alive", "ssl_certfile", "ssl_keyfile", "enable_grpc",
                      "max_threads", "enable_latency_logging", "registered_models",
                      "_rest_server", "_grpc_server"):
        assert hasattr(server, attribute), attribute
    for method in ("register_model", "setup_event_loop", "register_signal_handler", "stop"):
        assert callable(getattr(server, method)), method
    # stop() reads _grpc_server: the seam sets it so that gRPC (when enabled) shuts down
    assert "self._grpc_server" in inspect.getsource(ModelServer.stop)


def test_start_replicates_kserve_start_steps():
    """The seam's start() mirrors ModelServer.start: if KServe adds a step, look at it."""
    source = inspect.getsource(ModelServer.start)
    for step in ("_register_and_check_atleast_one_model_is_ready", "RESTServer(",
                 "self.servers.append", "GRPCServer(", "self.setup_event_loop()",
                 "self.register_signal_handler()", "asyncio.run(self._serve())"):
        assert step in source, step
    checks = inspect.getsource(ModelServer._register_and_check_atleast_one_model_is_ready)
    for step in ("self.register_model(model)", "model.enable_latency_logging", "model.start()",
                 "model.engine", "model.start_engine()", "NoModelReady"):
        assert step in checks, step


def test_grpc_server_and_constants_used_by_start():
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.model_server import args
    from kserve.protocol.grpc.server import GRPCServer

    assert FASTAPI_APP_IMPORT_STRING == "kserve.model_server:app"
    assert vars(args)  # a parsed Namespace
    assert _params(GRPCServer.__init__) == ["self", "port", "data_plane",
                                           "model_repository_extension", "kwargs",
                                           "grace_period"]
    assert _params(GRPCServer.start) == ["self", "max_workers"]


def test_replace_routes_drops_kserve_duplicates_inside_included_routers():
    """FastAPI keeps included routers' routes in ``original_router`` (>= 0.16x) and caches
    them (``_mark_routes_changed``): replace_routes must reach both."""
    from fastapi import APIRouter

    app = FastAPI(docs_url=None, redoc_url=None)

    async def ours():
        return "ours"

    async def theirs():
        return "theirs"

    app.add_api_route("/v1/models/{model_name}:predict", ours, methods=["POST"])
    replacement = app.router.routes[-1]
    child = APIRouter()
    child.add_api_route("/v1/models/{model_name}:predict", theirs, methods=["POST"])
    child.add_api_route("/v1/models/{model_name}", theirs, methods=["GET"])
    app.include_router(child)
    kserve_seam.replace_routes(app.router, [replacement])

    def endpoints(router) -> list[tuple[str, str]]:
        found = []
        for route in router.routes:
            if getattr(route, "original_router", None) is not None:
                found += endpoints(route.original_router)
            elif hasattr(route, "endpoint"):
                found.append((route.path, route.endpoint.__name__))
        return found

    assert sorted({e for e in endpoints(app.router) if e[0].startswith("/v1/")}) == [
        ("/v1/models/{model_name}", "theirs"), ("/v1/models/{model_name}:predict", "ours")]
    from fastapi.testclient import TestClient

    client = TestClient(app)
    assert client.post("/v1/models/x:predict").json() == "ours"
    assert client.get("/v1/models/x").json() == "theirs"


def test_hooked_rest_server_builds_our_app(monkeypatch):
    """The seam's REST server runs every hook on a fresh app, and ours win."""
    import kserve.model_server as kms
    from kserve.model_repository import ModelRepository
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension

    app = FastAPI()
    monkeypatch.setattr(kms, "app", app)  # create_application imports kserve.model_server:app
    calls = []

    class Hooks:
        host = "127.0.0.1"

        def add_routes(self, app, dataplane):
            async def live():
                return {"ours": True}

            app.add_api_route("/", live, methods=["GET"])
            calls.append("routes")
            return app.router.routes[-1:]

        def add_middlewares(self, app):
            calls.append("middlewares")

        def add_exception_handlers(self, app):
            app.add_exception_handler(KeyError, lambda *_: None)
            calls.append("handlers")

        async def before_serving(self):
            pass

    repository = ModelRepository()
    server = kserve_seam.HookedRESTServer(
        "kserve.model_server:app", DataPlane(model_registry=repository),
        ModelRepositoryExtension(model_registry=repository), 0, hooks=Hooks())
    assert server.config.host == "127.0.0.1"
    server.create_application()
    assert sorted(calls) == ["handlers", "middlewares", "routes"]
    from fastapi.testclient import TestClient

    assert TestClient(app).get("/").json() == {"ours": True}
    assert KeyError in app.exception_handlers


@pytest.mark.parametrize("kind,module", [("auto", "uvloop"), ("uvloop", "uvloop"),
                                         ("asyncio", "asyncio")])
def test_the_serving_loop_is_the_one_event_loop_names(kind, module):
    import uvicorn

    loop = kserve_seam.new_event_loop(uvicorn.Config(FastAPI(), loop=kind))
    try:
        assert type(loop).__module__.split(".")[0] == module
        assert loop.run_until_complete(asyncio.sleep(0, "ran")) == "ran"
    finally:
        loop.close()


@pytest.mark.parametrize("keep", [True, False])
def test_kserve_timing_middleware_is_dropped_only_when_the_hooks_say_so(monkeypatch, keep):
    import kserve.model_server as kms
    from kserve.model_repository import ModelRepository
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension
    from timing_asgi import TimingMiddleware

    app = FastAPI()
    monkeypatch.setattr(kms, "app", app)

    class Hooks:
        host = "127.0.0.1"
        kserve_timing = keep

        def add_routes(self, app, dataplane):
            return []

        def add_middlewares(self, app):
            pass

        def add_exception_handlers(self, app):
            pass

    repository = ModelRepository()
    kserve_seam.HookedRESTServer(
        "kserve.model_server:app", DataPlane(model_registry=repository),
        ModelRepositoryExtension(model_registry=repository), 0, hooks=Hooks(),
    ).create_application()
    classes = [m.cls for m in app.user_middleware]
    assert (TimingMiddleware in classes) is keep


def test_an_innermost_middleware_runs_inside_those_added_before_and_after():
    from fastapi.testclient import TestClient

    order = []

    def recorder(label):
        class Record:
            def __init__(self, app):
                self.app = app

            async def __call__(self, scope, receive, send):
                order.append(label)
                await self.app(scope, receive, send)
        return Record

    app = FastAPI()
    app.add_api_route("/", lambda: order.append("route") or {}, methods=["GET"])
    app.add_middleware(recorder("earlier"))
    kserve_seam.add_innermost_middleware(app, recorder("innermost"))
    app.add_middleware(recorder("later"))
    assert TestClient(app).get("/").status_code == 200
    assert order == ["later", "earlier", "innermost", "route"]

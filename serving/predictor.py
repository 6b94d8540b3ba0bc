"""The KServe predictor: ``load`` / ``preprocess`` / ``predict`` / ``postprocess``, nothing else.

* ``load()`` resolves the model URI (a bundle directory such as ``/mnt/models``, or
  ``models:/NAME@ALIAS`` from MLflow), loads the bundle, answers one warm-up forward and only
  then sets ``ready``. Calling it again (KServe's ``/v2/repository/models/NAME/load``) loads the
  URI afresh and swaps the new version in atomically; requests already queued finish on the
  version that keyed them, so a cache entry is never written under the wrong version.
* ``preprocess`` validates the request (v1 dict or v2 ``InferRequest``) without decoding pixels,
  keys every instance, looks the keys up in Redis, and decodes only the misses (in a thread).
* ``predict`` sends the misses through the micro-batcher (TTA merged into the same forward) to
  the version's forward worker processes (``forward_workers``; ``--forward_workers 0``: a
  thread here) and stores their results in the cache (write-behind: no answer waits for it).
* ``postprocess`` shapes the v1 JSON or the v2 ``InferResponse``; cached and fresh results are
  rendered by the same code, so a hit's body equals the miss's except ``cached``. Both carry the
  model's identity (``ModelIdentity``: bundle hash, registry name, version and alias, source).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from kserve import Model
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from roadvision.data.images import ImageError, decode_image, probe_image
from roadvision.errors import UserError

from . import metrics
from .batching import MicroBatcher, ThreadRunner
from .cache import PredictionCache, cache_key
from .config import ServingConfig
from .errors import (
    NotReady,
    PayloadTooLarge,
    ServingError,
    Unprocessable,
    UnsupportedMediaType,
)
from .forward_workers import ForwardPool
from .payload_log import from_serving_config as payload_logger
from .redis_client import ResilientRedis
from .validation import Instance, parse_v1, parse_v2

log = logging.getLogger("roadvision.serving")

#: Response headers that tell clients (and the audit log) what happened.
VERSION_HEADER = "x-roadvision-model-version"
CACHE_HEADER = "x-roadvision-cache"


def resolve_bundle(uri: str) -> Path:
    """A local bundle directory for ``uri`` (directory, ``file://`` or ``models:/`` URI).

    A directory is a bundle or an MLflow model holding one (``artifacts/bundle/``, as KServe's
    storage initializer downloads it into ``/mnt/models``): ``models.bundle.locate_bundle``.
    """
    if uri.startswith("models:/"):
        from roadvision.registry import download_bundle

        return Path(download_bundle(uri))
    from roadvision.models.bundle import locate_bundle

    path = Path(uri.removeprefix("file://"))
    if not path.is_dir():
        raise UserError(f"model URI {uri!r}: no such directory (expected a model bundle "
                        "directory or models:/NAME@ALIAS)")
    return locate_bundle(path)


#: Requests whose images total at most this many pixels (read from the headers) are decoded on
#: the event loop (about a millisecond for a 224x224 JPEG); larger ones in a worker thread.
INLINE_DECODE_PIXELS = 512 * 512


def _sizes(items: list[Item], max_pixels: int) -> list[tuple[int, int] | None]:
    """(width, height) announced by each image header; None where the header is unreadable
    or over ``max_pixels`` (the decode reports that image's error, before any budget)."""
    sizes: list[tuple[int, int] | None] = []
    for item in items:
        try:
            _, width, height = probe_image(item.instance.image, max_pixels=max_pixels)
        except ImageError:
            sizes.append(None)
        else:
            sizes.append((width, height))
    return sizes


def _check_budget(cfg: Any, items: list[Item], sizes: list[tuple[int, int] | None],
                  limit: int) -> None:
    """413 when the misses would cost more model inputs than ``limit`` (see ``budget``)."""
    from .budget import describe, instance_cost

    costs = [instance_cost(cfg, *size, item.instance.tta) if size else 0
             for item, size in zip(items, sizes, strict=True)]
    total = sum(costs)
    if total <= limit:
        return
    worst = max(range(len(costs)), key=costs.__getitem__)
    width, height = sizes[worst]
    raise PayloadTooLarge(
        f"this request needs {total:,} {describe(cfg)} ({items[worst].where}: {width}x{height} "
        f"with TTA {items[worst].instance.tta!r} needs {costs[worst]:,}); this server allows "
        f"{limit:,} per request: send smaller images, fewer instances or a cheaper TTA",
        code="over_compute_budget", reason="over_compute_budget")


def _instance_key(loaded: LoadedModel, instance: Instance) -> str:
    encoding, image = instance.key_source
    return cache_key(loaded.version, loaded.task, instance.tta, image, instance.metadata,
                     encoding)


def _image_error(exc: ImageError, where: str) -> ServingError:
    message = f"{where}: {exc.message}"
    if exc.reason == "too_many_pixels":
        return PayloadTooLarge(message, code="too_many_pixels", reason="too_many_pixels")
    if exc.reason == "unsupported_format":
        return UnsupportedMediaType(message, reason="unsupported_format")
    return Unprocessable(message, code="invalid_image", reason=exc.reason or "invalid_image")


@dataclass
class LoadedModel:
    """One loaded version: config, identity and its own batcher and forward workers (swapped
    as a unit)."""

    cfg: Any  # the bundle's ModelConfig
    version: str
    task: str
    classes: list[str]
    source: str
    batcher: MicroBatcher
    identity: ModelIdentity | None = None


@dataclass(frozen=True)
class ModelIdentity:
    """Which model answers: the bundle hash next to the registry's name, version and alias.

    ``bundle_version`` (the weights' hash) keys the cache and is what ``model_version`` has
    always said; an operator who promoted "version 3" matches ``registry_version`` instead.
    A bundle loaded from a folder has no registry identity: those fields are None and
    ``source`` says where it came from (the folder, or KServe's ``STORAGE_URI`` when the storage
    initializer downloaded it there).
    """

    bundle_version: str
    source: str
    registry_name: str | None = None
    registry_version: str | None = None
    registry_alias: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"bundle_version": self.bundle_version, "registry_name": self.registry_name,
                "registry_version": self.registry_version,
                "registry_alias": self.registry_alias, "source": self.source}

    def v2_parameters(self) -> dict[str, str]:
        """The identity as v2 ``parameters`` (strings only: the protocol has no null)."""
        return {key: value for key, value in self.as_dict().items() if value is not None}


def resolve_identity(uri: str, env: Mapping[str, str] = os.environ) -> tuple[Path, ModelIdentity]:
    """The local bundle of ``uri`` and its identity (``bundle_version`` filled in by the caller).

    A ``models:/`` alias is resolved to its version once, and that version is downloaded: the
    alias may move meanwhile, and the identity must name the version actually loaded.
    """
    if uri.startswith("models:/"):
        from roadvision.registry import get_version, parse_model_uri

        _, alias, _ = parse_model_uri(uri)
        info = get_version(uri)
        path = resolve_bundle(info.uri)
        return path, ModelIdentity(bundle_version="", source=uri, registry_name=info.name,
                                   registry_version=info.version, registry_alias=alias)
    path = resolve_bundle(uri)
    storage = env.get("STORAGE_URI", "")
    # KServe's storage initializer put STORAGE_URI's files in /mnt/models: name the real source.
    source = storage if storage and uri.rstrip("/") == "/mnt/models" else uri
    return path, ModelIdentity(bundle_version="", source=source)


@dataclass
class Item:
    instance: Instance
    key: str
    where: str
    result: dict[str, Any] | None = None
    cached: bool = False
    sample: dict[str, Any] | None = None


@dataclass
class Job:
    """What flows from preprocess to postprocess for one request."""

    protocol: str  # "v1" or "v2"
    loaded: LoadedModel
    items: list[Item]
    cache_state: str  # "off", "error", "hit", "miss", "partial"
    request: InferRequest | None = None
    tta: str = "none"
    stats: dict[str, int] = field(default_factory=dict)
    started: float = 0.0  # perf_counter() when preprocess began (the payload log's latency)
    arm: str | None = None  # champion or challenger when a canary serves it (serving/canary.py)
    request_id: str | None = None  # set by a canary: both arms' log rows share it


class RoadvisionModel(Model):
    """A roadwork or lanes model bundle behind KServe's v1 and v2 protocols.

    Args:
        name: the model name in the URL (``/v1/models/NAME:predict``).
        model_uri: bundle directory or ``models:/NAME@ALIAS``.
        config: server limits and switches.
        redis: shared Redis client for the cache (None: no cache).
        arm: ``champion`` or ``challenger`` when this is one arm of a canary
            (``serving/canary.py``), which publishes the arm's version and readiness itself.
    """

    def __init__(self, name: str, model_uri: str, config: ServingConfig | None = None,
                 redis: ResilientRedis | None = None, arm: str | None = None) -> None:
        super().__init__(name, return_response_headers=True)
        self.model_uri = model_uri
        self.arm = arm
        self.config = config or ServingConfig()
        self.cache = PredictionCache(
            redis, name, ttl_s=self.config.cache_ttl_s,
            max_value_bytes=self.config.cache_max_value_bytes,
            local_bytes=self.config.local_cache_bytes,
        )
        self.loaded: LoadedModel | None = None
        self.payload_log = payload_logger(self.config, name)  # None unless configured
        if not self._challenger:
            metrics.MODEL_READY.labels(name).set(0)

    @property
    def _challenger(self) -> bool:
        """A canary's challenger: the served name's info and readiness are the champion's."""
        return self.arm == "challenger"

    # --- load -----------------------------------------------------------------------------

    def load(self) -> bool:
        """Load (or reload) the bundle, warm it up, then swap it in and set ``ready``."""
        from roadvision.models.bundle import bundle_version, read_bundle_config
        from roadvision.models.config import ModelConfig

        path, identity = resolve_identity(self.model_uri)
        cfg = ModelConfig.from_dict(read_bundle_config(path)["model_config"])
        version = bundle_version(path)
        runner = self._runner(path)
        batcher = MicroBatcher(
            runner, max_batch_size=self.config.max_batch_size,
            max_wait_ms=self.config.max_batch_wait_ms, group_key=lambda item: item[1],
            model=self.name, on_batch=self._count_passes,
            linger_s=self.config.request_timeout_s,
        )
        loaded = LoadedModel(cfg=cfg, version=version, task=cfg.task,
                             classes=list(cfg.classes), source=str(path), batcher=batcher,
                             identity=dataclasses.replace(identity, bundle_version=version))
        try:
            self._warm_up(loaded, runner)
        except BaseException:
            runner.close()
            raise
        previous, self.loaded = self.loaded, loaded
        if previous is not None:
            previous.batcher.close(graceful=True)
        if not self._challenger:
            metrics.set_model_info(self.name, loaded.version, loaded.task,
                                   registry_name=identity.registry_name or "",
                                   registry_version=identity.registry_version or "",
                                   alias=identity.registry_alias or "")
            metrics.MODEL_READY.labels(self.name).set(1)
        log.info("model %s: loaded %s bundle %s (registry: %s) from %s; forward: %r", self.name,
                 loaded.task, loaded.version, _registry_label(loaded.identity), path, runner)
        self.ready = True
        return self.ready

    def _runner(self, path: Path) -> ForwardPool | ThreadRunner:
        """What computes this version's forwards: ``forward_workers`` processes that load the
        bundle themselves, or (0) the bundle loaded here and run in the batcher's thread."""
        workers, device = self.config.forward_workers, self.config.torch_device()
        if workers == 0:
            from roadvision.runtime.inference import load_for_inference

            from .forward import Forward

            return ThreadRunner(Forward(load_for_inference(path, device=device)), self.name)
        pool = ForwardPool(path, workers=workers, device=device, name=self.name)
        pool.start()
        return pool

    def _count_passes(self, items: list[tuple[dict, str]]) -> None:
        metrics.TTA_PASSES.labels(self.name, items[0][1]).inc(len(items))

    def _warm_up(self, loaded: LoadedModel, runner: ForwardPool | ThreadRunner) -> None:
        """One real forward per worker on a synthetic input; raises if an answer is
        malformed."""
        cfg = loaded.cfg
        side = int(cfg.input_size if loaded.task == "lanes" else cfg.view_size)
        image = np.full((side, side, 3), 127, dtype=np.uint8)
        expected = {"probability", "label"} if loaded.task == "roadwork" else {"mask_png_b64"}
        for (result,) in runner.call_each([(self._sample(loaded, image, {}), "none")]):
            if not expected <= set(result):
                raise RuntimeError(f"warm-up answer lacks {sorted(expected - set(result))}")

    def start(self) -> None:
        """KServe calls this at server start and would set ``ready``; only ``load`` may."""

    def stop(self) -> None:
        super().stop()
        if not self._challenger:
            metrics.MODEL_READY.labels(self.name).set(0)
        if self.loaded is not None:
            self.loaded.batcher.close(graceful=False)
        if self.payload_log is not None:
            self.payload_log.close()

    def validate(self, payload: Any) -> Any:
        """Validation happens in ``preprocess`` (it needs the model's limits); pass through."""
        return payload

    # --- preprocess -----------------------------------------------------------------------

    @staticmethod
    def _sample(loaded: LoadedModel, image: np.ndarray, metadata: dict) -> dict:
        from roadvision.models.preprocess import prepare_sample

        return prepare_sample(loaded.cfg, image, metadata)

    def _decode(self, loaded: LoadedModel, items: list[Item]) -> None:
        """Decode and prepare the cache misses (runs in a worker thread)."""
        for item in items:
            try:
                image = decode_image(item.instance.image, max_pixels=self.config.max_pixels)
            except ImageError as exc:
                raise _image_error(exc, item.where) from None
            try:
                item.sample = self._sample(loaded, image, item.instance.metadata)
            except UserError as exc:
                raise Unprocessable(f"{item.where}: {exc}", reason="invalid_input") from None

    async def preprocess(self, payload: dict | InferRequest, headers: dict | None = None) -> Job:
        started = time.perf_counter()
        loaded = self.loaded
        if loaded is None or not self.ready:
            raise NotReady(f"model {self.name} is not ready")
        cfg = self.config
        if isinstance(payload, InferRequest):
            protocol = "v2"
            tensors = {i.name: (i.datatype, i.data) for i in payload.inputs}
            parameters = payload.parameters if isinstance(payload.parameters, dict) else None
            instances = parse_v2(tensors, parameters, max_tta=cfg.max_tta,
                                 max_instances=cfg.max_instances)
        else:
            protocol = "v1"
            instances = parse_v1(payload, max_tta=cfg.max_tta, max_instances=cfg.max_instances)
        # each instance names its field as the parser saw it (instances[i].image_b64, image[i])
        items = [Item(inst, _instance_key(loaded, inst), inst.where) for inst in instances]
        state = "off"
        if self.cache.enabled:
            found, ok = await self.cache.get_many([it.key for it in items])
            for item, result in zip(items, found, strict=True):
                if result is not None:
                    item.result, item.cached = result, True
            hits = sum(it.cached for it in items)
            state = ("error" if not ok else "hit" if hits == len(items)
                     else "miss" if hits == 0 else "partial")
        misses = [it for it in items if not it.cached]
        if misses:
            sizes = _sizes(misses, cfg.max_pixels)
            _check_budget(loaded.cfg, misses, sizes, cfg.max_windows)
            # An unreadable header goes to the thread path, whose decode reports the error.
            pixels = (1 << 62 if None in sizes
                      else sum(width * height for width, height in sizes))
            # Tell the batcher these are coming, so that it waits for them (and only for them)
            # while they decode; withdrawn if decoding fails.
            loaded.batcher.expect(len(misses))
            try:
                if pixels <= INLINE_DECODE_PIXELS:
                    self._decode(loaded, misses)  # a thread hop would cost more than this
                else:
                    await asyncio.get_running_loop().run_in_executor(
                        None, self._decode, loaded, misses)
            except BaseException:
                loaded.batcher.expect(-len(misses))
                raise
        request = payload if protocol == "v2" else None
        return Job(protocol, loaded, items, state, request=request,
                   tta=instances[0].tta if protocol == "v2" else "", started=started)

    # --- predict --------------------------------------------------------------------------

    async def predict(self, job: Job, headers: dict | None = None,
                      response_headers: dict | None = None) -> Job:
        misses = [it for it in job.items if not it.cached]
        if misses:
            # enqueue() is synchronous: all instances of this request are queued before the
            # batcher can run again, so they are never split by an early dispatch.
            results = await asyncio.gather(*[
                job.loaded.batcher.enqueue((it.sample, it.instance.tta), expected=True)
                for it in misses])
            for item, result in zip(misses, results, strict=True):
                item.result, item.sample = result, None
            if self.cache.enabled and job.cache_state != "error":
                # write-behind: the answer does not wait for Redis to take the copy
                self.cache.store([(it.key, it.result) for it in misses])
        return job

    # --- postprocess ----------------------------------------------------------------------

    async def postprocess(self, job: Job, headers: dict | None = None,
                          response_headers: dict | None = None) -> dict | InferResponse:
        if response_headers is not None:
            response_headers[VERSION_HEADER] = job.loaded.version
            response_headers[CACHE_HEADER] = job.cache_state
        if self.payload_log is not None:  # a put on a bounded queue: never waits
            self.payload_log.offer(job, time.perf_counter() - job.started)
        if job.protocol == "v1":
            return {"predictions": [
                {**it.result, "model_version": job.loaded.version, "tta": it.instance.tta,
                 "cached": it.cached}
                for it in job.items
            ], "model": self.identity()}
        return self._v2_response(job)

    def identity(self) -> dict[str, Any]:
        """The served model's identity (v1 responses, ``/v2/models/NAME`` metadata)."""
        loaded = self.loaded
        if loaded is None or loaded.identity is None:
            return {"name": self.name}
        return {"name": self.name, **loaded.identity.as_dict()}

    def _v2_response(self, job: Job) -> InferResponse:
        n = len(job.items)
        results = [it.result for it in job.items]
        outputs: list[InferOutput] = []

        def add(name: str, datatype: str, array: np.ndarray) -> None:
            outputs.append(InferOutput(name=name, shape=list(array.shape), datatype=datatype,
                                       data=array))

        parameters: dict[str, Any] = {"tta": job.tta}
        if job.loaded.identity is not None:
            parameters.update(job.loaded.identity.v2_parameters())
        if job.loaded.task == "roadwork":
            add("probability", "FP32", np.array([r["probability"] for r in results], np.float32))
            add("label", "INT32", np.array([r["label"] for r in results], np.int32))
        else:
            add("mask_png_b64", "BYTES",
                np.array([r["mask_png_b64"].encode() for r in results], dtype=object))
            classes = job.loaded.classes
            add("class_shares", "FP32",
                np.array([[r["class_shares"].get(c, 0.0) for c in classes] for r in results],
                         np.float32).reshape(n, len(classes)))
            parameters["classes"] = ",".join(classes)
        add("cached", "BOOL", np.array([it.cached for it in job.items], dtype=bool))
        request = job.request
        return InferResponse(
            response_id=(request.id if request and request.id else uuid.uuid4().hex),
            model_name=self.name, model_version=job.loaded.version, infer_outputs=outputs,
            parameters=parameters,
            use_binary_outputs=bool(request and request.use_binary_outputs),
            requested_outputs=request.request_outputs if request else None,
        )

    # --- v2 model metadata ----------------------------------------------------------------

    def get_input_types(self) -> list[dict]:
        return [
            {"name": "image", "datatype": "BYTES", "shape": [-1],
             "parameters": {"content": "JPEG, PNG or WebP bytes (base64 when sent as JSON)"}},
            {"name": "metadata", "datatype": "BYTES", "shape": [-1],
             "parameters": {"content": "optional; one JSON object per image"}},
        ]

    def get_output_types(self) -> list[dict]:
        task = self.loaded.task if self.loaded else "roadwork"
        if task == "roadwork":
            return [{"name": "probability", "datatype": "FP32", "shape": [-1]},
                    {"name": "label", "datatype": "INT32", "shape": [-1]},
                    {"name": "cached", "datatype": "BOOL", "shape": [-1]}]
        return [{"name": "mask_png_b64", "datatype": "BYTES", "shape": [-1]},
                {"name": "class_shares", "datatype": "FP32", "shape": [-1, -1]},
                {"name": "cached", "datatype": "BOOL", "shape": [-1]}]


def _registry_label(identity: ModelIdentity | None) -> str:
    if identity is None or identity.registry_name is None:
        return "none, a folder"
    alias = f"@{identity.registry_alias}" if identity.registry_alias else ""
    return f"{identity.registry_name} v{identity.registry_version}{alias}"


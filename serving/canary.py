"""Canary and shadow rollout inside one predictor (KServe Standard mode).

In Knative mode KServe splits traffic between two revisions itself (``canaryTrafficPercent``);
a Standard (raw Deployment) InferenceService has one revision, so the predictor holds both
versions and splits or mirrors the traffic of one served name itself:

* ``TrafficSplit``: mode ``off``, ``split`` (the challenger answers ``percent`` of requests) or
  ``shadow`` (``percent`` of requests are also sent to the challenger in the background; its
  answer is counted and logged, never returned). Which requests is decided by a hash of the
  request's images, not by chance and not by ``x-request-id`` (a mesh sidecar stamps every
  retry with a new id): a client that retries, or sends the same image again, meets the same
  arm, and each arm's cache stays useful.
* ``CanaryModel``: one KServe model under the served name holding two ``RoadvisionModel``
  arms, champion and challenger (``models:/NAME@champion`` and ``models:/NAME@challenger`` by
  default). Responses carry the arm that answered (``x-roadvision-arm``) beside the version
  (``x-roadvision-model-version`` and the body's ``model_version``). Each arm is counted in
  ``roadvision_canary_*`` metrics and, when payload logging is on, logged with its arm: one
  sampling decision per request, so a shadowed request has both answers in the log or neither.

A challenger that fails to load leaves the champion serving everything (logged, and
``roadvision_canary_challenger_percent`` says 0); a reload (``/v2/repository/models/NAME/load``)
resolves both aliases again, so a rolled-back challenger (alias removed) stops receiving
traffic and a promoted one serves as champion.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from kserve import Model
from kserve.protocol.infer_type import InferRequest

from roadvision.errors import UserError
from roadvision.monitoring.canary import CHALLENGER_ARM, CHAMPION_ARM, answers_agree

from . import metrics
from .errors import ServingError
from .payload_log import from_serving_config as payload_logger

log = logging.getLogger("roadvision.serving")

MODES = ("off", "split", "shadow")
ARM_HEADER = "x-roadvision-arm"
_BUCKETS = 10_000  # shares are honoured to 0.01 %


@dataclass(frozen=True)
class TrafficSplit:
    """Which requests the challenger answers (split) or shadows (shadow)."""

    mode: str = "off"
    percent: float = 0.0  # 0..100

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"canary mode {self.mode!r} is not one of {MODES}")
        if not 0.0 <= self.percent <= 100.0:
            raise UserError(f"canary percent must be in [0, 100], got {self.percent:g}")

    @property
    def active(self) -> bool:
        return self.mode != "off" and self.percent > 0

    def takes(self, key: bytes) -> bool:
        """True when the request keyed ``key`` goes to (split) or is mirrored to (shadow) the
        challenger: the same key always gets the same answer."""
        digest = hashlib.sha256(b"roadvision-canary\0" + key).digest()
        return int.from_bytes(digest[:8], "big") % _BUCKETS < round(self.percent * 100)

    def arm_for(self, key: bytes | None) -> str:
        """The arm that answers the request keyed ``key`` (no key: the champion)."""
        if self.mode == "split" and key is not None and self.takes(key):
            return CHALLENGER_ARM
        return CHAMPION_ARM


def routing_key(payload: Any) -> bytes | None:
    """A digest of the request's images as sent (v1 ``image_b64`` strings, v2 ``image``
    elements), computed before any parsing; None when there are none (a malformed request,
    which the champion then refuses, uncounted by arm)."""
    h = hashlib.sha256()
    found = False
    if isinstance(payload, InferRequest):
        for tensor in payload.inputs:
            if tensor.name != "image":
                continue
            data = tensor.data
            for element in (data.ravel().tolist() if hasattr(data, "ravel") else data or []):
                if isinstance(element, str):
                    element = element.encode()
                if isinstance(element, bytes | bytearray):
                    h.update(hashlib.sha256(element).digest())
                    found = True
    elif isinstance(payload, dict) and isinstance(payload.get("instances"), list):
        for instance in payload["instances"]:
            image = instance.get("image_b64") if isinstance(instance, dict) else None
            if isinstance(image, str):
                h.update(hashlib.sha256(image.encode()).digest())
                found = True
    return h.digest() if found else None


@dataclass
class CanaryJob:
    """What flows from preprocess to postprocess: the arm's own job, and what the shadow needs."""

    arm: str
    model: Any  # the arm's RoadvisionModel
    job: Any  # the arm's predictor Job
    started: float
    counted: bool  # False for a request without images (refused before any arm saw it)
    sampled: bool  # logged (both arms of a shadowed request, or neither)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    answers: list[dict] | None = None  # the champion's results once answered


class CanaryModel(Model):
    """Champion and challenger behind one served name, split or shadowed by ``split``.

    Args:
        name: the served name (``/v1/models/NAME:predict``).
        champion, challenger: the two arms (``RoadvisionModel``, built with ``arm=``).
        split: the traffic split.
        config: the server's ``ServingConfig`` (payload log, deadline, shadow limit).
    """

    def __init__(self, name: str, champion: Any, challenger: Any, split: TrafficSplit,
                 config: Any) -> None:
        super().__init__(name, return_response_headers=True)
        if not split.active:
            raise UserError("a canary needs --canary-percent above 0 (or --shadow)")
        self.champion, self.challenger = champion, challenger
        self.split, self.config = split, config
        self.challenger_ready = False
        self.payload_log = payload_logger(config, name)  # one logger for both arms
        self._random = random.Random()
        self._shadows: set[asyncio.Task] = set()
        self._versions: dict[str, str] = {}  # arm -> the bundle version its figures are of
        metrics.CANARY_PERCENT.labels(name, split.mode).set(0)

    # --- load / stop ----------------------------------------------------------------------
    @property
    def loaded(self):
        """The champion's loaded version (what the request log names before an answer)."""
        return self.champion.loaded

    def load(self) -> bool:
        """Load (or reload) both arms; the champion must load, the challenger may fail."""
        self.champion.load()
        self._publish(CHAMPION_ARM, self.champion)
        ready = False  # requests keep the old challenger until this load has finished
        try:
            self.challenger.load()
            if self.challenger.loaded.task != self.champion.loaded.task:
                raise UserError(f"challenger is a {self.challenger.loaded.task} model, the "
                                f"champion a {self.champion.loaded.task} model")
            ready = True
        except Exception as exc:  # noqa: BLE001 - without a challenger the champion serves all
            log.error("model %s: challenger %s not loaded, the champion answers every request: "
                      "%s", self.name, self.challenger.model_uri, exc)
        self.challenger_ready = ready
        if ready:
            self._publish(CHALLENGER_ARM, self.challenger)
            if self.challenger.loaded.version == self.champion.loaded.version:
                log.warning("model %s: champion and challenger are the same bundle %s", self.name,
                            self.champion.loaded.version)
        else:
            metrics.clear_arm_info(self.name, CHALLENGER_ARM)
            metrics.reset_arm(self.name, CHALLENGER_ARM)
            self._versions.pop(CHALLENGER_ARM, None)
        metrics.CANARY_PERCENT.labels(self.name, self.split.mode).set(
            self.split.percent if self.challenger_ready else 0)
        log.info("model %s: canary %s, challenger %s%% (%s)", self.name, self.split.mode,
                 f"{self.split.percent:g}" if self.challenger_ready else "0",
                 self.challenger.model_uri)
        self.ready = self.champion.ready
        return self.ready

    def _publish(self, arm: str, model: Any) -> None:
        identity = model.loaded.identity
        if self._versions.get(arm) != model.loaded.version:
            metrics.reset_arm(self.name, arm)  # a new version's figures start from zero
            self._versions[arm] = model.loaded.version
        metrics.set_arm_info(self.name, arm, model.loaded.version,
                             registry_name=identity.registry_name or "",
                             registry_version=identity.registry_version or "")

    def start(self) -> None:
        """KServe calls this at server start; only ``load`` sets ``ready``."""

    def stop(self) -> None:
        super().stop()
        for task in list(self._shadows):
            task.cancel()
        self.champion.stop()
        self.challenger.stop()
        if self.payload_log is not None:
            self.payload_log.close()

    def validate(self, payload: Any) -> Any:
        return payload

    def identity(self) -> dict[str, Any]:
        """The champion's identity, plus the canary: mode, share and the challenger's."""
        out = self.champion.identity()
        challenger = self.challenger.identity() if self.challenger_ready else None
        if challenger is not None:
            challenger.pop("name", None)
        out["canary"] = {"mode": self.split.mode,
                         "percent": self.split.percent if self.challenger_ready else 0,
                         "challenger": challenger}
        return out

    def get_input_types(self) -> list[dict]:
        return self.champion.get_input_types()

    def get_output_types(self) -> list[dict]:
        return self.champion.get_output_types()

    # --- the request path -----------------------------------------------------------------
    async def preprocess(self, payload: dict | InferRequest,
                         headers: dict | None = None) -> CanaryJob:
        started = time.perf_counter()
        key = routing_key(payload)
        arm = self.split.arm_for(key) if self.challenger_ready else CHAMPION_ARM
        model = self.challenger if arm == CHALLENGER_ARM else self.champion
        try:
            job = await model.preprocess(payload, headers)
        except BaseException as exc:
            if key is not None:
                self._count(arm, exc, started)
            raise
        sampled = (self.payload_log is not None
                   and self._random.random() < self.payload_log.cfg.sample_rate)
        job.arm = arm
        job.request_id = (payload.id if isinstance(payload, InferRequest) and payload.id
                          else uuid.uuid4().hex)
        canary = CanaryJob(arm, model, job, started, counted=key is not None, sampled=sampled)
        if (self.split.mode == "shadow" and key is not None and self.challenger_ready
                and self.split.takes(key)):
            self._start_shadow(payload, headers, canary)
        return canary

    async def predict(self, canary: CanaryJob, headers: dict | None = None,
                      response_headers: dict | None = None) -> CanaryJob:
        try:
            await canary.model.predict(canary.job, headers, response_headers)
        except BaseException as exc:
            self._failed(canary, exc)
            raise
        return canary

    async def postprocess(self, canary: CanaryJob, headers: dict | None = None,
                          response_headers: dict | None = None) -> Any:
        try:
            response = await canary.model.postprocess(canary.job, headers, response_headers)
        except BaseException as exc:
            self._failed(canary, exc)
            raise
        elapsed = time.perf_counter() - canary.started
        if response_headers is not None:
            response_headers[ARM_HEADER] = canary.arm
        if canary.counted:
            self._count(canary.arm, None, canary.started)
            self._scores(canary.arm, canary.job)
        if canary.sampled:
            self.payload_log.offer(canary.job, elapsed, sampled=True)
        canary.answers = [dict(item.result) for item in canary.job.items]
        canary.done.set()
        return response

    def _failed(self, canary: CanaryJob, exc: BaseException) -> None:
        if canary.counted:
            self._count(canary.arm, exc, canary.started)
        canary.done.set()  # the shadow stops waiting: there is nothing to compare with

    # --- the shadow -----------------------------------------------------------------------
    def _start_shadow(self, payload: Any, headers: dict | None, canary: CanaryJob) -> None:
        if len(self._shadows) >= self.config.canary_shadow_inflight:
            metrics.CANARY_SHADOW_SKIPPED.labels(self.name).inc()
            return
        task = asyncio.get_running_loop().create_task(self._shadow(payload, headers, canary))
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)

    async def _shadow(self, payload: Any, headers: dict | None, canary: CanaryJob) -> None:
        """The challenger's answer to a request the champion answers; counted, compared with
        the champion's and logged, never returned."""
        started = time.perf_counter()
        model = self.challenger
        try:
            async with asyncio.timeout(self.config.request_timeout_s):
                job = await model.preprocess(payload, dict(headers or {}))
                await model.predict(job, headers, {})
        except asyncio.CancelledError:
            return  # the server is stopping
        except BaseException as exc:  # noqa: BLE001 - a failing shadow is counted, not raised
            self._count(CHALLENGER_ARM, exc, started)
            return
        elapsed = time.perf_counter() - started
        job.arm, job.request_id = CHALLENGER_ARM, canary.job.request_id
        self._count(CHALLENGER_ARM, None, started)
        self._scores(CHALLENGER_ARM, job)
        try:
            await asyncio.wait_for(canary.done.wait(), self.config.request_timeout_s)
        except TimeoutError:
            return
        if canary.answers is not None:
            for ours, theirs in zip(canary.answers, job.items, strict=True):
                agree = answers_agree(ours, theirs.result or {})
                metrics.CANARY_AGREEMENT.labels(self.name,
                                                "agree" if agree else "disagree").inc()
        if canary.sampled:
            self.payload_log.offer(job, elapsed, sampled=True)

    # --- accounting -----------------------------------------------------------------------
    def _count(self, arm: str, exc: BaseException | None, started: float) -> None:
        if exc is None:
            outcome = "ok"
        elif isinstance(exc, ServingError) and 400 <= exc.status < 500:
            outcome = "rejected"
        else:
            outcome = "error"  # 5xx, a bug, or the deadline's cancellation
        metrics.CANARY_REQUESTS.labels(self.name, arm, outcome).inc()
        metrics.CANARY_LATENCY.labels(self.name, arm).observe(time.perf_counter() - started)

    def _scores(self, arm: str, job: Any) -> None:
        for item in job.items:
            result = item.result or {}
            if result.get("probability") is not None:
                metrics.CANARY_SCORE.labels(self.name, arm).observe(float(result["probability"]))
                if result.get("label") == 1:
                    metrics.CANARY_POSITIVES.labels(self.name, arm).inc()


def arm_config(config: Any) -> Any:
    """The arms' config: their own payload logging off (the canary logs both, with the arm)."""
    return dataclasses.replace(config, payload_log_uri=None)


def challenger_uri(champion_uri: str) -> str | None:
    """``models:/NAME@challenger`` for ``models:/NAME@champion``; None for any other URI (a
    folder, a pinned version: name the challenger with ``--challenger``)."""
    if champion_uri.startswith("models:/") and champion_uri.endswith(f"@{CHAMPION_ARM}"):
        return champion_uri[: -len(CHAMPION_ARM)] + CHALLENGER_ARM
    return None


def build_canary(name: str, champion_uri: str, challenger: str, config: Any, redis: Any = None,
                 model_cls: Any = None) -> CanaryModel:
    """A ``CanaryModel`` serving ``champion_uri`` and ``challenger`` under ``name``, split as
    ``config`` says (``canary_percent``, ``canary_shadow``); not loaded yet."""
    if model_cls is None:
        from .predictor import RoadvisionModel as model_cls
    arms = arm_config(config)
    return CanaryModel(
        name, model_cls(name, champion_uri, arms, redis, arm=CHAMPION_ARM),
        model_cls(name, challenger, arms, redis, arm=CHALLENGER_ARM),
        split_from_config(config), config)


def split_from_config(config: Any) -> TrafficSplit:
    """The split ``config`` asks for: shadow, split, or off (percent 0)."""
    if config.canary_shadow:
        return TrafficSplit("shadow", config.canary_percent or 100.0)
    return TrafficSplit("split" if config.canary_percent > 0 else "off", config.canary_percent)

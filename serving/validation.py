"""Request schema: parse v1 JSON and v2 tensors into validated instances, before any decoding.

One instance = image bytes + canonical metadata + TTA mode. Everything here is cheap (no pixel
is decoded), so a request is validated, keyed and looked up in the cache before the expensive
work starts. Errors name the field and say what was expected:

* malformed JSON, wrong request shape, bad base64       -> 400 (``BadRequest``)
* metadata outside the schema, unknown TTA, TTA above the server's limit -> 422 (``Unprocessable``)

v1 body (``POST /v1/models/NAME:predict``)::

    {"instances": [{"image_b64": "<base64 JPEG/PNG/WebP>",
                    "metadata": {"lat": 40.44, "lon": -79.99, "weather": "cloudy",
                                 "daytime": "day", "scene": "urban", "text": "...", "city": "..."},
                    "tta": "none" | "flip" | "full"}]}

v2 body (``POST /v2/models/NAME/infer``): a BYTES input ``image`` of shape ``[N]`` (raw bytes
through the binary tensor extension, or base64 strings in JSON), an optional BYTES input
``metadata`` of shape ``[N]`` holding one JSON object per image, and an optional request
parameter ``tta``.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import orjson

from roadvision.data.contract import VOCABULARIES, ContractError, normalize_tag

from .errors import BadRequest, PayloadTooLarge, Unprocessable

TTA_MODES = ("none", "flip", "full")  # ordered by cost: a server limit allows a prefix
METADATA_FIELDS = ("lat", "lon", "gps", "weather", "daytime", "scene", "text", "city")
MAX_TEXT_CHARS = 2000
MAX_CITY_CHARS = 200


class Instance:
    """One validated input: the image as sent, canonical metadata, TTA mode.

    An image sent as base64 text (v1, v2 JSON) is kept as that text and decoded to bytes on
    first use of ``image`` (still no pixel is decoded): a cache hit is keyed by the text
    (``key_source``) and never needs the bytes, which saved a quarter of a millisecond per
    224x224 JPEG. Bad base64 is reported (400, naming ``where``) when the bytes are first
    needed; such a text never reaches the cache, whose entries are stored only after a forward.
    """

    __slots__ = ("_image", "_text", "metadata", "tta", "where")

    def __init__(self, image: bytes | None = None, metadata: dict[str, Any] | None = None,
                 tta: str = "none", *, base64_text: str | None = None,
                 where: str = "image") -> None:
        if (image is None) == (base64_text is None):
            raise ValueError("an Instance holds either image bytes or base64 text")
        self._image, self._text = image, base64_text
        self.metadata = metadata if metadata is not None else {}
        self.tta = tta
        self.where = where

    @property
    def image(self) -> bytes:
        """The image file's bytes (decoded from base64 once, here)."""
        if self._image is None:
            self._image = _b64_bytes(self._text, self.where)
        return self._image

    @property
    def key_source(self) -> tuple[str, bytes]:
        """What the cache key hashes: ``("base64", text)`` or ``("raw", bytes)``."""
        if self._text is not None:
            return "base64", self._text.encode("ascii")
        return "raw", self._image


def check_tta(value: Any, max_tta: str, where: str = "tta") -> str:
    """A known TTA mode not costlier than the server's ``max_tta``; 422 otherwise."""
    if value is None:
        return "none"
    if not isinstance(value, str) or value.lower() not in TTA_MODES:
        raise Unprocessable(f"{where}: unknown TTA mode {value!r}; expected one of {TTA_MODES}",
                            code="invalid_tta", reason="invalid_tta")
    mode = value.lower()
    if TTA_MODES.index(mode) > TTA_MODES.index(max_tta):
        allowed = TTA_MODES[: TTA_MODES.index(max_tta) + 1]
        raise Unprocessable(f"{where}: TTA mode {mode!r} exceeds this server's limit "
                            f"({max_tta!r}); allowed: {allowed}",
                            code="tta_not_allowed", reason="invalid_tta")
    return mode


def _meta_error(message: str) -> Unprocessable:
    return Unprocessable(message, code="invalid_metadata", reason="invalid_metadata")


def _coordinate(name: str, value: Any, low: float, high: float, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _meta_error(f"{where}.{name}: expected a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise _meta_error(f"{where}.{name}: {value} out of range ({low:g}..{high:g})")
    return number


def check_metadata(raw: Any, where: str = "metadata") -> dict[str, Any]:
    """Validate and canonicalise metadata: vocabulary aliases mapped, NULLs dropped.

    Keys: ``lat``/``lon`` (both or neither, degrees) or ``gps`` ([lat, lon]); ``weather``,
    ``daytime``, ``scene`` from ``roadvision.data.contract.VOCABULARIES`` (aliases such as
    "Sunny" accepted); free ``text`` and ``city``. Unknown keys are refused, so a typo
    ("wether") is an error instead of a silently ignored field.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _meta_error(f"{where}: expected a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(METADATA_FIELDS))
    if unknown:
        raise _meta_error(f"{where}: unknown field(s) {unknown}; allowed: {list(METADATA_FIELDS)}")
    out: dict[str, Any] = {}
    lat, lon = raw.get("lat"), raw.get("lon")
    if raw.get("gps") is not None:
        if lat is not None or lon is not None:
            raise _meta_error(f"{where}: give either gps or lat/lon, not both")
        gps = raw["gps"]
        if not isinstance(gps, list | tuple) or len(gps) != 2:
            raise _meta_error(f"{where}.gps: expected [lat, lon], got {gps!r}")
        lat, lon = gps
    if (lat is None) != (lon is None):
        missing = "lon" if lon is None else "lat"
        raise _meta_error(f"{where}.{missing}: lat and lon must be given together")
    if lat is not None:
        out["lat"] = _coordinate("lat", lat, -90.0, 90.0, where)
        out["lon"] = _coordinate("lon", lon, -180.0, 180.0, where)
    for name in VOCABULARIES:
        value = raw.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise _meta_error(f"{where}.{name}: expected a string, got {type(value).__name__}")
        try:
            tag = normalize_tag(name, value)
        except ContractError as exc:
            raise _meta_error(f"{where}.{exc}") from exc
        if tag is not None:
            out[name] = tag
    for name, limit in (("text", MAX_TEXT_CHARS), ("city", MAX_CITY_CHARS)):
        value = raw.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise _meta_error(f"{where}.{name}: expected a string, got {type(value).__name__}")
        if len(value) > limit:
            raise _meta_error(f"{where}.{name}: {len(value)} characters; at most {limit}")
        if value.strip():
            out[name] = value.strip()
    return out


def base64_text(value: Any, where: str) -> str:
    """The base64 text of an image field: a string, ASCII, not empty; a data-URL prefix and
    surrounding whitespace are dropped. Decoding waits for ``Instance.image``."""
    if not isinstance(value, str):
        raise BadRequest(f"{where}: expected a base64 string, got {type(value).__name__}",
                         code="invalid_base64", reason="malformed")
    text = value.strip()
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    if not text:
        raise BadRequest(f"{where}: empty image", code="invalid_base64", reason="malformed")
    if not text.isascii():
        raise BadRequest(f"{where}: not valid base64 (non-ASCII characters)",
                         code="invalid_base64", reason="malformed")
    return text


def _b64_bytes(text: str, where: str) -> bytes:
    """Strict base64 (standard alphabet, padding checked) to bytes."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"{where}: not valid base64 ({exc})", code="invalid_base64",
                         reason="malformed") from exc
    if not data:
        raise BadRequest(f"{where}: empty image", code="invalid_base64", reason="malformed")
    return data


#: The most JSON values (counted by their separators and brackets) a body may hold. A request
#: is a few objects per instance (images are single strings), so this is generous; it exists
#: because parsing holds the GIL: a 9 MB body of 3 million empty lists took seconds to parse,
#: in any thread. Counting bytes is C-speed and allocates nothing.
MAX_JSON_VALUES = 65_536


def load_json(body: bytes, max_values: int = MAX_JSON_VALUES) -> Any:
    """Parse a JSON body; 413 when it holds too many values, 400 with the parser's position
    on failure."""
    # Every value takes at least one byte, so a body no longer than the limit cannot exceed
    # it: counting (three passes over the body) is only needed for larger ones.
    values = (0 if len(body) <= max_values
              else body.count(b",") + body.count(b"[") + body.count(b"{"))
    if values > max_values:
        raise PayloadTooLarge(f"JSON body holds about {values:,} values; at most {max_values:,} "
                              "(a request needs a few per image)", code="json_too_complex",
                              reason="json_too_complex")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}", code="malformed_json",
                         reason="malformed") from exc


def parse_v1(payload: Any, *, max_tta: str, max_instances: int) -> list[Instance]:
    """Validate a v1 body (already JSON-decoded) into instances."""
    if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list):
        raise BadRequest('expected a JSON object with an "instances" list',
                         code="invalid_request", reason="malformed")
    raw_instances = payload["instances"]
    _check_count(len(raw_instances), max_instances)
    default_tta = payload.get("parameters", {}).get("tta") if isinstance(
        payload.get("parameters"), dict) else None
    instances = []
    for i, raw in enumerate(raw_instances):
        where = f"instances[{i}]"
        if not isinstance(raw, dict):
            raise BadRequest(f"{where}: expected an object with image_b64",
                             code="invalid_request", reason="malformed")
        unknown = sorted(set(raw) - {"image_b64", "metadata", "tta"})
        if unknown:
            raise BadRequest(f"{where}: unknown field(s) {unknown}; allowed: "
                             "['image_b64', 'metadata', 'tta']",
                             code="invalid_request", reason="malformed")
        if "image_b64" not in raw:
            raise BadRequest(f"{where}.image_b64: missing", code="invalid_request",
                             reason="malformed")
        text = base64_text(raw["image_b64"], f"{where}.image_b64")
        metadata = check_metadata(raw.get("metadata"), f"{where}.metadata")
        tta = check_tta(raw.get("tta", default_tta), max_tta, f"{where}.tta")
        instances.append(Instance(base64_text=text, metadata=metadata, tta=tta,
                                  where=f"{where}.image_b64"))
    return instances


def _check_count(count: int, max_instances: int) -> None:
    if count == 0:
        raise BadRequest("no instances in the request", code="invalid_request",
                         reason="malformed")
    if count > max_instances:
        raise Unprocessable(f"{count} instances in one request; at most {max_instances}",
                            code="too_many_instances", reason="too_many_instances")


def _bytes_elements(data: Any, name: str) -> list[Any]:
    """Flatten a BYTES tensor's data (list, nested list or numpy array) to a flat list."""
    if data is None:
        raise BadRequest(f"input {name!r}: no data", code="invalid_request", reason="malformed")
    if hasattr(data, "tolist"):
        data = data.tolist()
    flat: list[Any] = []
    stack = [data] if not isinstance(data, list) else list(reversed(data))
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            flat.append(item)
    return flat


def parse_v2(inputs: dict[str, Any], parameters: dict[str, Any] | None, *, max_tta: str,
             max_instances: int) -> list[Instance]:
    """Validate v2 tensors (``{name: (datatype, data)}``) into instances.

    ``image`` elements are raw ``bytes`` (binary extension) or base64 ``str`` (JSON);
    ``metadata`` elements are JSON objects as bytes or str.
    """
    unknown = sorted(set(inputs) - {"image", "metadata"})
    if unknown:
        raise BadRequest(f"unknown input tensor(s) {unknown}; expected 'image' "
                         "(and optionally 'metadata')", code="invalid_request", reason="malformed")
    if "image" not in inputs:
        raise BadRequest("missing input tensor 'image' (BYTES)", code="invalid_request",
                         reason="malformed")
    for name, (datatype, _) in inputs.items():
        if datatype != "BYTES":
            raise BadRequest(f"input {name!r}: datatype {datatype}; expected BYTES",
                             code="invalid_request", reason="malformed")
    images = _bytes_elements(inputs["image"][1], "image")
    _check_count(len(images), max_instances)
    metas: list[Any] = [None] * len(images)
    if "metadata" in inputs:
        metas = _bytes_elements(inputs["metadata"][1], "metadata")
        if len(metas) != len(images):
            raise BadRequest(f"input 'metadata' has {len(metas)} elements for {len(images)} "
                             "images", code="invalid_request", reason="malformed")
    tta = check_tta((parameters or {}).get("tta"), max_tta, "parameters.tta")
    instances = []
    for i, (image, meta) in enumerate(zip(images, metas, strict=True)):
        where = f"image[{i}]"
        if isinstance(image, str):
            data, text = None, base64_text(image, where)
        elif isinstance(image, bytes | bytearray):
            data, text = bytes(image), None
            if not data:
                raise BadRequest(f"{where}: empty image", code="invalid_request",
                                 reason="malformed")
        else:
            raise BadRequest(f"{where}: expected bytes or a base64 string",
                             code="invalid_request", reason="malformed")
        metadata = None
        if meta is not None and meta not in (b"", ""):
            try:
                metadata = orjson.loads(meta)
            except (orjson.JSONDecodeError, TypeError) as exc:
                raise BadRequest(f"metadata[{i}]: not valid JSON ({exc})",
                                 code="malformed_json", reason="malformed") from exc
        instances.append(Instance(data, check_metadata(metadata, f"metadata[{i}]"), tta,
                                  base64_text=text, where=where))
    return instances

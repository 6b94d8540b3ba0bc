"""Open Inference Protocol (v2) REST request decoding, binary tensor extension included.

Why not KServe's decoder: KServe 0.21 turns every binary BYTES input into JSON-compatible text
(``InferRequest.from_bytes`` -> ``set_data_from_numpy(binary_data=False)``), which raises
``Failed to encode ... using UTF-8`` - an HTTP 500 before the model runs - for exactly what an
image client sends: JPEG bytes through the binary extension (``tritonclient`` with
``binary_data=True``). We decode the body ourselves and keep BYTES elements as ``bytes``. The
result is a regular ``kserve.InferRequest``, so everything after decoding (the model's
preprocess/predict/postprocess, response encoding) is KServe's own.

Wire format (https://github.com/kserve/open-inference-protocol, binary data extension): the
``Inference-Header-Content-Length`` header gives the length of the leading JSON document; the
rest of the body is the concatenated binary tensors, in input order, each announced by its
``parameters.binary_data_size``. A binary BYTES tensor is a sequence of elements, each a
4-byte little-endian length followed by that many bytes.

Every framing problem is a 400 naming the input, never a 500. A tensor's ``shape`` is checked
against its data (binary or JSON, flat or nested) before anything else looks at the data, and
a shape announcing more than ``max_elements`` elements is refused before the data is walked.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput

from .errors import BadRequest, Unprocessable
from .validation import load_json

HEADER = "inference-header-content-length"

_NUMPY_DTYPES = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}


def _bad(message: str) -> BadRequest:
    return BadRequest(message, code="invalid_v2_request", reason="malformed")


def split_bytes_tensor(raw: bytes, name: str) -> list[bytes]:
    """Split a binary BYTES tensor into its elements (length-prefixed, little-endian)."""
    elements, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise _bad(f"input {name!r}: truncated element length at byte {offset}")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise _bad(f"input {name!r}: element of {length} bytes runs past the tensor end")
        elements.append(raw[offset:offset + length])
        offset += length
    return elements


def _shape(value: Any, name: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(d, int) and d >= 0 for d in value):
        raise _bad(f"input {name!r}: shape must be a list of non-negative integers")
    return value


def count_elements(data: Any, expected: int, name: str) -> int:
    """Scalars in a JSON tensor's (possibly nested) ``data``; 400 as soon as it holds more
    scalars or lists than ``expected`` elements could need, so a body of millions of empty
    lists costs no more than ``expected`` steps."""
    if not isinstance(data, list):
        return 1
    scalars, lists, stack = 0, 1, [data]
    while stack and scalars <= expected and lists <= expected + 1:
        for item in stack.pop():
            if isinstance(item, list):
                stack.append(item)
                lists += 1
            else:
                scalars += 1
            if scalars > expected or lists > expected + 1:
                break
    if scalars != expected or lists > expected + 1:
        raise _bad(f"input {name!r}: shape announces {expected} elements; data does not match "
                   f"(at least {scalars} elements in {lists} lists)")
    return scalars


def decode_request(body: bytes, headers: dict[str, str], model_name: str,
                   max_elements: int | None = None) -> InferRequest:
    """Decode a v2 REST body (JSON, or JSON + binary tensors) into a ``kserve.InferRequest``.

    BYTES inputs hold a flat list of ``bytes`` (binary) or the JSON ``data`` as sent.
    ``max_elements``: the most elements one input may announce (422 past it).
    """
    header_value = headers.get(HEADER)
    if header_value is None:
        json_part, binary = body, b""
    else:
        try:
            json_length = int(header_value)
        except ValueError:
            raise _bad(f"Inference-Header-Content-Length {header_value!r} is not an integer"
                       ) from None
        if not 0 < json_length <= len(body):
            raise _bad(f"Inference-Header-Content-Length {json_length} does not fit a body of "
                       f"{len(body)} bytes")
        json_part, binary = body[:json_length], body[json_length:]
    doc = load_json(json_part)
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
        raise _bad('expected a JSON object with an "inputs" list')

    inputs, offset = [], 0
    for index, spec in enumerate(doc["inputs"]):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise _bad(f"inputs[{index}]: expected an object with a name")
        name = spec["name"]
        datatype = str(spec.get("datatype", "")).upper()
        if datatype != "BYTES" and datatype not in _NUMPY_DTYPES:
            raise _bad(f"input {name!r}: unknown datatype {spec.get('datatype')!r}")
        shape = _shape(spec.get("shape"), name)
        if max_elements is not None and math.prod(shape) > max_elements:
            raise Unprocessable(f"input {name!r}: shape {shape} announces {math.prod(shape)} "
                                f"elements; at most {max_elements} per request",
                                code="too_many_instances", reason="too_many_instances")
        parameters = spec.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise _bad(f"input {name!r}: parameters must be an object")
        count = None  # elements sent through the binary extension (checked against the shape)
        if "data" in spec:
            data = spec["data"]
            count_elements(data, math.prod(shape), name)
        elif "binary_data_size" in parameters:
            size = parameters["binary_data_size"]
            if not isinstance(size, int) or size < 0:
                raise _bad(f"input {name!r}: binary_data_size must be a non-negative integer")
            if offset + size > len(binary):
                raise _bad(f"input {name!r}: binary_data_size {size} exceeds the "
                           f"{len(binary) - offset} binary bytes left in the body")
            raw = binary[offset:offset + size]
            offset += size
            if datatype == "BYTES":
                data = split_bytes_tensor(raw, name)
                count = len(data)
            else:
                itemsize = np.dtype(_NUMPY_DTYPES[datatype]).itemsize
                if size % itemsize:
                    raise _bad(f"input {name!r}: {size} bytes is not a whole number of "
                               f"{datatype} elements")
                data = np.frombuffer(raw, dtype=_NUMPY_DTYPES[datatype])
                count = data.size
        else:
            raise _bad(f"input {name!r}: neither 'data' nor parameters.binary_data_size given")
        if count is not None and count != math.prod(shape):
            raise _bad(f"input {name!r}: shape {shape} announces {math.prod(shape)} elements, "
                       f"{count} sent")
        inputs.append(InferInput(name=name, shape=shape, datatype=datatype, data=data,
                                 parameters={k: v for k, v in parameters.items()
                                             if k != "binary_data_size"}))
    if offset != len(binary):
        raise _bad(f"{len(binary) - offset} binary bytes after the last announced tensor")

    outputs = None
    if doc.get("outputs") is not None:
        if not isinstance(doc["outputs"], list):
            raise _bad('"outputs" must be a list')
        outputs = []
        for spec in doc["outputs"]:
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                raise _bad('each of "outputs" must be an object with a name')
            outputs.append(RequestedOutput(name=spec["name"], parameters=spec.get("parameters")))
    parameters = doc.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise _bad('"parameters" must be an object')
    request_id = doc.get("id")
    return InferRequest(
        model_name=model_name, infer_inputs=inputs,
        request_id=str(request_id) if request_id is not None else None,
        parameters=parameters, request_outputs=outputs or None,
    )

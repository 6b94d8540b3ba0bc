"""Each framework's natural request format, and how to read the probability from its answer.

A request is ``(body bytes, headers)``, built before any clock starts.
"""

from __future__ import annotations

import base64
import json
import struct

import httpx


def v1_request(image: bytes) -> tuple[bytes, dict]:
    """KServe v1 JSON, one instance (roadvision, FastAPI, Ray Serve, LitServe, BentoML)."""
    body = {"instances": [{"image_b64": base64.b64encode(image).decode()}]}
    return json.dumps(body).encode(), {"content-type": "application/json"}


def triton_request(image: bytes) -> tuple[bytes, dict]:
    """Open Inference Protocol v2 with Triton's binary-data extension, as tritonclient sends
    it: a JSON header, then the BYTES tensor (4-byte little-endian length + the JPEG)."""
    tensor = struct.pack("<I", len(image)) + image
    header = json.dumps({
        "inputs": [{"name": "image", "shape": [1, 1], "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(tensor)}}],
        "outputs": [{"name": "probability", "parameters": {"binary_data": False}}],
    }).encode()
    return header + tensor, {"content-type": "application/octet-stream",
                             "inference-header-content-length": str(len(header))}


def roadvision_v2_request(image: bytes) -> tuple[bytes, dict]:
    """The same v2 binary request with roadvision's input shape (one BYTES element per image:
    ``[N]``, where Triton's model takes ``[N, 1]``)."""
    body, headers = triton_request(image)
    size = int(headers["inference-header-content-length"])
    header = json.loads(body[:size])
    header["inputs"][0]["shape"] = [1]
    encoded = json.dumps(header).encode()
    return encoded + body[size:], {**headers,
                                   "inference-header-content-length": str(len(encoded))}


def v1_probability(response: httpx.Response) -> float:
    return float(response.json()["predictions"][0]["probability"])


def list_probability(response: httpx.Response) -> float:
    """BentoML's batchable API answers the list it was given, one result per instance."""
    return float(response.json()[0]["probability"])


def triton_probability(response: httpx.Response) -> float:
    return float(response.json()["outputs"][0]["data"][0])

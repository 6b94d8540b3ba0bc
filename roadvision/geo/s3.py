"""Rasters under an ``s3://`` prefix: list them with boto3, open them with rasterio (GDAL's
``/vsis3/``, which reads a Cloud-Optimised GeoTIFF by HTTP range requests).

The endpoint is ``endpoint_url`` when given, else ``AWS_ENDPOINT_URL`` (how a pod is given a
MinIO or other S3-compatible store), else AWS itself; credentials come from the usual
environment / profile chain, which both boto3 and GDAL read. GDAL is told the endpoint in its
own terms (host:port, https or not, path-style addressing) by :func:`s3_env`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

from roadvision.errors import UserError

__all__ = ["is_s3", "split_s3", "s3_endpoint", "s3_env", "list_keys", "read_object"]


def is_s3(uri: object) -> bool:
    return isinstance(uri, str) and uri.startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, prefix without slashes at the ends); a prefix with an
    empty, ``.`` or ``..`` segment is refused (it would name keys outside the prefix)."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    if not is_s3(uri) or not bucket:
        raise UserError(f"{uri}: expected s3://bucket/prefix")
    if prefix and any(p in ("", ".", "..") for p in prefix.split("/")):
        raise UserError(f"{uri}: an S3 prefix with an empty, '.' or '..' segment")
    return bucket, prefix


def s3_endpoint(endpoint_url: str | None = None) -> str | None:
    return endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None


def _client(endpoint_url: str | None):
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=s3_endpoint(endpoint_url),
                        config=Config(retries={"max_attempts": 3, "mode": "standard"}))


def _explain(uri: str, exc: Exception) -> UserError:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    if code == "NoSuchBucket":
        return UserError(f"{uri}: the bucket does not exist")
    if code in ("NoSuchKey", "404", "NotFound"):
        return UserError(f"{uri}: no such object")
    return UserError(f"{uri}: S3 request failed ({code or type(exc).__name__}: {exc})")


def list_keys(uri: str, suffixes: tuple[str, ...], endpoint_url: str | None = None
              ) -> list[str]:
    """The keys under the prefix ending in one of ``suffixes`` (case-insensitive), sorted,
    relative to the prefix."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = split_s3(uri)
    start = f"{prefix}/" if prefix else ""
    keys = []
    try:
        pages = _client(endpoint_url).get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=start)
        for page in pages:
            keys.extend(o["Key"] for o in page.get("Contents", [])
                        if o["Key"].lower().endswith(suffixes))
    except (BotoCoreError, ClientError) as exc:
        raise _explain(uri, exc) from None
    return sorted(k.removeprefix(start) for k in keys)


def read_object(uri: str, endpoint_url: str | None = None, max_bytes: int = 64 << 20) -> bytes:
    """One object's bytes (a catalogue JSON), refused above ``max_bytes``."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_s3(uri)
    try:
        obj = _client(endpoint_url).get_object(Bucket=bucket, Key=key)
        if obj.get("ContentLength", 0) > max_bytes:
            raise UserError(f"{uri}: {obj['ContentLength']} bytes, more than {max_bytes}")
        return obj["Body"].read()
    except (BotoCoreError, ClientError) as exc:
        raise _explain(uri, exc) from None


@contextmanager
def s3_env(endpoint_url: str | None = None) -> Iterator[None]:
    """A rasterio environment in which ``rasterio.open("s3://...")`` reaches the endpoint."""
    import rasterio

    options: dict[str, str] = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
    endpoint = s3_endpoint(endpoint_url)
    if endpoint:
        url = urlparse(endpoint)
        options.update(AWS_S3_ENDPOINT=url.netloc, AWS_VIRTUAL_HOSTING="FALSE",
                       AWS_HTTPS="YES" if url.scheme == "https" else "NO")
    with rasterio.Env(**options):
        yield

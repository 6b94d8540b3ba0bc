"""The imagery for an area: the server's provider chain, and the rasters one answer reads.

The lookup is the chain's (``roadvision.geo.providers.ImageryChain.plan``, the only place the
areas route learns which imagery covers an area): the local catalogues given by
``--imagery-catalogue`` first, then the providers of ``--imagery-providers FILE`` (the file
``roadvision imagery providers`` reads: more catalogues, XYZ / WMTS tile providers), in that
order. The chain keeps the catalogues parsed, re-reads one whose file changes and gives each
raster a version (size and modification time) for the cache key.

This module adds what serving needs around it: :func:`build_chain` from the server's settings,
and :func:`opened_imagery`, which turns a plan into the rasters ``roadvision.mapping.area``
reads. A planned tile provider is fetched there (on the areas thread, for the part the local
rasters leave) into an in-memory GeoTIFF; one that fails (HTTP error, timeout, no image) is
logged and skipped, and the next one is asked.

Each tile provider has a circuit breaker in the chain (``ImageryChain.circuits``): after its
``failure_threshold`` consecutive failures the plan skips it for ``cooldown_s``, so a provider
that is down costs no request its ``timeout_s`` per tile. The state is exported here, where the
route fetches: ``roadvision_imagery_provider_failures_total{provider}`` counts the failed
fetches, ``roadvision_imagery_provider_circuit_open{provider}`` is 1 while a circuit is open
(:func:`export_circuits`, after each plan and each fetch).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the geo libraries load with the first area, not with the server
    from roadvision.geo.providers import ImageryChain, ImageryPlan, ImagerySource
    from roadvision.mapping.area import AreaImagery

log = logging.getLogger("roadvision.serving.areas")

__all__ = ["OpenedImagery", "build_chain", "export_circuits", "opened_imagery"]


def build_chain(catalogues: Sequence[str], providers: str | None) -> ImageryChain:
    """The chain of the server's catalogues (``catalogue-1``, ...), then its providers file
    (the environment was read by ``AreasConfig.from_env`` already: not read again here)."""
    from roadvision.geo.providers import ImageryChain

    return ImageryChain.from_config(providers, catalogues=catalogues, env=False)


def export_circuits(chain: ImageryChain) -> None:
    """Set the circuit-open gauge of every tile provider of the chain (an open circuit turns
    half-open by the clock alone: read it when a request looks, not only when one fails)."""
    from . import metrics

    for name, circuit in chain.circuits().items():
        metrics.IMAGERY_PROVIDER_CIRCUIT_OPEN.labels(name).set(1 if circuit.open else 0)


@dataclass
class OpenedImagery:
    """The rasters of one answer, preferred first, and the tile providers that failed."""

    rasters: list[AreaImagery] = field(default_factory=list)  # what map_area reads
    used: list[ImagerySource] = field(default_factory=list)  # the same, as the chain names them
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (provider, why) at fetch

    @property
    def tiles(self) -> ImagerySource | None:
        """The tile provider whose tiles were fetched, if any."""
        return next((s for s in self.used if s.kind != "catalogue"), None)


@contextlib.contextmanager
def opened_imagery(chain: ImageryChain, plan: ImageryPlan,
                   stop: threading.Event | None = None) -> Iterator[OpenedImagery]:
    """The plan's local rasters, then the first planned tile provider that answers, stitched
    into an in-memory GeoTIFF (freed on exit) over the part the local rasters leave."""
    from rasterio.io import MemoryFile

    from roadvision.geo.providers import ProviderError
    from roadvision.mapping.area import AreaImagery

    from . import metrics

    opened = OpenedImagery()
    for source in plan.local:
        opened.rasters.append(AreaImagery(source.href, source.imagery_id, source.date))
        opened.used.append(source)
    with contextlib.ExitStack() as stack:
        bbox = plan.tile_bbox
        for source in plan.tiles if bbox is not None else ():
            if stop is not None and stop.is_set():
                break  # the caller stopped waiting: fetch no more
            try:
                pixels, transform = chain.fetch_tiles(source, bbox)
            except ProviderError as exc:
                log.warning("area %s: imagery provider %s skipped: %s",
                            [round(v, 6) for v in bbox], exc.provider, exc.reason)
                opened.skipped.append((exc.provider, exc.reason))
                if exc.fault:  # not a refusal by its open circuit, nor a 404
                    metrics.IMAGERY_PROVIDER_FAILURES.labels(source.provider).inc()
                continue
            finally:
                export_circuits(chain)
            memfile = stack.enter_context(MemoryFile(ext=".tif"))
            height, width = pixels.shape[:2]
            # Kept in Web Mercator, as fetched: map_area warps it once onto its metric grid.
            with memfile.open(driver="GTiff", height=height, width=width, count=3,
                              dtype="uint8", crs="EPSG:3857", transform=transform) as ds:
                ds.write(pixels.transpose(2, 0, 1))
            # the layer's date (or the one a {date} template was filled with): imagery_date
            opened.rasters.append(AreaImagery(memfile.name, source.imagery_id, source.date,
                                              source.gsd_m))
            opened.used.append(source)
            break
        yield opened

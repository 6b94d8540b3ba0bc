"""The imagery for an area: the server's catalogues, and the one lookup the areas route uses.

``ImageryCatalogues.find_imagery(area, date)`` is the only place ``serving/areas.py`` learns
which rasters cover an area (a provider chain, ``roadvision.geo.providers``, replaces it there).
Catalogues (``roadvision imagery index``) are kept parsed and re-read when their file changes;
an entry's raster is found by ``roadvision.geo.catalogue.raster_uri``, and its version (the
file's modification time and size) goes into the cache key, so re-flown imagery is never
answered from an old mosaic.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from roadvision.errors import UserError

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

log = logging.getLogger("roadvision.serving.areas")

__all__ = ["ImageryHit", "ImageryFound", "ImageryCatalogues"]


@dataclass(frozen=True)
class ImageryHit:
    """One raster chosen for an area."""

    id: str
    path: str  # what rasterio opens: a file, or an s3:// URI
    date: str | None
    gsd_m: float
    version: str  # changes when the file does: modification time and size


@dataclass(frozen=True)
class ImageryFound:
    """The rasters chosen for an area (preferred first) and what they leave uncovered."""

    hits: list[ImageryHit]
    coverage: float  # share of the area covered, 0..1
    uncovered: BaseGeometry  # WGS84


class ImageryCatalogues:
    """The imagery catalogues (``roadvision imagery index``) the server reads, kept parsed in
    memory and re-read when a catalogue file changes."""

    def __init__(self, paths: tuple[str, ...]) -> None:
        from roadvision.geo.catalogue import read_catalogue

        self.paths = [Path(p) for p in paths]
        self._docs: dict[Path, tuple[int, dict]] = {}
        for path in self.paths:
            self._docs[path] = (path.stat().st_mtime_ns, read_catalogue(path))

    def _current(self) -> list[tuple[Path, dict]]:
        from roadvision.geo.catalogue import read_catalogue

        out = []
        for path in self.paths:
            try:
                mtime = path.stat().st_mtime_ns
            except OSError:
                mtime = None
            seen, doc = self._docs[path]
            if mtime is not None and mtime != seen:
                try:
                    doc = read_catalogue(path)
                    self._docs[path] = (mtime, doc)
                except UserError as exc:  # a catalogue being rewritten: keep the last good one
                    log.warning("imagery catalogue %s: %s; using the previous version", path,
                                exc)
            out.append((path, doc))
        return out

    def find_imagery(self, area: BaseGeometry, date: str | None = None) -> ImageryFound:
        """The rasters to mosaic for the WGS84 ``area``, acquired on or before ``date``.

        The one imagery lookup of the areas route (a provider chain replaces this method).
        Candidates from every catalogue, finest GSD first and then the newest; each is taken
        when it covers some of the area the ones before it left uncovered, until the area is
        covered. A raster whose file is gone, or that would lie outside its catalogue's
        folder, is skipped with a warning.
        """
        from shapely import unary_union
        from shapely.geometry import shape

        from roadvision.geo.catalogue import find_imagery

        candidates = []
        for path, doc in self._current():
            for feature in find_imagery(doc, area.bounds):
                props = feature["properties"]
                acquired = props.get("datetime")
                if date is not None and (acquired is None or acquired[:10] > date):
                    continue
                footprint = shape(feature["geometry"])
                if footprint.intersects(area):
                    candidates.append(((path, doc), feature, footprint))
        candidates.sort(key=lambda c: c[1]["properties"].get("datetime") or "", reverse=True)
        candidates.sort(key=lambda c: c[1]["properties"]["gsd_m"])
        hits: list[ImageryHit] = []
        covered: BaseGeometry | None = None
        remaining = area
        for source, feature, footprint in candidates:
            gain = remaining.intersection(footprint)
            if gain.is_empty or gain.area <= area.area * 1e-9:
                continue
            hit = _hit(*source, feature)
            if hit is None:
                continue
            hits.append(hit)
            covered = footprint if covered is None else unary_union([covered, footprint])
            remaining = area.difference(covered)
            if remaining.is_empty or remaining.area <= area.area * 1e-9:
                break
        coverage = 1.0 - (remaining.area / area.area if not remaining.is_empty else 0.0)
        return ImageryFound(hits, max(0.0, min(1.0, coverage)), remaining)


def _hit(catalogue: Path, doc: dict, feature: dict) -> ImageryHit | None:
    """The entry's raster (``catalogue.raster_uri``: beside the catalogue, or under the folder
    it indexed), or None with a warning when it is gone or not a plain file."""
    from roadvision.geo.catalogue import raster_uri

    props = feature["properties"]
    try:
        uri = raster_uri(doc, feature, catalogue)
    except UserError as exc:
        log.warning("imagery catalogue %s: %s; skipped", catalogue, exc)
        return None
    if uri.startswith("s3://"):  # S3 objects: the catalogue's own version stands for theirs
        version = f"catalogue-{catalogue.stat().st_mtime_ns}"
        return ImageryHit(str(feature["id"]), uri, props.get("datetime"),
                          float(props["gsd_m"]), version)
    path = Path(uri)
    try:
        st = path.stat()
    except OSError:
        log.warning("imagery %s: %s is missing; skipped (re-run roadvision imagery index)",
                    feature["id"], path)
        return None
    if path.is_symlink() or not path.is_file():
        log.warning("imagery %s: %s is not a plain file; skipped", feature["id"], path)
        return None
    return ImageryHit(str(feature["id"]), str(path), props.get("datetime"),
                      float(props["gsd_m"]), f"{st.st_mtime_ns}-{st.st_size}")

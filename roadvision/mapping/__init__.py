"""Orthophoto mapping: a georeferenced raster in, lane-marking vectors out (domain floor).

``orthophoto.map_raster`` reads a GeoTIFF / COG window by window at the model's ground sample
distance (``gsd``), runs each window through the one inference path
(``roadvision.runtime.inference``: sliding windows with overlap blending, TTA, the precision
policy), writes the class raster block by block and vectorises it with ``roadvision.geo``.
``roadvision predict`` and the batch-prediction component call it.
"""

from roadvision.geo.gsd import DEFAULT_GSD, model_gsd

from .orthophoto import MappingConfig, RasterResult, map_raster

__all__ = ["DEFAULT_GSD", "model_gsd", "MappingConfig", "RasterResult", "map_raster"]

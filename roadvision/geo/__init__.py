"""Geospatial building blocks for lane-marking products: pure numpy/rasterio/shapely, no torch.

- ``raster``: open a GeoTIFF / COG (CRS and transform kept), plan windows at a target ground
  sample distance, read them resampled, write a class GeoTIFF window by window;
- ``crs``: metric CRS for a place (UTM), WGS84 conversion, areas given as a WGS84 bbox;
- ``skeleton``: a class mask -> one-pixel skeleton -> pixel paths (graph tracing);
- ``lines``: simplify and smooth polylines, join the dashes of one line;
- ``features``: class raster + confidence -> line features with their attributes;
- ``areas``: the same for crosswalks, arrows and other markings (12 classes): polygons, points;
- ``writers``: GeoJSON (WGS84) and GeoPackage output;
- ``gsd``: the ground sample distance a bundle was trained at (``extra.gsd_m``);
- ``metrics``: length-weighted polyline precision / recall / F1 at buffer tolerances;
- ``catalogue``: footprint index over a folder or ``s3://`` prefix of COGs (``s3``: reading
  there); ``providers``: the imagery chain, local catalogues first, then XYZ / WMTS tile
  services (``tiles``: Web Mercator tile maths and stitching; ``mosaic``: sources onto one grid).

It sits below ``roadvision.data`` (the generator writes georeferenced tiles with it) and never
imports torch, so data steps and light tools can use it.
"""

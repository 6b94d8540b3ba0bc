"""OpenAPI pieces for our inference routes (FastAPI generates the rest at ``/openapi.json``).

The routes read the raw body themselves (size limits before reading, the v2 binary extension),
so FastAPI cannot infer their request schemas: they are written out here and attached with
``openapi_extra``.
"""

from __future__ import annotations

DESCRIPTION = """\
roadvision inference API (KServe ModelServer).

* **v1**: `POST /v1/models/{name}:predict` with JSON `{"instances": [{"image_b64", "metadata",
  "tta"}]}`.
* **v2** (Open Inference Protocol): `POST /v2/models/{name}/infer` with a BYTES input `image`
  (raw bytes through the binary tensor extension, or base64 strings in JSON), an optional BYTES
  input `metadata` (one JSON object per image) and an optional request parameter `tta`.

* **areas**: `POST /v1/areas:analyze` with JSON `{"bbox": [min_lon, min_lat, max_lon, max_lat]}`
  or `{"geometry": <GeoJSON Polygon/MultiPolygon>}` (WGS84), optional `date`, `classes`,
  `format` (`geojson` or `gpkg`): the lane markings there, from the server's imagery catalogues,
  as a GeoJSON FeatureCollection or a GeoPackage download (needs a lanes model and
  `--imagery-catalogue`).

Images: JPEG, PNG or WebP. TTA: `none`, `flip` or `full`, up to the server's limit. When API
keys are enabled, send `Authorization: Bearer <key>` or `X-API-Key: <key>`. Errors are JSON
`{"error": "<message>", "code": "<code>"}` with status 400, 401, 404, 413 (body, pixels or
compute budget), 415, 422, 429, 503 or 504 (the per-request deadline).
Responses carry `x-roadvision-model-version` and `x-roadvision-cache` headers.
"""

METADATA_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "description": "Optional; every field may be omitted or null. lat and lon go together.",
    "properties": {
        "lat": {"type": "number", "minimum": -90, "maximum": 90},
        "lon": {"type": "number", "minimum": -180, "maximum": 180},
        "gps": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2,
                "description": "[lat, lon], instead of lat/lon"},
        "weather": {"type": "string", "example": "cloudy",
                    "description": "clear, cloudy, rainy, foggy, snowy (aliases accepted)"},
        "daytime": {"type": "string", "example": "day", "description": "day, night, dusk"},
        "scene": {"type": "string", "example": "urban",
                  "description": "urban, highway, residential, rural, industrial"},
        "text": {"type": "string", "maxLength": 2000},
        "city": {"type": "string", "maxLength": 200},
    },
}

TTA_SCHEMA = {"type": "string", "enum": ["none", "flip", "full"], "default": "none"}

V1_REQUEST = {
    "type": "object",
    "required": ["instances"],
    "properties": {
        "instances": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["image_b64"],
                "additionalProperties": False,
                "properties": {
                    "image_b64": {"type": "string", "format": "byte",
                                  "description": "base64 of a JPEG, PNG or WebP file"},
                    "metadata": METADATA_SCHEMA,
                    "tta": TTA_SCHEMA,
                },
            },
        },
        "parameters": {"type": "object", "properties": {"tta": TTA_SCHEMA},
                       "description": "defaults for every instance"},
    },
}

ROADWORK_PREDICTION = {
    "type": "object",
    "properties": {
        "probability": {"type": "number", "description": "calibrated P(active work zone)"},
        "label": {"type": "integer", "enum": [0, 1], "description": "probability >= threshold"},
        "model_version": {"type": "string"},
        "tta": TTA_SCHEMA,
        "cached": {"type": "boolean"},
    },
}

LANES_PREDICTION = {
    "type": "object",
    "properties": {
        "mask_png_b64": {"type": "string", "format": "byte",
                         "description": "single-channel PNG of class ids, input size"},
        "class_shares": {"type": "object", "additionalProperties": {"type": "number"},
                         "description": "fraction of pixels per class name"},
        "height": {"type": "integer"},
        "width": {"type": "integer"},
        "model_version": {"type": "string"},
        "tta": TTA_SCHEMA,
        "cached": {"type": "boolean"},
    },
}

ERROR = {
    "type": "object",
    "required": ["error", "code"],
    "properties": {"error": {"type": "string"}, "code": {"type": "string"}},
}

V2_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string", "enum": ["image", "metadata"]},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "datatype": {"type": "string", "enum": ["BYTES"]},
        "parameters": {"type": "object",
                       "properties": {"binary_data_size": {"type": "integer"}}},
        "data": {"type": "array", "items": {"type": "string"},
                 "description": "JSON mode: base64 images / JSON metadata strings"},
    },
}

V2_REQUEST = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "inputs": {"type": "array", "items": V2_TENSOR},
        "outputs": {"type": "array", "items": {"type": "object"}},
        "parameters": {"type": "object", "properties": {"tta": TTA_SCHEMA,
                                                        "binary_data_output": {"type": "boolean"}}},
    },
}

_ERRORS = {
    str(status): {"description": text, "content": {"application/json": {"schema": ERROR}}}
    for status, text in (
        (400, "malformed JSON, base64 or request shape"),
        (401, "missing or unknown API key"),
        (404, "no such model"),
        (413, "body, pixel count or compute budget (model windows) over the limit"),
        (415, "image format not accepted"),
        (422, "metadata, TTA or image content invalid"),
        (429, "rate limit exceeded (see Retry-After)"),
        (503, "model not ready, or the rate limiter unavailable (policy closed)"),
        (504, "the request ran past the server's deadline; its work was dropped"),
    )
}

V1_OPENAPI = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": V1_REQUEST}}},
    "responses": {
        "200": {"description": "one prediction per instance", "content": {"application/json": {
            "schema": {"type": "object", "properties": {"predictions": {
                "type": "array", "items": {"oneOf": [ROADWORK_PREDICTION, LANES_PREDICTION]}}}},
        }}},
        **_ERRORS,
    },
}

V2_OPENAPI = {
    "requestBody": {"required": True, "content": {
        "application/json": {"schema": V2_REQUEST},
        "application/octet-stream": {"schema": {
            "type": "string", "format": "binary",
            "description": "binary tensor extension: JSON header (its length in the "
                           "Inference-Header-Content-Length header) followed by the tensors"}},
    }},
    "responses": {
        "200": {"description": "Open Inference Protocol response; roadwork outputs "
                               "probability (FP32), label (INT32), cached (BOOL); lanes outputs "
                               "mask_png_b64 (BYTES), class_shares (FP32 [N, C]), cached (BOOL); "
                               "model_version and parameters.tta set"},
        **_ERRORS,
    },
}


# --------------------------------------------------------------------------- areas
_LON = {"type": "number", "minimum": -180, "maximum": 180}
_LAT = {"type": "number", "minimum": -90, "maximum": 90}

AREAS_REQUEST = {
    "type": "object",
    "additionalProperties": False,
    "description": "exactly one of bbox or geometry, in WGS84 (longitude first)",
    "properties": {
        "bbox": {"type": "array", "minItems": 4, "maxItems": 4,
                 "items": {"type": "number"}, "example": [13.4049, 52.52, 13.4062, 52.5208],
                 "description": "[min_lon, min_lat, max_lon, max_lat]; min below max"},
        "geometry": {"type": "object", "required": ["type", "coordinates"],
                     "description": "a valid GeoJSON Polygon or MultiPolygon",
                     "properties": {"type": {"type": "string",
                                             "enum": ["Polygon", "MultiPolygon"]},
                                    "coordinates": {"type": "array"}}},
        "date": {"type": "string", "format": "date",
                 "description": "use imagery acquired on or before this day"},
        "classes": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                    "description": "lane classes to keep (default all of the model's)",
                    "example": ["white_solid", "white_dashed"]},
        "format": {"type": "string", "enum": ["geojson", "gpkg"], "default": "geojson"},
        "model": {"type": "string", "description": "the lanes model, when several are served"},
        "allow_partial": {"type": "boolean", "default": False,
                          "description": "map the covered part when imagery covers the area "
                                         "only in part (else 422)"},
    },
}

AREA_FEATURE_PROPERTIES = {
    "id": {"type": "integer"}, "class": {"type": "string"},
    "length_m": {"type": "number"}, "width_m": {"type": "number"},
    "confidence": {"type": "number"}, "wear": {"type": "number", "minimum": 0, "maximum": 1},
    "dash_count": {"type": "integer"}, "paint_ratio": {"type": "number"},
    "model": {"type": "string"}, "model_version": {"type": "string"},
    "imagery_id": {"type": "string"}, "imagery_date": {"type": ["string", "null"]},
    # crosswalks, arrows, other markings (12 classes) instead of the line measures
    "area_m2": {"type": "number"}, "stripe_count": {"type": "integer"},
    "orientation_deg": {"type": "number"},
}

AREAS_RESPONSE = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": ["FeatureCollection"]},
        "roadvision": {"type": "object", "description": "the request's facts", "properties": {
            "model": {"type": "object"}, "model_version": {"type": "string"},
            "imagery": {"type": "array", "items": {"type": "object"}},
            "area_km2": {"type": "number"}, "coverage": {"type": "number"},
            "gsd_m": {"type": "number"}, "classes": {"type": "array"},
            "cached": {"type": "boolean"}}},
        "features": {"type": "array", "items": {"type": "object", "properties": {
            "type": {"type": "string"}, "id": {"type": "integer"},
            "geometry": {"type": "object", "description": "lines: LineString or "
                         "MultiLineString; 12 classes: crosswalks and other markings Polygon, "
                         "arrows Point"},
            "properties": {"type": "object", "properties": AREA_FEATURE_PROPERTIES}}}},
    },
}

AREAS_OPENAPI = {
    "requestBody": {"required": True,
                    "content": {"application/json": {"schema": AREAS_REQUEST}}},
    "responses": {
        "200": {"description": "the lane markings in the area (lines clipped at its edge, "
                               "discrete markings whole); headers x-roadvision-cache, "
                               "x-roadvision-imagery, x-roadvision-model-version",
                "content": {"application/geo+json": {"schema": AREAS_RESPONSE},
                            "application/geopackage+sqlite3": {
                                "schema": {"type": "string", "format": "binary"}}}},
        **{str(status): {"description": text,
                         "content": {"application/json": {"schema": ERROR}}}
           for status, text in (
               (400, "the body is not a JSON object"),
               (401, "missing or unknown API key"),
               (404, "no imagery covers the area; or no lanes model / catalogue configured"),
               (413, "the area exceeds the server's limit (--max-area-km2)"),
               (422, "bbox out of range, inverted or degenerate; invalid polygon; unknown "
                     "class, format or field; imagery covers the area only in part"),
               (429, "the route's rate-limit profile exceeded (see Retry-After)"),
               (503, "model not ready, a catalogued raster unreadable, or the rate limiter "
                     "unavailable (policy closed)"),
               (504, "the area took longer than the areas deadline"),
           )},
    },
}


# --------------------------------------------------------------------------- /docs
#: The Swagger UI files /docs serves, by the name they are asked for under DOCS_ASSETS.
SWAGGER_FILES = {"swagger-ui-bundle.js": "application/javascript", "swagger-ui.css": "text/css",
                 "favicon-32x32.png": "image/png"}
DOCS_PATH = "/docs"
DOCS_ASSETS = "/docs/assets"

_NO_SWAGGER = """<!doctype html>
<html><head><meta charset="utf-8"><title>roadvision serving: API</title></head>
<body style="font-family: sans-serif; max-width: 50em; margin: 2em auto">
<h1>roadvision serving: API</h1>
<p>The interactive Swagger UI needs the <code>swagger-ui-bundle-v2</code> package (in the
<code>serve</code> extra), which this installation lacks. The API's OpenAPI document is at
<a href="/openapi.json">/openapi.json</a>; load it into any OpenAPI viewer.</p>
</body></html>
"""


def _swagger_dir():
    """Swagger UI's files, shipped inside the ``swagger-ui-bundle-v2`` wheel (no CDN at run
    time: a server in a closed network still shows its docs); None when not installed."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    return swagger_ui_path


def add_docs_routes(app) -> list:
    """``GET /docs`` (Swagger UI over ``/openapi.json``) and its assets; returns the routes.

    FastAPI's own /docs loads Swagger UI from a CDN, and KServe turns it off by default; this
    one serves local files, or, without them, a page that says so and links the schema.
    """
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import FileResponse, HTMLResponse, Response

    folder = _swagger_dir()

    async def docs() -> Response:
        if folder is None:
            return HTMLResponse(_NO_SWAGGER)
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title}: API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png")

    async def asset(name: str) -> Response:
        # A fixed list: the name never reaches the file system unless it is one of these.
        if folder is None or name not in SWAGGER_FILES:
            return Response(status_code=404)
        return FileResponse(str(folder / name), media_type=SWAGGER_FILES[name],
                            headers={"cache-control": "public, max-age=86400"})

    app.add_api_route(DOCS_PATH, docs, methods=["GET"], include_in_schema=False)
    app.add_api_route(DOCS_ASSETS + "/{name}", asset, methods=["GET"], include_in_schema=False)
    return app.router.routes[-2:]

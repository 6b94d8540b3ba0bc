"""The MLflow pyfunc face of a roadvision model bundle (an MLflow "model from code" file).

``roadvision.registry.register_bundle`` logs this file as the ``python_model``; MLflow copies it
into the logged model and runs it when the model is loaded with ``mlflow.pyfunc.load_model``.
It only wraps the bundle: the weights load through ``roadvision.models.bundle`` (safetensors +
JSON, no unpickling) and the inputs go through the same decode/prepare path as serving, then
through the one inference path (``roadvision.runtime.inference``, the device's precision
policy included) that serving and evaluation use.

Input: a DataFrame with an encoded ``image`` column (bytes or base64 text) and optional
``lat``/``lon``/``weather``/``daytime``/``scene``/``text``. Output: roadwork ``probability`` +
``label``; lanes ``class_shares`` (JSON) + ``mask_png`` (base64 PNG of class ids).
"""

from __future__ import annotations

import base64
import json

import mlflow.pyfunc
import pandas as pd
from mlflow.models import set_model

METADATA_FIELDS = ("lat", "lon", "weather", "daytime", "scene", "text")
MAX_PIXELS = 64_000_000


class RoadvisionBundleModel(mlflow.pyfunc.PythonModel):
    """Loads the bundle with ``roadvision.models.bundle`` and predicts on encoded images."""

    def load_context(self, context):
        from roadvision.models.bundle import BUNDLE_ARTIFACT
        from roadvision.runtime.inference import load_for_inference

        self.model = load_for_inference(context.artifacts[BUNDLE_ARTIFACT])

    # The DataFrame hint tells MLflow the input schema comes from the logged signature (a hint
    # it cannot turn into a schema switches its own type-hint validation off, warning-free).
    def predict(self, context, model_input: pd.DataFrame, params=None):
        from roadvision.data.images import decode_image, encode_png
        from roadvision.models.preprocess import prepare_sample
        from roadvision.runtime.inference import predict

        rows = model_input.to_dict("records") if hasattr(model_input, "to_dict") \
            else list(model_input)
        samples = []
        for row in rows:
            data = row["image"]
            if isinstance(data, str):
                data = base64.b64decode(data)
            image = decode_image(bytes(data), max_pixels=MAX_PIXELS)
            meta = {k: row[k] for k in METADATA_FIELDS if row.get(k) is not None and
                    not (isinstance(row[k], float) and row[k] != row[k])}  # NaN = missing
            samples.append(prepare_sample(self.model.cfg, image, meta or None))
        results = predict(self.model, samples, tta=(params or {}).get("tta", "none"))
        if self.model.cfg.task == "lanes":
            return pd.DataFrame([{
                "class_shares": json.dumps(r["class_shares"]),
                "mask_png": base64.b64encode(encode_png(r["mask"])).decode()} for r in results])
        return pd.DataFrame([{"probability": float(r["probability"]), "label": int(r["label"])}
                             for r in results])


set_model(RoadvisionBundleModel())

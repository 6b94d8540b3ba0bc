"""Monitoring: the payload record format the predictor logs, and drift against a reference.

* ``records``: the columns of one logged request/answer row and how logged parquet is read back
  from a folder or an ``s3://`` prefix (the predictor's ``serving/payload_log.py`` writes them);
* ``features``: what is compared - encoder embeddings, simple image statistics, predictions;
* ``reference``: the training-side sample those are compared with, stored beside the bundle;
* ``drift``: the tests (MMD with a permutation p-value, two-sample tests on statistics and
  scores), ``report`` (HTML) and ``prometheus`` (figures for alerting).

A domain package (floor 5): it uses the runtime and the models, never serving or the pipeline.
"""

from __future__ import annotations

__all__ = ["records", "features", "reference", "drift", "report", "prometheus"]

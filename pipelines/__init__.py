"""The training pipeline and its entry points.

``training`` (the ``@dsl.pipeline``), ``params`` (parameters, presets, validation),
``compile`` (YAML; the committed ``training_pipeline.yaml``), ``local`` (kfp.local runs) and
``submit`` (a KFP cluster). The CLI is ``roadvision pipeline compile|run --local|submit``.
"""

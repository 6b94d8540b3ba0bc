"""The training pipeline and its entry points.

``training`` (the ``@dsl.pipeline``), ``cluster`` (its compile-time Kubernetes settings),
``run_profiles`` (named parameter sets of a whole run; the parameters themselves are
``roadvision.components.run_params.RunParams``, which the steps validate), ``compile`` (YAML;
the committed ``training_pipeline.yaml``), ``local`` (kfp.local runs, read from the steps'
result JSON) and ``submit`` (a KFP cluster). The CLI is ``roadvision pipeline
compile|run --local|submit``.
"""

"""Pipeline steps, one module each: the step's plain-Python function (``run_<step>``) and its
thin KFP face (``@component``, see ``_base.py``).

Order in the DAG: check_params, ingest, validate, split, gps_weighting, train, evaluate,
distill, error_analysis, register, gate, promote (``roadvision.pipelines.training``). A step
never imports another step, nor the pipeline (``roadvision.pipelines``): shared helpers live
in ``_base.py``, the run's parameters in ``run_params.py``.
"""

"""Evaluation: scores on a split (the metrics are ``roadvision.metrics``), calibration,
slices, the NATIX protocol and error analysis.

Imported eagerly (so ``roadvision.evaluation.evaluate`` is the function, not the module of the
same name); the heavy libraries (torch models, matplotlib) load inside the functions.
"""

from roadvision.evaluation.calibration import calibrate
from roadvision.evaluation.error_analysis import error_analysis
from roadvision.evaluation.evaluate import evaluate

__all__ = ["evaluate", "calibrate", "error_analysis"]

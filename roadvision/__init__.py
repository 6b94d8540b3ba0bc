"""roadvision: train, register and serve road-infrastructure vision models.

Sub-packages: ``roadvision.data`` (contract, generator, importers, ingest, split, weights),
``roadvision.models`` (torch modules, losses, TTA, bundle), ``roadvision.training``,
``roadvision.evaluation``, ``roadvision.components`` / ``roadvision.pipelines`` (KFP),
``roadvision.serving`` (KServe predictor) and ``roadvision.cli``.
"""

__version__ = "0.1.0"

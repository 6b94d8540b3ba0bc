"""One drift check end to end: reference + logged payloads -> result, report, figures.

The plain-Python body that ``roadvision monitor drift`` and the KFP component share.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from roadvision.errors import UserError

from .drift import DEFAULT_ALPHA, DEFAULT_PERMUTATIONS, DriftResult, compare
from .records import read_logged
from .reference import (
    Reference,
    build_reference,
    find_reference,
    load_reference,
    logged_features,
)

__all__ = ["CheckOptions", "CheckOutcome", "resolve_reference", "run_check"]


@dataclass
class CheckOptions:
    logged: str  # folder or s3:// prefix of payload parquet
    model: str | None = None  # served model name to keep (None: every row)
    rows: int | None = None  # newest rows only
    alpha: float = DEFAULT_ALPHA
    permutations: int = DEFAULT_PERMUTATIONS
    seed: int = 0
    endpoint_url: str | None = None
    report: str | None = None  # HTML path
    json_path: str | None = None
    metrics_file: str | None = None
    pushgateway: str | None = None


@dataclass
class CheckOutcome:
    result: DriftResult
    reference_info: dict
    written: list[Path] = field(default_factory=list)


def resolve_reference(reference: str | Path, bundle: str | Path | None, *,
                      rows: int = 200, seed: int = 0) -> tuple[Reference, Path]:
    """(reference, bundle folder) from ``--reference BUNDLE_OR_DATA [--bundle B]``.

    A bundle holding ``drift_reference.npz`` is used as stored; a data set folder is sampled
    through ``bundle`` now (slower: ``rows`` images through the encoder on every check).
    """
    from roadvision.models.bundle import locate_bundle

    reference = Path(reference)
    if (reference / "manifest.parquet").is_file():
        if bundle is None:
            raise UserError(f"{reference} is a data set: pass --bundle (the model whose encoder "
                            "embeds it), or a bundle with a stored reference as --reference")
        path = locate_bundle(Path(bundle))
        return build_reference(path, reference, n=rows, seed=seed), path
    stored = find_reference(reference)
    if stored is None:
        raise UserError(f"{reference}: the bundle holds no drift reference; make one with "
                        "`roadvision monitor reference --bundle B --data TRAIN_DATA`, or pass "
                        "the training data set as --reference with --bundle")
    return load_reference(stored), locate_bundle(reference)


def run_check(reference: Reference, bundle: Path, options: CheckOptions) -> CheckOutcome:
    """Read the logged rows, compare them with ``reference``, write what was asked for."""
    from roadvision.runtime.inference import load_for_inference

    rows = read_logged(options.logged, model=options.model, endpoint_url=options.endpoint_url,
                       limit=options.rows)
    model = load_for_inference(bundle)
    if model.cfg.task != reference.info.get("task", model.cfg.task):
        raise UserError(f"the reference is for a {reference.info['task']} model; the bundle "
                        f"serves {model.cfg.task}")
    current = logged_features(model, rows)
    result = compare(reference.features, current, alpha=options.alpha,
                     permutations=options.permutations, seed=options.seed)
    versions = sorted(set(rows["model_version"].dropna())) if "model_version" in rows else []
    expected = reference.info.get("bundle_version")
    if expected and versions and versions != [expected]:
        result.notes.append(f"logged answers come from model version(s) {versions}, the "
                            f"reference from {expected}: prediction drift mixes models")
    outcome = CheckOutcome(result, reference.info)
    name = options.model or (str(rows["model"].iloc[0]) if len(rows) else "unknown")
    if options.report:
        from .report import write_html

        facts = {"model": name, "logged": options.logged, "reference": json.dumps(
            reference.info, sort_keys=True), "logged versions": ", ".join(versions)}
        outcome.written.append(write_html(result, options.report,
                                          title=f"roadvision drift: {name}", facts=facts))
    if options.json_path:
        Path(options.json_path).write_text(json.dumps(result.as_dict(), indent=2) + "\n")
        outcome.written.append(Path(options.json_path))
    if options.metrics_file:
        from .prometheus import write_textfile

        outcome.written.append(write_textfile(result, name, options.metrics_file))
    if options.pushgateway:
        from .prometheus import push

        push(result, name, options.pushgateway)
    return outcome

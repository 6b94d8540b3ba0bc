"""``roadvision model ...``: list, show, promote, roll back, audit registered models (MLflow);
``model uri`` prints a version's storage location for KServe's ``storageUri``; ``model canary``
compares a served champion and challenger on live figures and promotes or rolls back."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from roadvision.cli._options import TRACKING_URI_HELP, make_console

app = typer.Typer(help="Registered models: list, show, promote, rollback, audit, uri, canary "
                       "(MLflow).",
                  no_args_is_help=True)
console = make_console()


def register(root: typer.Typer) -> None:
    """Add the ``model`` group to the root app (called by ``roadvision.cli``)."""
    root.add_typer(app, name="model")


_TRACKING_URI = typer.Option(None, "--tracking-uri", help=TRACKING_URI_HELP)


@app.callback()
def _store(tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help=TRACKING_URI_HELP)) -> None:
    # Only recorded here: each command opens the store (its own --tracking-uri wins), so that
    # `roadvision model list --tracking-uri X` works as well as `model --tracking-uri X list`.
    if tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri


def _open_store(tracking_uri: str | None, *, missing_ok: bool = False) -> bool:
    """Use ``tracking_uri`` (else the group's, else the environment's) for this command; check
    it can be reached. False (``missing_ok``) or a UserError when the local store does not exist
    yet: a read-only command never creates one (seconds of migrations for an empty registry)."""
    from roadvision import registry
    from roadvision.errors import UserError
    from roadvision.registry.store import missing_local_store

    if tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    if not os.environ.get("MLFLOW_TRACKING_URI") and not os.environ.get("ROADVISION_HOME") and \
            Path(".roadvision", "mlflow.db").is_file():
        # The default store used to live in the working directory; say where it went.
        typer.secho(f"note: ./.roadvision/mlflow.db is not the default store any more (it is "
                    f"{registry.tracking_uri()}); set ROADVISION_HOME=.roadvision to use it",
                    err=True, fg=typer.colors.YELLOW)
    missing = missing_local_store()
    if missing is not None:
        if missing_ok:
            return False
        raise UserError(f"no MLflow store at {missing} yet (nothing was registered there); "
                        "pass --tracking-uri or set MLFLOW_TRACKING_URI for another store")
    registry.check_tracking(None, parameter="--tracking-uri")
    return True


@app.command("list")
def list_(tracking_uri: str | None = _TRACKING_URI) -> None:
    """Registered models with their champion and challenger."""
    from roadvision import registry

    if not _open_store(tracking_uri, missing_ok=True):
        typer.echo(f"no registered models: no store at {registry.tracking_uri()} yet")
        return
    models = registry.list_models()
    if not models:
        typer.echo(f"no registered models in {registry.tracking_uri()}")  # whole, unwrapped
        return
    table = Table()
    for column in ("model", "versions", "latest", "champion", "challenger", "other aliases"):
        table.add_column(column)
    for m in models:
        aliases = {k: str(v) for k, v in m["aliases"].items()}
        other = ", ".join(f"@{k}=v{v}" for k, v in sorted(aliases.items())
                          if k not in (registry.CHAMPION, registry.CHALLENGER))
        table.add_row(m["name"], str(m["num_versions"]), m["latest_version"],
                      aliases.get(registry.CHAMPION, "-"), aliases.get(registry.CHALLENGER, "-"),
                      other or "-")
    console.print(table)


@app.command("show")
def show(model: str = typer.Argument(..., help="NAME, NAME@alias or NAME/version"),
         as_json: bool = typer.Option(False, "--json", help="print JSON"),
         tracking_uri: str | None = _TRACKING_URI) -> None:
    """One version: aliases, metrics, gate decision, lineage and audit tags."""
    from roadvision import registry

    _open_store(tracking_uri)
    info = registry.get_version(model)
    if as_json:
        console.print_json(json.dumps({"name": info.name, "version": info.version,
                                       "aliases": info.aliases, "tags": info.tags,
                                       "run_id": info.run_id, "created_at": info.created_at}))
        return
    aliases = ", ".join(f"@{a}" for a in info.aliases) or "none"
    console.print(f"[bold]{info.name}[/] version {info.version}  aliases: {aliases}")
    console.print(f"created {info.created_at}  run {info.run_id}  uri {info.uri}")
    table = Table(title="tags")
    table.add_column("tag")
    table.add_column("value", overflow="fold")
    for key in sorted(info.tags):
        table.add_row(escape(key), escape(info.tags[key]))
    console.print(table)


@app.command("promote")
def promote(name: str = typer.Argument(..., help="registered model name"),
            version: str = typer.Argument(..., help="version to make @champion (3 or v3)"),
            reason: str = typer.Option("", help="why (kept in the audit tags)"),
            force: bool = typer.Option(False, "--force",
                                       help="promote a version the gate refused (needs --reason)"),
            tracking_uri: str | None = _TRACKING_URI) -> None:
    """Make VERSION the champion by hand (audit tags record who, when, why)."""
    from roadvision import registry
    from roadvision.errors import UserError

    version = registry.parse_version(version)
    if force and not reason.strip():
        raise UserError("--force: say why with --reason (it goes into the audit log)")
    _open_store(tracking_uri)
    info = registry.promote(name, version, reason=reason or "manual promotion", force=force)
    previous = (registry.alias_note(info.tags, registry.CHAMPION) or {}).get("previous")
    was = f" (was v{previous})" if previous and previous != info.version else ""
    forced = " (forced over the gate's refusal)" if force and \
        info.tags.get("gate.decision") == "refuse" else ""
    console.print(f"[green]{name} v{info.version} is now @champion[/]{was}{forced}")


@app.command("rollback")
def rollback(name: str = typer.Argument(..., help="registered model name"),
             reason: str = typer.Option("", help="why (kept in the audit tags)"),
             tracking_uri: str | None = _TRACKING_URI) -> None:
    """Point @champion back at the previous champion."""
    from roadvision import registry

    _open_store(tracking_uri)
    info = registry.rollback(name, reason=reason)
    was = (registry.alias_note(info.tags, registry.CHAMPION) or {}).get("previous") or "?"
    console.print(f"[yellow]{name} @champion rolled back from v{was} to v{info.version}[/]")


@app.command("audit")
def audit(name: str = typer.Argument(..., help="registered model name"),
          as_json: bool = typer.Option(False, "--json", help="print JSON"),
          tracking_uri: str | None = _TRACKING_URI) -> None:
    """Every alias change of NAME, oldest first (who, when, why)."""
    from roadvision import registry

    _open_store(tracking_uri)
    registry.list_versions(name)  # a clear error for an unknown model
    entries = registry.audit_log(name)
    if as_json:
        console.print_json(json.dumps(entries))
        return
    table = Table()
    for column in ("#", "at", "action", "alias", "version", "previous", "by", "reason"):
        # short tokens stay whole in a narrow terminal; the free text folds
        table.add_column(column, overflow="fold",
                         no_wrap=column in ("#", "action", "alias", "version", "previous"))
    for i, e in enumerate(entries, 1):
        reason = str(e.get("reason", ""))
        if e.get("forced"):
            reason += f" [gate refused: {e.get('gate_reason', '')}]"
        cells = (e.get("seq", i), e.get("at", ""), e.get("action", ""), f"@{e.get('alias', '')}",
                 e.get("version") or "-", e.get("previous") or "-", e.get("by", ""), reason)
        table.add_row(*(escape(str(c)) for c in cells))  # reasons are text, not rich markup
    console.print(table)


@app.command("uri")
def uri(model: str = typer.Argument(..., help="NAME@ALIAS, NAME/VERSION or models:/..."),
        artifacts_destination: str | None = typer.Option(
            None, "--artifacts-destination", envvar="ROADVISION_ARTIFACTS_DESTINATION",
            help="the tracking server's --artifacts-destination (s3://BUCKET/PREFIX), to "
                 "resolve mlflow-artifacts: URIs"),
        tracking_uri: str | None = _TRACKING_URI) -> None:
    """Print the version's model folder as KServe's storageUri takes it (s3://...)."""
    from roadvision import registry

    _open_store(tracking_uri)
    # Plain print: a bare line that $(roadvision model uri ...) can use.
    print(registry.artifact_location(model, artifacts_destination))


@app.command("canary")
def canary(
        name: str = typer.Argument(..., help="registered model name"),
        metrics_url: str | None = typer.Option(
            None, "--metrics-url", help="the predictor's metrics, http://HOST:PORT/metrics"),
        logged: str | None = typer.Option(
            None, "--logged", help="the payload log (folder or s3://bucket/prefix)"),
        served_name: str | None = typer.Option(
            None, "--served-name", help="the name the predictor serves it under (default: "
                                        "the one whose arms come from NAME)"),
        min_requests: int = typer.Option(200, "--min-requests",
                                         help="requests the challenger must have handled"),
        max_error_rate_increase: float = typer.Option(
            0.01, "--max-error-rate-increase",
            help="challenger failure rate minus the champion's (4xx + 5xx share), at most"),
        max_latency_ratio: float = typer.Option(
            1.5, "--max-latency-ratio", help="challenger p95 / champion p95, at most"),
        min_agreement: float = typer.Option(
            0.95, "--min-agreement", help="shadow: share of paired answers that agree"),
        score_alpha: float = typer.Option(
            0.01, "--score-alpha", help="split: positive rates may differ only above this "
                                        "p-value"),
        apply: bool = typer.Option(False, "--apply",
                                   help="promote, or roll back (remove @challenger), as decided"),
        as_json: bool = typer.Option(False, "--json", help="print JSON"),
        tracking_uri: str | None = _TRACKING_URI) -> None:
    """Compare champion and challenger on live figures; promote, roll back or wait."""
    from roadvision.errors import UserError
    from roadvision.monitoring import canary as figures_of

    thresholds = figures_of.Thresholds(
        min_requests=min_requests, max_error_rate_increase=max_error_rate_increase,
        max_latency_ratio=max_latency_ratio, min_agreement=min_agreement,
        score_alpha=score_alpha)
    if not metrics_url and not logged:
        raise UserError("give the live figures: --metrics-url http://HOST:PORT/metrics and/or "
                        "--logged URI")
    from_metrics = from_log = None
    if metrics_url:
        from_metrics = figures_of.figures_from_metrics(
            _fetch_metrics(metrics_url), model=served_name, registry_name=name)
        served_name = served_name or from_metrics.model
    if logged:
        from roadvision.monitoring.records import read_logged

        from_log = figures_of.figures_from_log(read_logged(logged, model=served_name),
                                               model=served_name)
    figures = figures_of.combine(from_metrics, from_log)
    if figures.registry_name and figures.registry_name != name:
        raise UserError(f"served model {figures.model!r} serves {figures.registry_name}, not "
                        f"{name}")
    decision = figures_of.decide(figures, thresholds)
    applied = _apply_canary(name, decision, tracking_uri) if apply else None
    if as_json:
        console.print_json(json.dumps({**decision.as_dict(), "applied": applied}))
        return
    _print_canary(name, decision)
    if applied:
        console.print(applied)
    elif decision.action != "wait":
        console.print(f"run again with --apply to {decision.action}")


def _fetch_metrics(url: str) -> str:
    import urllib.error
    import urllib.request

    from roadvision.errors import UserError

    if not url.startswith(("http://", "https://")):
        raise UserError(f"--metrics-url {url!r}: expected http(s)://HOST:PORT/metrics")
    try:
        with urllib.request.urlopen(url, timeout=15) as response:  # noqa: S310 - http(s) only
            return response.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise UserError(f"--metrics-url {url}: {getattr(exc, 'reason', exc)}") from exc


def _apply_canary(name: str, decision, tracking_uri: str | None) -> str | None:
    """Promote or retire the challenger the figures are of; the sentence to print."""
    from roadvision.errors import UserError
    from roadvision.registry import RegistryClient
    from roadvision.registry import canary as registry_canary

    if decision.action == "wait":
        return None
    figures = decision.figures
    version = figures.challenger.registry_version
    if version is None:
        raise UserError(f"--apply: the challenger of {figures.model!r} was not served from the "
                        "registry (models:/NAME@challenger), so there is no alias to move")
    _open_store(tracking_uri)
    client = RegistryClient()
    champion, _ = registry_canary.canary_versions(client, name)
    measured = figures.champion.registry_version
    if measured is not None and champion != measured:
        raise UserError(f"{name}: @champion is v{champion} but the figures are of v{measured}: "
                        "reload the predictor and measure again; nothing changed")
    summary = f"{figures.summary()}; {decision.reason}"
    if decision.action == "promote":
        registry_canary.promote_challenger(client, name, version, summary)
        return (f"[green]{name} v{version} is now @champion[/] (was v{champion}); @challenger "
                f"left on v{version}")
    registry_canary.retire_challenger(client, name, version, summary)
    return (f"[yellow]{name}: @challenger v{version} removed[/]; @champion stays v{champion} "
            "(reload the predictor to stop the canary)")


def _print_canary(name: str, decision) -> None:
    figures = decision.figures

    def rate(x):
        return "-" if x is None else f"{100 * x:.2f}%"

    def num(x, unit=""):
        return "-" if x is None else f"{x:.1f}{unit}"

    table = Table(title=f"{name}: canary {figures.mode} (served as {figures.model}; from "
                        f"{' + '.join(figures.sources)})")
    for column in ("arm", "version", "requests", "rejected", "errors", "failure rate",
                   "p50", "p95", "positive rate"):
        table.add_column(column, no_wrap=column in ("arm", "version"))
    for arm in ("champion", "challenger"):
        f = getattr(figures, arm)
        version = (f"v{f.registry_version}" if f.registry_version else "") + (
            f" ({f.version})" if f.version else "")
        table.add_row(arm, version or "-", str(f.requests), str(f.rejected), str(f.errors),
                      rate(f.failure_rate), num(f.p50_ms, " ms"), num(f.p95_ms, " ms"),
                      rate(f.positive_rate))
    console.print(table)
    checks = Table(title="checks")
    for column in ("check", "value", "limit", "result", "note"):
        checks.add_column(column)
    for c in decision.checks:
        result = {True: "pass", False: "FAIL", None: "-"}[c.passed]
        checks.add_row(c.name, "-" if c.value is None else f"{c.value:.4g}", f"{c.limit:g}",
                       result, escape(c.note))
    console.print(checks)
    if figures.score_ks_p is not None:
        console.print(f"challenger score drift: KS {figures.score_ks_statistic:.3f}, "
                      f"p={figures.score_ks_p:.3g} (a note, not a check)")
    colour = {"promote": "green", "rollback": "red", "wait": "yellow"}[decision.action]
    console.print(f"[bold {colour}]decision: {decision.action}[/] - {escape(decision.reason)}")

"""Names in the registry: model URIs, version numbers, registered model names.

Pure string handling, no MLflow: the pipeline's parameter checks and the steps use these too.
"""

from __future__ import annotations

import re

from roadvision.errors import UserError

__all__ = ["CHAMPION", "CHALLENGER", "parse_model_uri", "parse_version", "resolve_model_name",
           "check_model_name"]

# Aliases replace MLflow's old stages.
CHAMPION = "champion"  # the model in production
CHALLENGER = "challenger"  # the latest registered candidate

_URI_RE = re.compile(r"^(?:models:/)?(?P<name>[^@/]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))?$")
_MODEL_NAME_RE = re.compile(r"[A-Za-z0-9][\w.\-]*")


def parse_model_uri(model_uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME@ALIAS`` | ``models:/NAME/VERSION`` | ``NAME[@ALIAS|/VERSION]`` ->
    ``(name, alias, version)``; a bare name means its latest version."""
    match = _URI_RE.match(model_uri.strip())
    if not match:
        raise UserError(f"bad model URI {model_uri!r}: expected models:/NAME@ALIAS, "
                        "models:/NAME/VERSION or NAME[@ALIAS|/VERSION]")
    return match["name"], match["alias"], match["version"]


def parse_version(version: str | int) -> str:
    """``"3"``, ``3`` or ``"v3"`` -> ``"3"``; a UserError for anything else."""
    text = str(version).strip()
    if text[:1] in ("v", "V"):
        text = text[1:]
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"version: {str(version)!r} is not a version number (a positive "
                        "integer such as 3)")
    return str(int(text))


def resolve_model_name(model_name: str, task: str) -> str:
    """The registered model name of a run: ``model_name``, or the task's name when empty
    (``roadwork``/``lanes``, the names serving answers under by default)."""
    return model_name or task


def check_model_name(model_name: str) -> str:
    """``model_name`` when MLflow can register it (letters, digits, ``.``, ``_``, ``-``)."""
    if not model_name or not _MODEL_NAME_RE.fullmatch(model_name):
        raise UserError(f"model_name: {model_name!r} is not a valid registered model name "
                        "(letters, digits, '.', '_', '-')")
    return model_name

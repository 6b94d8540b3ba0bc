"""The registry's side of a canary: promote the challenger, or retire it, with the figures.

``roadvision model canary --apply`` ends a canary one of two ways, each under the registered
model's lock with one audit entry whose reason names the live figures it was decided on:

* **promote**: :func:`aliases.promote` moves ``@champion`` to the challenger's version (gate
  refusals still need ``--force`` there). ``@challenger`` is left where it is: it names the
  latest candidate, which is now also the champion, and the next registration moves it on.
* **rollback**: ``@challenger`` is removed (action ``canary_rollback``), so that a predictor
  reloading its aliases stops sending it traffic; ``@champion`` does not move. The version keeps
  a ``roadvision.canary.rolled_back`` tag saying when, by whom and why.
"""

from __future__ import annotations

from roadvision.errors import UserError

from .aliases import promote
from .audit import append_audit, audit_entries, now, who
from .client import RegistryClient
from .lock import registry_lock
from .names import CHALLENGER, CHAMPION
from .versions import VersionInfo, aliases_of, get_version, tag_version

__all__ = ["canary_versions", "promote_challenger", "retire_challenger", "ROLLED_BACK_TAG"]

ROLLED_BACK_TAG = "roadvision.canary.rolled_back"


def canary_versions(client: RegistryClient, model_name: str) -> tuple[str | None, str | None]:
    """``(@champion version, @challenger version)`` of ``model_name`` (None where unset)."""
    aliases = aliases_of(client.mlflow.get_registered_model(model_name))
    return aliases.get(CHAMPION), aliases.get(CHALLENGER)


def _expect_challenger(client: RegistryClient, model_name: str, version: str) -> None:
    _, current = canary_versions(client, model_name)
    if current != version:
        raise UserError(f"{model_name}: @challenger is {'v' + current if current else 'unset'}, "
                        f"not v{version} whose figures were read: nothing changed")


def promote_challenger(client: RegistryClient, model_name: str, version: str, figures: str, *,
                       by: str | None = None) -> VersionInfo:
    """Make challenger ``version`` the champion; the audit reason holds ``figures``."""
    _expect_challenger(client, model_name, version)
    return promote(client, model_name, version, f"canary promote: {figures}", by=by)


def retire_challenger(client: RegistryClient, model_name: str, version: str, figures: str, *,
                      by: str | None = None) -> VersionInfo:
    """Remove ``@challenger`` (which must be ``version``) with an audit entry naming
    ``figures``; the champion stays."""
    by = by or who()
    with registry_lock(client.mlflow, model_name, f"canary rollback v{version}") as lock:
        _expect_challenger(client, model_name, version)
        tags = client.registered_tags(model_name)
        lock.verify()
        client.mlflow.delete_registered_model_alias(model_name, CHALLENGER)
        reason = f"canary rollback: {figures}"
        append_audit(client, model_name, {
            "action": "canary_rollback", "alias": CHALLENGER, "version": None,
            "previous": version, "by": by, "at": now(), "reason": reason}, tags)
        tag_version(client, model_name, version, {ROLLED_BACK_TAG: f"{now()} by {by}: {reason}"})
        lock.verify()
        entries = audit_entries(client.registered_tags(model_name))
        if canary_versions(client, model_name)[1] is not None or not entries or \
                entries[-1].get("action") != "canary_rollback":
            raise UserError(f"{model_name}: @challenger changed during the rollback (a writer "
                            "outside roadvision's lock?); see `roadvision model audit "
                            f"{model_name}`")
    return get_version(client, f"models:/{model_name}/{version}")

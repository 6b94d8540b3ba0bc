"""The payload record's one column list (``roadvision.monitoring.records.COLUMNS``), which the
serving logger writes and the readers read, and old logs written before ``arm`` was a column."""

from __future__ import annotations

import pandas as pd
import pytest

from roadvision.errors import UserError
from roadvision.monitoring.canary import figures_from_log
from roadvision.monitoring.records import COLUMNS, partition_path, read_logged
from roadvision.serving import payload_log


def _write(root, rows, columns, name, ts):
    path = root / partition_path("rw", ts, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=columns).to_parquet(path)


def _row(i, **extra):
    return {**dict.fromkeys(COLUMNS), "ts": 1.7e9 + i, "request_id": f"r{i}", "instance": 0,
            "model": "rw", "probability": 0.5, "label": 0, "latency_ms": 5.0, **extra}


def test_the_logger_writes_the_records_columns():
    assert "arm" in COLUMNS
    assert payload_log._SCHEMA.names == list(COLUMNS)  # one list: the logger's schema is it


def test_a_log_from_before_the_arm_column_still_reads(tmp_path):
    old = [c for c in COLUMNS if c != "arm"]
    _write(tmp_path, [{k: v for k, v in _row(0).items() if k != "arm"}], old, "old", 1.7e9)
    with pytest.raises(UserError, match="no rows that name an arm"):
        figures_from_log(read_logged(tmp_path))
    _write(tmp_path, [_row(1, arm="champion"), _row(2, arm="challenger")], list(COLUMNS),
           "new", 1.7e9 + 1)
    rows = read_logged(tmp_path)
    assert list(rows["request_id"]) == ["r0", "r1", "r2"]
    assert pd.isna(rows["arm"].iloc[0]) and list(rows["arm"].iloc[1:]) == ["champion",
                                                                           "challenger"]
    figures = figures_from_log(rows)  # the old row is left out, the canary rows counted
    assert figures.champion.instances == 1 and figures.challenger.instances == 1

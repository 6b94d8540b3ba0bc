"""Run ``roadvision.cli.main()`` in-process and check its one-line errors (CLI tests)."""

from __future__ import annotations

import sys

from roadvision.cli import main


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """main() in-process: (exit code, stdout, stderr)."""
    old = sys.argv
    sys.argv = ["roadvision", *map(str, args)]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = old
    out, err = capsys.readouterr()
    return code, " ".join(out.split()), err  # rich wraps long lines at the terminal width


def one_line_error(code: int, err: str) -> str:
    """The single stderr line of a failed command (no traceback)."""
    assert code != 0
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]

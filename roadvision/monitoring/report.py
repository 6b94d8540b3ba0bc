"""The drift report as one self-contained HTML page (no scripts, no external assets)."""

from __future__ import annotations

import html
import time
from pathlib import Path

from .drift import DriftResult, TestResult

__all__ = ["render_html", "write_html"]

_STYLE = ("body{font-family:sans-serif;margin:2em;max-width:60em}"
          "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em}"
          ".drift{color:#b00;font-weight:bold}.ok{color:#070}")


def _row(test: TestResult) -> str:
    def fmt(value: float | None) -> str:
        return "" if value is None else f"{value:.4g}"

    verdict = '<span class="drift">drift</span>' if test.drifted else '<span class="ok">ok</span>'
    return (f"<tr><td>{html.escape(test.name)}</td><td>{fmt(test.statistic)}</td>"
            f"<td>{fmt(test.p_value)}</td><td>{fmt(test.reference)}</td>"
            f"<td>{fmt(test.current)}</td><td>{verdict}</td></tr>")


def render_html(result: DriftResult, *, title: str, facts: dict[str, str]) -> str:
    """The page: the decision first, then every test, class shares and notes."""
    verdict = ("<p class='drift'>Input drift detected</p>" if result.drifted
               else "<p class='ok'>No input drift detected</p>")
    fact_rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                        for k, v in facts.items())
    head = ("<tr><th>test</th><th>statistic</th><th>p-value</th><th>reference</th>"
            "<th>current</th><th>at alpha</th></tr>")
    sections = []
    for label, tests in (("Input (encoder embeddings)", [result.input] if result.input else []),
                         ("Image statistics", result.image),
                         ("Predictions", result.prediction)):
        if tests:
            sections.append(f"<h2>{label}</h2><table>{head}"
                            + "".join(_row(t) for t in tests) + "</table>")
    if result.class_shares:
        rows = "".join(f"<tr><td>{html.escape(n)}</td><td>{v['reference']:.4f}</td>"
                       f"<td>{v['current']:.4f}</td></tr>"
                       for n, v in result.class_shares.items())
        sections.append("<h2>Lane class shares</h2><table><tr><th>class</th><th>reference</th>"
                        f"<th>current</th></tr>{rows}</table>")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"{verdict}<table>{fact_rows}<tr><th>alpha</th><td>{result.alpha}</td></tr>"
            f"<tr><th>rows</th><td>reference {result.n_reference}, current "
            f"{result.n_current}</td></tr><tr><th>made</th><td>"
            f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}</td></tr></table>"
            + "".join(sections) + (f"<h2>Notes</h2><ul>{notes}</ul>" if notes else "")
            + "</body></html>\n")


def write_html(result: DriftResult, path: str | Path, *, title: str,
               facts: dict[str, str]) -> Path:
    path = Path(path)
    path.write_text(render_html(result, title=title, facts=facts), encoding="utf-8")
    return path

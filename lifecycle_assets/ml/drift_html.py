"""A drift report as a single self-contained HTML page (table plus embedded plots)."""

from __future__ import annotations

import html

from lifecycle_assets.ml.card_markup import png_html
from lifecycle_assets.ml.drift import DriftReport


def render_drift_html(title: str, report: DriftReport, pngs: dict[str, bytes]) -> str:
    table = report.table()
    header = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    rows = []
    for row in table.iter_rows(named=True):
        style = ' style="background:#fde2e1"' if row.get("drifted") else ""
        cells = "".join(
            f"<td>{html.escape(f'{v:.4g}' if isinstance(v, float) else str(v))}</td>"
            for v in row.values()
        )
        rows.append(f"<tr{style}>{cells}</tr>")
    images = "".join(png_html(name, png) for name, png in pngs.items())
    verdict = "DRIFT" if report.drifted else "no drift"
    drifted = ", ".join(report.drifted_features) or "none"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p><b>{verdict}</b>: {report.rows} rows, drifted "
        f"features: {html.escape(drifted)} (share {report.drifted_share:.2f})</p>"
        + "".join(f"<p><i>Note: {html.escape(note)}</i></p>" for note in report.notes)
        + f"<table><tr>{header}</tr>{''.join(rows)}</table>{images}</body></html>"
    )

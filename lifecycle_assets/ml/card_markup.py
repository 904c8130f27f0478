"""Building blocks of a document rendered twice: as Markdown and as a self-contained HTML page.

A document is a title, a status line and a list of sections; a section holds paragraphs (with
`code` and **bold** inline), tables and bullet lists. Values are formatted once, by
`format_value`, so both renderings of a number read the same. The model card is built on it.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px}"
    "th{background:#f4f4f4}code{background:#f4f4f4;padding:0 3px}.PASSED{color:#137333}"
    ".FAILED{color:#b3261e;font-weight:bold}img{max-width:100%}"
)


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


# A paragraph (with `code` and **bold** inline), a table or a bullet list.
Block = str | Table | Bullets


@dataclass(frozen=True)
class Section:
    title: str
    blocks: tuple[Block, ...]


def format_value(value: Any) -> str:
    """A value as the document shows it: "n/a" for missing, 4 decimals, lists joined."""
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        # Whole numbers (row counts stored as floats, bin edges) read better without decimals.
        return f"{value:.0f}" if value.is_integer() else f"{value:.4f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value) or "none"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _columns(rows: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """Every key of the rows, in first-seen order, so both tasks' slice tables render whole."""
    return tuple(dict.fromkeys(key for row in rows for key in row))


def rows_table(rows: Sequence[Mapping[str, Any]], headers: tuple[str, ...] = ()) -> Table:
    """A table of dict rows; the columns are `headers`, or every key of the rows."""
    headers = headers or _columns(rows)
    return Table(headers, tuple(tuple(row.get(h) for h in headers) for row in rows))


def _markdown(block: Block) -> str:
    if isinstance(block, Table):
        cells = [
            [format_value(v).replace("|", "\\|").replace("\n", " ") for v in r] for r in block.rows
        ]
        lines = ["| " + " | ".join(block.headers) + " |", "|" + "---|" * len(block.headers)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])
    if isinstance(block, Bullets):
        return "\n".join(f"- {item}" for item in block.items)
    return block


def inline_html(text: str) -> str:
    """Escape first, then turn the document's own `code` and **bold** marks into tags."""
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)


def _cell_html(text: str) -> str:
    """A table cell; gate verdicts get a class so the page colours them."""
    css = f' class="{text}"' if text in ("PASSED", "FAILED") else ""
    return f"<td{css}>{html.escape(text)}</td>"


def _html(block: Block) -> str:
    if isinstance(block, Table):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in block.headers)
        rows = "".join(
            "<tr>" + "".join(_cell_html(format_value(v)) for v in row) + "</tr>"
            for row in block.rows
        )
        return f"<table><tr>{head}</tr>{rows}</table>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{inline_html(i)}</li>" for i in block.items) + "</ul>"
    return f"<p>{inline_html(block)}</p>"


def png_html(name: str, png: bytes) -> str:
    """A named PNG embedded in the page as a data URI, under its own heading."""
    return (
        f'<h3>{html.escape(name)}</h3><img alt="{html.escape(name)}" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode()}">'
    )


def markdown_document(title: str, status: str, sections: Sequence[Section]) -> str:
    """The document as Markdown: `#` title, the status paragraph, one `##` per section."""
    parts = [f"# {title}", status]
    for section in sections:
        parts += [f"## {section.title}", *(_markdown(b) for b in section.blocks)]
    return "\n\n".join(parts) + "\n"


def html_document(
    title: str, status: str, sections: Sequence[Section], plots: Mapping[str, bytes]
) -> str:
    """The same document as one self-contained page: escaped text, inline CSS, embedded plots."""
    body = [f"<h1>{html.escape(title)}</h1>", f"<p>{inline_html(status)}</p>"]
    for section in sections:
        body.append(f"<h2>{inline_html(section.title)}</h2>")
        body += [_html(block) for block in section.blocks]
    if plots:
        body.append("<h2>Plots</h2>")
    body += [png_html(name, png) for name, png in plots.items()]
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{_CSS}</style></head><body>{''.join(body)}</body></html>"
    )

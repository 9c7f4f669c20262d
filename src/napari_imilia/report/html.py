"""Self-contained HTML pieces for the reports: one page, inline CSS, images embedded as
base64 PNG (``data:`` URIs), no script and no network access (a Content-Security-Policy
says so to the browser too); every text escaped, links only to cleaned slide ids (no Qt)."""

from __future__ import annotations

import base64
import html
import io
import math
import os
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;
max-width:1200px}
h1{font-size:1.5em;margin-bottom:4px}h2{font-size:1.2em;margin-top:28px;
border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:0.9em;margin:8px 0}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f1f1f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#666}.missing{background:#fff6e0;border:1px solid #e8c66a;padding:8px 12px}
.demo{background:#ffe9e9;border:1px solid #d66;padding:6px 10px}
.caution{background:#fff3e0;border:1px solid #e0a040;padding:6px 12px}
.wide{overflow-x:auto;max-width:100%}.wide table{width:100%}
.wide th{white-space:normal;font-size:0.85em}
.overlays{display:flex;gap:16px;align-items:flex-start}.overlays .figs{flex:1}
.legend{font-size:0.85em;border:1px solid #ddd;padding:6px 10px;align-self:flex-start}
.legend div{white-space:nowrap;margin:2px 0}
.swatch{display:inline-block;width:12px;height:12px;margin-right:6px;vertical-align:middle;
border:1px solid #888}
.figs{display:flex;flex-wrap:wrap;gap:16px}.figs figure{margin:0}
figcaption{font-size:0.85em;color:#555}
img{max-width:100%;height:auto;border:1px solid #ddd}
"""

#: The pages run no script and load nothing: even text that slipped past escaping could not
#: run (``javascript:`` links included) nor reach the network.
CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'"
)


def esc(value: Any) -> str:
    """HTML-escaped text of ``value`` ('' for None and NaN)."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    return html.escape(str(value))


def fmt(value: Any, digits: int = 4) -> str:
    """A number with ``digits`` decimals, an int as is, '-' for None or NaN."""
    if value is None or value is pd.NA:
        return "-"
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return "-" if math.isnan(value) else f"{float(value):.{digits}f}"
    return esc(value)


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def img(png: bytes, alt: str, width: int | None = None) -> str:
    """An ``<img>`` with the PNG embedded."""
    size = f' width="{int(width)}"' if width else ""
    return f'<img src="{png_data_uri(png)}" alt="{esc(alt)}"{size}>'


def figure(png: bytes, caption: str, width: int | None = None) -> str:
    return f"<figure>{img(png, caption, width)}<figcaption>{esc(caption)}</figcaption></figure>"


def rgb_png(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 as PNG bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def figure_png(fig: Any) -> bytes:
    """A matplotlib figure as PNG bytes (closed afterwards)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def table(frame: pd.DataFrame, *, digits: int = 4, row_ids: Iterable[str] | None = None) -> str:
    """``frame`` as an HTML table (numbers right-aligned, ``digits`` decimals)."""
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    ids = list(row_ids) if row_ids is not None else None
    rows = []
    for n, row in enumerate(frame.itertuples(index=False)):
        cells = []
        for value in row:
            numeric = isinstance(value, int | float | np.integer | np.floating) and not isinstance(
                value, bool
            )
            css = ' class="num"' if numeric else ""
            cells.append(f"<td{css}>{fmt(value, digits) if numeric else esc(value)}</td>")
        rid = f' id="{esc(ids[n])}"' if ids else ""
        rows.append(f"<tr{rid}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def key_values(pairs: Iterable[tuple[str, Any]]) -> str:
    """A two-column table of (name, value) pairs."""
    body = "".join(f"<tr><th>{esc(k)}</th><td>{fmt(v)}</td></tr>" for k, v in pairs)
    return f"<table>{body}</table>"


def slide_report_link(results_root: str | os.PathLike[str], slide_id: str) -> str:
    """A link to ``<slide_id>/report.html`` when that page exists, else ''. Built from a
    cleaned id only (:func:`~napari_imilia.trust.paths.safe_name` leaves it unchanged: no
    ``:``, ``/`` or ``..``, so no ``javascript:`` link and no path out of the folder),
    percent-encoded and relative (``./``)."""
    from napari_imilia.trust.paths import safe_name

    slide_id = str(slide_id)
    if not slide_id or safe_name(slide_id) != slide_id:
        return ""
    if not (Path(results_root) / slide_id / "report.html").is_file():
        return ""
    href = "./" + urllib.parse.quote(slide_id, safe="") + "/report.html"
    return f'<a href="{esc(href)}">{esc(slide_id)}</a>'


def page(title: str, body: str) -> str:
    """A complete HTML document."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    )

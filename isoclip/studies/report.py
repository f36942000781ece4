"""Tables for the book: one formatter, so every table reads the same and fits every screen.

:func:`format_table` turns a :class:`pandas.DataFrame` into a :class:`Table`, a display object
that renders (in Jupyter, in the built book and when glued with ``myst_nb.glue``) as an HTML
table inside a horizontally scrolling box: a wide table scrolls inside its box instead of being
clipped, at any screen width. The formatting rules are the book's standard:

- a caption is required; it should name the metric and the split (``$...$`` renders as math);
- floats get ``decimals`` decimals (one by default, or a per-column mapping), integers none,
  and a value that rounds to zero is shown without a sign (``0.0``, never ``-0.0``);
- missing values show as an em dash, booleans as "yes" / "no"; long text cells wrap;
- internal columns (a name starting with ``_``, or listed in ``drop``) and columns with no value
  at all are left out;
- the index becomes the leading column(s), with its names as their headers: no empty header
  row is emitted for an unnamed index or for an empty level of multi-index columns.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["EM_DASH", "Table", "format_table", "format_value"]

#: What a missing value shows as.
EM_DASH = "\u2014"

#: Inline CSS, so the table looks the same in Jupyter and in the built book.
_BOX_STYLE = "overflow-x:auto;max-width:100%;margin:0 0 1.2em 0;"
_TABLE_STYLE = "border-collapse:collapse;margin:0;font-size:0.9em;"
_CAPTION_STYLE = "text-align:left;font-size:0.95em;margin:0.5em 0 0.3em 0;"
_CELL_STYLE = "padding:0.25em 0.7em;"
_NOWRAP = "white-space:nowrap;"
#: Text cells longer than this wrap (with this minimum width) instead of widening the table.
_WRAP_CHARS = 40
_MATH = re.compile(r"(?<!\\)\$(.+?)(?<!\\)\$")


def format_value(value: Any, decimals: int = 1) -> str:
    """One cell as text: em dash for missing, yes/no for booleans, ``decimals`` for floats,
    no sign on a float that rounds to zero; anything else ``str``."""
    if value is None or value is pd.NA or value is pd.NaT:
        return EM_DASH
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        v = float(value)
        if math.isnan(v):
            return EM_DASH
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        text = f"{v:.{decimals}f}"
        if float(text) == 0.0:
            text = f"{0.0:.{decimals}f}"
        return text
    text = str(value)
    return EM_DASH if text.strip() in ("", "nan", "NaN", "<NA>") else text


@dataclass(frozen=True)
class Table:
    """A formatted table: ``cells`` (strings, one row per table row), header rows, caption.

    ``header`` holds the column header rows (one per non-empty column level), each a list of
    ``(label, colspan)``; ``n_index`` leading columns are row labels. Renders as HTML
    (``_repr_html_``) and as plain text (``repr``, what ``tools/glued.py`` prints).
    """

    caption: str
    header: list[list[tuple[str, int]]]
    cells: list[list[str]]
    n_index: int = 0
    numeric: list[bool] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        """The label of each column in the last header row, expanded over colspans."""
        return [label for label, span in self.header[-1] for _ in range(span)]

    def _repr_html_(self) -> str:
        esc = html.escape
        caption = _caption_html(self.caption)
        out = ['<div class="isoclip-table">',
               f'<p class="isoclip-table-caption" style="{_CAPTION_STYLE}">{caption}</p>',
               f'<div style="{_BOX_STYLE}"><table class="table" style="{_TABLE_STYLE}">',
               "<thead>"]
        for level, row in enumerate(self.header):
            last = level == len(self.header) - 1
            out.append("<tr>")
            col = 0
            for label, span in row:
                align = "right" if last and col < len(self.numeric) and self.numeric[col] \
                    else ("left" if span == 1 else "center")
                border = "border-bottom:1px solid #999;" if last else ""
                span_attr = f' colspan="{span}"' if span > 1 else ""
                out.append(f'<th{span_attr} style="{_CELL_STYLE}{_NOWRAP}text-align:{align};'
                           f'{border}">{esc(label)}</th>')
                col += span
            out.append("</tr>")
        out.append("</thead><tbody>")
        for cells in self.cells:
            out.append("<tr>")
            for j, text in enumerate(cells):
                tag = "th" if j < self.n_index else "td"
                align = "right" if self.numeric[j] else "left"
                wrap = (f"min-width:{_WRAP_CHARS // 2}ch;" if len(text) > _WRAP_CHARS
                        else _NOWRAP)
                out.append(f'<{tag} style="{_CELL_STYLE}{wrap}text-align:{align};">'
                           f"{esc(text)}</{tag}>")
            out.append("</tr>")
        out.append("</tbody></table></div></div>")
        return "".join(out)

    def __repr__(self) -> str:
        columns = self.columns
        widths = [max([len(c)] + [len(r[j]) for r in self.cells]) for j, c in enumerate(columns)]
        lines = [self.caption]
        for row in [columns, *self.cells]:
            lines.append("  ".join(t.rjust(w) if self.numeric[j] else t.ljust(w)
                                   for j, (t, w) in enumerate(zip(row, widths))).rstrip())
        return "\n".join(lines)

    def to_frame(self) -> pd.DataFrame:
        """The formatted cells as a DataFrame of strings (the index columns as columns)."""
        return pd.DataFrame(self.cells, columns=self.columns)


def _caption_html(caption: str) -> str:
    """Escape the caption and turn ``$...$`` into inline math MathJax renders in the book."""
    parts, last = [], 0
    for m in _MATH.finditer(caption):
        parts.append(html.escape(caption[last:m.start()]))
        parts.append(f'<span class="math notranslate nohighlight">\\({html.escape(m.group(1))}'
                     "\\)</span>")
        last = m.end()
    parts.append(html.escape(caption[last:]))
    return "".join(parts)


def _index_label(value: Any) -> str:
    """A row label: floats in their shortest form (a temperature 0.01 stays 0.01)."""
    if isinstance(value, Real) and not isinstance(value, (Integral, bool, np.bool_)):
        v = float(value)
        return EM_DASH if math.isnan(v) else f"{v:g}"
    return format_value(value)


def _label(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def format_table(df: pd.DataFrame, *, caption: str,
                 decimals: int | Mapping[str, int] = 1,
                 index: bool = True,
                 drop: Iterable[str] = (),
                 rename: Mapping[str, str] | None = None) -> Table:
    """Format ``df`` as a book table (see the module docstring for the rules).

    Args:
        df: the table; its index becomes the leading column(s) when ``index`` is true.
        caption: what the numbers are: the metric (and its unit) and the split or query set.
        decimals: decimals of float columns, one int for all or a mapping from column name
            (before or after ``rename``; the last level of multi-index columns, or the full
            tuple) to decimals; columns not in the mapping get 1.
        index: show the index as the leading column(s).
        drop: columns to leave out besides the automatic ones (names starting with ``_``,
            columns with no value).
        rename: new names of columns (applied after ``drop``).

    Returns:
        A :class:`Table`; the last expression of a cell, or ``glue(name, table)``, shows it.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"format_table: df must be a pandas DataFrame, got {type(df).__name__}")
    if not isinstance(caption, str) or not caption.strip():
        raise ValueError("format_table: caption must be a non-empty string naming the metric "
                         "and the split")
    if isinstance(decimals, Integral) and decimals < 0:
        raise ValueError(f"format_table: decimals must be >= 0, got {decimals}")
    drop = set(drop)
    missing = {d for d in drop if d not in df.columns}
    if missing:
        raise KeyError(f"format_table: drop names columns not in the table: {sorted(missing)}; "
                       f"columns are {list(df.columns)}")

    def last(col: Any) -> str:
        return _label(col[-1] if isinstance(col, tuple) else col)

    keep = [c for c in df.columns
            if c not in drop and not last(c).startswith("_") and not df[c].isna().all()]
    data = df[keep]
    original = {c: c for c in data.columns}
    if rename:
        data = data.rename(columns=dict(rename))
        original = {rename.get(c, c): c for c in keep}

    def n_decimals(col: Any) -> int:
        if isinstance(decimals, Mapping):
            for key in (col, original.get(col, col)):
                if key in decimals:
                    return int(decimals[key])
                if last(key) in decimals:
                    return int(decimals[last(key)])
            return 1
        return int(decimals)

    body_cols = [[format_value(v, n_decimals(c)) for v in data[c].tolist()] for c in data.columns]
    numeric = [pd.api.types.is_numeric_dtype(data[c]) and not pd.api.types.is_bool_dtype(data[c])
               for c in data.columns]
    # column header rows: one per level, empty levels left out
    if isinstance(data.columns, pd.MultiIndex):
        levels = [[_label(c[k]) for c in data.columns] for k in range(data.columns.nlevels)]
    else:
        levels = [[_label(c) for c in data.columns]]
    levels = [lv for lv in levels if any(lv)] or [[""] * len(data.columns)]
    header: list[list[tuple[str, int]]] = []
    index_cols: list[list[str]] = []
    index_names: list[str] = []
    if index:
        idx = data.index
        frames = ([idx.get_level_values(k) for k in range(idx.nlevels)]
                  if isinstance(idx, pd.MultiIndex) else [idx])
        for k, values in enumerate(frames):
            index_cols.append([_index_label(v) for v in values.tolist()])
            index_names.append(_label(idx.names[k]))
    for k, lv in enumerate(levels):
        row: list[tuple[str, int]] = []
        if index_cols:
            is_last = k == len(levels) - 1
            if is_last:
                row += [(name, 1) for name in index_names]
            else:
                row.append(("", len(index_cols)))
        for label in lv:  # merge repeated labels of upper levels into one spanning cell
            if k < len(levels) - 1 and row and row[-1][0] == label and label and \
                    len(row) > (1 if index_cols else 0):
                row[-1] = (label, row[-1][1] + 1)
            else:
                row.append((label, 1))
        header.append(row)
    columns = index_cols + body_cols
    cells = [list(r) for r in zip(*columns)] if columns and columns[0] else []
    return Table(caption=caption, header=header, cells=cells, n_index=len(index_cols),
                 numeric=[False] * len(index_cols) + numeric)

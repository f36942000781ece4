"""isoclip.studies.report: the book's table formatter, on hand-made frames."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from isoclip.studies.report import EM_DASH, Table, format_table, format_value


class _Cells(HTMLParser):
    """Collect the text of every th/td per row, and the caption, from rendered HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.caption = ""
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "tr":
            self.rows.append([])
        if tag == "p" and ("class", "isoclip-table-caption") in attrs:
            self._in = "caption"
        if tag in ("th", "td"):
            self._in = tag
            self.rows[-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("th", "td", "p"):
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "caption":
            self.caption += data
        elif self._in:
            self.rows[-1][-1] += data


def _parse(table: Table) -> _Cells:
    p = _Cells()
    p.feed(table._repr_html_())
    return p


def test_format_value_rules():
    assert format_value(np.nan) == EM_DASH
    assert format_value(None) == EM_DASH
    assert format_value(pd.NA) == EM_DASH
    assert format_value(-0.0001, 1) == "0.0"
    assert format_value(-0.04, 1) == "0.0"
    assert format_value(-0.06, 1) == "-0.1"
    assert format_value(1.25, 2) == "1.25"
    assert format_value(np.float32(2.0), 0) == "2"
    assert format_value(np.int64(7), 3) == "7"
    assert format_value(True) == "yes" and format_value(np.bool_(False)) == "no"
    assert format_value("n/a") == "n/a"
    assert format_value("nan") == EM_DASH
    assert format_value("None") == "None"  # a string, e.g. a parameter's default, is kept


def test_table_drops_internal_and_empty_columns_and_formats():
    df = pd.DataFrame({"method": ["CLIP", "IsoCLIP"], "mAP": [40.123, -0.0004],
                       "_key": ["a", "b"], "empty": [np.nan, np.nan], "n": [10, 12],
                       "note": [None, "x"]}).set_index("method")
    t = format_table(df, caption="image→image mAP (%) on the query set", decimals={"mAP": 2})
    p = _parse(t)
    assert p.rows[0] == ["method", "mAP", "n", "note"]
    assert p.rows[1] == ["CLIP", "40.12", "10", EM_DASH]
    assert p.rows[2] == ["IsoCLIP", "0.00", "12", "x"]
    html_text = t._repr_html_()
    assert ">nan<" not in html_text.lower()
    assert "-0.00" not in html_text and "_key" not in html_text
    assert "overflow-x:auto" in html_text  # scrolls inside its own box
    assert p.caption == "image→image mAP (%) on the query set"


def test_unnamed_index_and_multiindex_columns_have_no_empty_header_row():
    cols = pd.MultiIndex.from_tuples([("image→image", "CLIP"), ("image→image", "IsoCLIP"),
                                      ("text→text", "CLIP")])
    df = pd.DataFrame([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], columns=cols, index=["a", "b"])
    p = _parse(format_table(df, caption="mAP (%) on the test split"))
    assert len(p.rows) == 4  # two header rows (both levels non-empty) + two body rows
    assert p.rows[0] == ["", "image→image", "text→text"]
    assert p.rows[1] == ["", "CLIP", "IsoCLIP", "CLIP"]
    for row in p.rows:
        assert any(cell.strip() for cell in row)
    # an empty upper level (columns.names only, no labels) gives no header row
    df2 = pd.DataFrame({("", "x"): [1.0], ("", "y"): [2.0]})
    p2 = _parse(format_table(df2, caption="c", index=False))
    assert p2.rows[0] == ["x", "y"] and len(p2.rows) == 2


def test_named_index_shows_names_in_the_header_not_in_an_extra_row():
    df = pd.DataFrame({"task": ["i2i", "i2i"], "method": ["CLIP", "OTI"], "mAP": [1.0, 2.0]})
    raw_html = df.set_index(["task", "method"]).to_html()
    assert raw_html.count("<tr") == 4  # pandas: an extra header row for the index names
    p = _parse(format_table(df.set_index(["task", "method"]), caption="mAP (%), query set"))
    assert p.rows == [["task", "method", "mAP"], ["i2i", "CLIP", "1.0"], ["i2i", "OTI", "2.0"]]


def test_index_floats_keep_their_shortest_form_and_math_caption():
    df = pd.DataFrame({"gap": [0.81, 0.5]}, index=pd.Index([0.01, 0.1], name="τ"))
    t = format_table(df, caption=r"gap $\|\mu_i - \mu_t\|$ on the test split", decimals=2)
    p = _parse(t)
    assert p.rows[1][:1] == ["0.01"]
    assert r"\(\|\mu_i - \mu_t\|\)" in t._repr_html_()
    assert 'class="math' in t._repr_html_()


def test_plain_text_repr_and_frame():
    df = pd.DataFrame({"a": [1.234, np.nan]}, index=pd.Index(["x", "y"], name="row"))
    t = format_table(df, caption="cap", decimals=2)
    text = repr(t)
    assert text.splitlines()[0] == "cap"
    assert "1.23" in text and EM_DASH in text and "nan" not in text
    assert list(t.to_frame().columns) == ["row", "a"]


def test_bad_arguments_are_named():
    df = pd.DataFrame({"a": [1.0]})
    with pytest.raises(ValueError, match="caption"):
        format_table(df, caption=" ")
    with pytest.raises(KeyError, match="drop"):
        format_table(df, caption="c", drop=["b"])
    with pytest.raises(TypeError, match="DataFrame"):
        format_table(df["a"], caption="c")  # type: ignore[arg-type]


def test_glue_keeps_the_html(monkeypatch):
    """myst_nb.glue records the display object's mime bundle: the book gets the HTML."""
    from IPython.core.formatters import DisplayFormatter

    t = format_table(pd.DataFrame({"a": [1.0]}), caption="c")
    bundle, _ = DisplayFormatter().format(t)
    assert "text/html" in bundle and re.search(r"<table", bundle["text/html"])
    assert bundle["text/plain"].startswith("c")


def test_decimals_by_original_or_new_name():
    df = pd.DataFrame({"tau": [0.0123], "gap": [0.456]})
    t = format_table(df, caption="c", index=False, rename={"tau": "τ"}, decimals={"tau": 3})
    assert t.cells == [["0.012", "0.5"]] and t.columns == ["τ", "gap"]
    t2 = format_table(df, caption="c", index=False, rename={"tau": "τ"}, decimals={"τ": 2})
    assert t2.cells[0][0] == "0.01"

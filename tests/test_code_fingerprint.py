"""The code part of cache keys (isoclip.common.cache.source_fingerprint / code_fingerprint):
docstrings, comments and layout do not count, code does; the memo follows file edits."""

from __future__ import annotations

import ast
import hashlib
import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from isoclip.common.cache import code_fingerprint, source_fingerprint

MODULE = '''"""Module docstring."""

SCALE = 2  # a comment


class Scorer:
    """Class docstring."""

    def score(self, x):
        """Method docstring."""
        return x * SCALE
'''


@pytest.fixture()
def scratch_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A module ``fp_scratch`` importable from ``tmp_path``; the test edits its file."""
    path = tmp_path / "fp_scratch.py"
    path.write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield path
    sys.modules.pop("fp_scratch", None)


def _edit(path: Path, text: str) -> None:
    """Rewrite ``path`` with a modification time surely different from the last one."""
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def _naive(text: str) -> str:
    """Reference: strip docstrings by walking the tree by hand, unparse, hash."""
    tree = ast.parse(text)
    nodes = [tree, *(n for n in ast.walk(tree)
                     if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))]
    for node in nodes:
        first = node.body[0]
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                and isinstance(first.value.value, str):
            node.body[0] = ast.Pass()
    return hashlib.sha256(ast.unparse(tree).encode()).hexdigest()


def test_equals_the_naive_reference(scratch_module: Path) -> None:
    assert source_fingerprint("fp_scratch") == _naive(MODULE)
    from isoclip.studies import suite

    assert source_fingerprint(suite) == _naive(Path(suite.__file__).read_text())
    assert source_fingerprint(suite) == source_fingerprint("isoclip.studies.suite")


def test_docstrings_comments_and_layout_do_not_count(scratch_module: Path) -> None:
    fp = source_fingerprint("fp_scratch")
    _edit(scratch_module, MODULE.replace("Method docstring.", "Reworded, at length.")
          .replace("# a comment", "# another comment")
          .replace('"""Module docstring."""', "'''Other words.'''\n# a new comment line"))
    assert source_fingerprint("fp_scratch") == fp
    _edit(scratch_module, MODULE.replace("return x * SCALE", "return (x *\n                SCALE)"))
    assert source_fingerprint("fp_scratch") == fp


def test_a_code_edit_changes_both_fingerprints(scratch_module: Path) -> None:
    fp, combined = source_fingerprint("fp_scratch"), code_fingerprint(["fp_scratch"])
    _edit(scratch_module, MODULE.replace("SCALE = 2", "SCALE = 3"))
    assert source_fingerprint("fp_scratch") != fp  # the memo follows the file
    assert code_fingerprint(["fp_scratch"]) != combined
    # a string that is not a docstring is code
    _edit(scratch_module, MODULE.replace("SCALE = 2", 'SCALE = 2\nNAME = "x"'))
    assert source_fingerprint("fp_scratch") != fp


def test_code_fingerprint_is_ordered_and_named() -> None:
    a, b = "isoclip.method.bands", "isoclip.method.operator"
    assert code_fingerprint([a, b]) == code_fingerprint([a, b])
    assert code_fingerprint([a, b]) != code_fingerprint([b, a])
    assert code_fingerprint([a]) != source_fingerprint(a)  # the name is part of it
    from isoclip.method import bands

    assert code_fingerprint([bands]) == code_fingerprint([a])


@pytest.mark.parametrize("modules, message", [
    ([], "at least one"),
    (["sys"], "'sys' has no Python source file"),
    (["isoclip.no_such_module"], "no Python source file"),
    (["no_such_package.module"], "no Python source file"),
])
def test_bad_modules_are_named(modules: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        code_fingerprint(modules)

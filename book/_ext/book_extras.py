"""Sphinx extension of the book: chapter sources in the download menu, short API references.

1. Chapters are rendered from executed notebooks (``executed/NN_slug.ipynb``) that papermill
   made from the MyST/jupytext sources ``notebooks/NN_slug.md``. sphinx-book-theme's download
   menu offers the page's own source (the executed ``.ipynb``) and a print-to-PDF; this adds
   the ``.md`` source, copied next to the notebook under ``_sources/``.
2. Docstrings and annotations refer to the package's objects by short names
   (``:func:`iso_projectors```, ``Projectors``) or through the package that re-exports them
   (``isoclip.data.load_retrieval_dataset``, documented in ``isoclip.data.registry``). Such a
   reference resolves when exactly one documented object of the package has that last name.
   A name re-exported through another module's ``__all__`` resolves to where it is defined. A
   name that the package defines but leaves out of its API pages (not in ``__all__``) and a
   name of another library (standard library or installed; there is no intersphinx, the build
   is offline) are shown as plain text. An ambiguous or unknown name stays a nitpicky warning.

3. napoleon reads an attribute docstring ``"X: text"`` as the type ``X``; when ``X`` is a
   phrase rather than a type (``"Short row label for tables: ..."``), the sentence is kept.

Configuration (``sphinx.config`` in ``_config.yml``):

- ``chapter_sources_dir``: folder of the ``.md`` sources, relative to the book's folder or
  absolute (default ``notebooks``). A page gets the entry only if its source exists there.
- ``chapter_sources_prefix``: docname prefix of the rendered chapters (default ``executed/``).
- ``short_refs_package``: package whose objects short names may resolve to (default
  ``isoclip``).
"""

from __future__ import annotations

import re
import shutil
import sys
from collections import defaultdict
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util.nodes import make_refnode


def _source_of(app: Sphinx, pagename: str) -> Path | None:
    prefix = str(app.config.chapter_sources_prefix)
    if not pagename.startswith(prefix):
        return None
    folder = Path(app.config.chapter_sources_dir)
    if not folder.is_absolute():
        folder = Path(app.confdir) / folder
    source = folder / f"{pagename[len(prefix):]}.md"
    return source if source.is_file() else None


def add_source_download(app: Sphinx, pagename: str, templatename: str,
                        context: dict[str, Any], doctree: nodes.document | None) -> None:
    """``html-page-context``, after the theme's buttons: the ``.md`` in the download menu."""
    source = _source_of(app, pagename)
    groups = [b for b in context.get("header_buttons", [])
              if b.get("label") == "download-buttons"]
    if source is None or not groups:
        return
    target = Path(app.outdir) / "_sources" / f"{pagename}.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    groups[0]["buttons"].insert(1, {
        "type": "link",
        "url": f"{context['pathto']('_sources', 1)}/{pagename}.md",
        "text": ".md",
        "tooltip": "Download the notebook's jupytext (MyST) source",
        "icon": "fas fa-file-lines",
        "label": "download-jupytext-button",
    })


# roles a reference may use for each kind of documented object (a type alias is data)
_ROLES = {"class": {"class", "obj"}, "exception": {"exc", "class", "obj"},
          "function": {"func", "obj"}, "method": {"meth", "func", "obj"},
          "property": {"attr", "meth", "obj"}, "attribute": {"attr", "obj", "class", "data"},
          "data": {"data", "obj", "class"}, "module": {"mod", "obj"}}


def _short_names(env: BuildEnvironment, package: str) -> dict[str, list[tuple[str, str]]]:
    """Last dotted component -> (full name, object type) of the package's documented objects."""
    cached: dict[str, list[tuple[str, str]]] | None = getattr(env, "_short_refs_index", None)
    if cached is None:
        cached = defaultdict(list)
        for name, _, objtype, _, _, _ in env.get_domain("py").get_objects():
            if name.startswith(package + "."):
                cached[name.rsplit(".", 1)[-1]].append((name, objtype))
        env._short_refs_index = cached  # type: ignore[attr-defined]
    return cached


def resolve_short_reference(app: Sphinx, env: BuildEnvironment, node: pending_xref,
                            contnode: nodes.TextElement) -> nodes.reference | None:
    """``missing-reference``: a short name that names exactly one object of the package."""
    if node.get("refdomain") != "py":
        return None
    package = str(app.config.short_refs_package)
    target = str(node.get("reftarget", "")).lstrip("~.")
    if not target:
        return None
    top = target.split(".", 1)[0]
    if top != package and top in _importable(env):
        return contnode  # another library's object (no intersphinx: the build is offline)
    if "." in target and not target.startswith(package + "."):
        return None
    role = str(node.get("reftype", "obj"))
    candidates = [name for name, objtype in _short_names(env, package).get(
        target.rsplit(".", 1)[-1], []) if role in _ROLES.get(objtype, {"obj"})]
    if target in candidates:
        candidates = [target]
    if len(candidates) > 1:  # a name re-exported through __all__: its defining module
        parsed: dict[str, Any] = getattr(env, "autoapi_all_objects", {}) or {}
        candidates = [c for c in candidates if not getattr(parsed.get(c), "imported", False)]
    if not candidates and _undocumented(env, package, target):
        return contnode  # a real object left out of the API pages (not in __all__): plain text
    if len(candidates) != 1:
        return None
    docname = env.get_domain("py").objects[candidates[0]].docname  # type: ignore[attr-defined]
    return make_refnode(app.builder, node["refdoc"], docname, candidates[0], contnode,
                        candidates[0])


def _importable(env: BuildEnvironment) -> dict[str, bool]:
    """Top-level module name -> importable here (standard library or installed), memoised."""
    cache: dict[str, bool] | None = getattr(env, "_short_refs_importable", None)
    if cache is None:
        cache = _ImportableCache()
        env._short_refs_importable = cache  # type: ignore[attr-defined]
    return cache


class _ImportableCache(dict[str, bool]):
    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str) or not name.isidentifier():
            return False
        if name not in self.keys():
            self[name] = name in sys.stdlib_module_names or find_spec(name) is not None
        return self[name]


def _undocumented(env: BuildEnvironment, package: str, target: str) -> bool:
    """Whether sphinx-autoapi parsed an object of that last name that its pages do not show."""
    parsed: dict[str, Any] = getattr(env, "autoapi_all_objects", {}) or {}
    shown: dict[str, Any] = getattr(env, "autoapi_objects", {}) or {}
    last = target.rsplit(".", 1)[-1]
    return any(name.startswith(package + ".") and name.rsplit(".", 1)[-1] == last
               and name not in shown for name in parsed)


# what napoleon may read as the type of an attribute: ``int``, ``list[str] | None``, ...
_TYPE_LIKE = re.compile(r"[A-Za-z_][\w.]*(\[.*\])?(\s*\|\s*[A-Za-z_][\w.]*(\[.*\])?)*")


def keep_attribute_sentence(app: Sphinx, what: str, name: str, obj: Any, options: Any,
                            lines: list[str]) -> None:
    """``autodoc-process-docstring``, after napoleon: undo a non-type read as a type.

    napoleon reads an attribute or property docstring ``"X: text"`` as type ``X``; for
    ``"Short row label for tables: ..."`` or ``"(Q, G): the shape ..."`` that makes broken
    cross-references. When ``X`` does not look like a type, the sentence is put back.
    """
    if what not in ("attribute", "data", "property"):
        return
    typed = [i for i, line in enumerate(lines) if line.startswith(":type: ")]
    if not typed or _TYPE_LIKE.fullmatch(lines[typed[-1]][len(":type: "):].strip()):
        return
    i = typed[-1]
    text = lines[i][len(":type: "):].strip()
    del lines[i]
    if i > 0 and not lines[i - 1].strip():
        del lines[i - 1]
    first = next((j for j, line in enumerate(lines) if line.strip()), None)
    if first is None:
        lines.insert(0, text)
    else:
        lines[first] = f"{text}: {lines[first].lstrip()}"


def _reset_index(app: Sphinx, env: BuildEnvironment, *args: Any) -> None:
    if hasattr(env, "_short_refs_index"):
        del env._short_refs_index


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("chapter_sources_dir", "notebooks", "html", types=[str])
    app.add_config_value("chapter_sources_prefix", "executed/", "html", types=[str])
    app.add_config_value("short_refs_package", "isoclip", "env", types=[str])
    # sphinx-book-theme fills the download menu at priority 501
    app.connect("html-page-context", add_source_download, priority=600)
    app.connect("missing-reference", resolve_short_reference)
    # napoleon processes docstrings at the default priority 500
    app.connect("autodoc-process-docstring", keep_attribute_sentence, priority=600)
    app.connect("env-updated", _reset_index)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}

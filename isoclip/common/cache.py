"""On-disk cache primitives: content keys, atomic writes, verified and safe reads, one builder
per key.

Every cached artefact (trained checkpoints, extracted features) is stored as
``<root>/<kind>/<key>.pt`` next to ``<key>.json``, a manifest holding the full key material
and the sha256 of the payload. A payload whose hash does not match its manifest (a partial
or corrupt write) is never loaded: :func:`load_verified` returns ``None`` and the caller
rebuilds it. Writes go to a temporary file in the same directory, are fsynced, then
``os.replace``-d into place, so a crash never leaves a half-written file under the final name.

What :func:`cached` promises:

* **Nothing is lost on a cache failure.** A cache that cannot be written (read-only file
  system, no space, a corrupt entry that cannot be removed) gives one warning per cache root
  and the freshly built result is returned all the same.
* **No code runs from the cache.** Payloads are plain data (tensors, numbers, strings, lists,
  dicts) and are read with ``torch.load(weights_only=True)``; a payload holding anything else
  is refused with :class:`UnsafeCacheEntryError` naming the file.
* **One builder per key.** A missing entry is built under an exclusive lock on
  ``<key>.lock`` beside it (``fcntl.flock``): a second process asking for the same key waits,
  then loads what the first one stored. Temporaries of the key left by a killed writer are
  removed then, and those of any key once older than :data:`STALE_TMP_SECONDS`.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.util
import json
import os
import pickle
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

try:  # POSIX; elsewhere fills are not serialised (each process builds, the last write wins)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

#: Bumped whenever code that produces cached content changes its output.
CACHE_FORMAT_VERSION = 1

#: A temporary file (``.<name>.<random>.tmp``) untouched for this long belongs to a dead writer.
STALE_TMP_SECONDS = 3600.0

_WARNED_ROOTS: set[str] = set()


class UnsafeCacheEntryError(pickle.UnpicklingError):
    """A cache payload holds objects other than tensors, numbers, strings and containers.

    isoclip never writes such a payload, so the file was planted or written by other code;
    it is not loaded (loading could run code)."""


def cache_root() -> Path:
    """The cache directory: ``$ISOCLIP_CACHE`` or ``~/.cache/isoclip``."""
    root = os.environ.get("ISOCLIP_CACHE") or os.path.join(Path.home(), ".cache", "isoclip")
    return Path(root).expanduser()


def stable_hash(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys; tuples become lists)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def entry_key(key_material: dict[str, Any]) -> str:
    """The key of the entry stored for ``key_material``: its file name is ``<key>.pt``."""
    return stable_hash({"format": CACHE_FORMAT_VERSION, **key_material})


#: (source path, mtime in ns, size) -> :func:`source_fingerprint` of that file's content.
_SOURCE_FINGERPRINTS: dict[tuple[str, int, int], str] = {}


def _source_path(module: ModuleType | str) -> str:
    name = module if isinstance(module, str) else module.__name__
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):  # a parent package that does not exist
        spec = None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise ValueError(f"modules: {name!r} has no Python source file")
    return spec.origin


def source_fingerprint(module: ModuleType | str) -> str:
    """sha256 of a module's code without docstrings and comments.

    The source is parsed, every docstring (the first statement of a module, class or function
    body when it is a string) replaced by ``pass``, and the syntax tree unparsed
    (:func:`ast.unparse`, which drops comments and normalises layout): a change to what the
    module computes changes the hash; a reworded docstring or comment, or re-wrapped lines,
    do not (a docstring added or removed does: it stands as ``pass``). Memoised per file
    (path, modification time, size).

    Args:
        module: a module or its dotted name (it must have a ``.py`` source file).

    Raises:
        ValueError: the module has no Python source file.
    """
    path = _source_path(module)
    st = os.stat(path)
    memo = (path, st.st_mtime_ns, st.st_size)
    if memo not in _SOURCE_FINGERPRINTS:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                body[0] = ast.Pass()
        _SOURCE_FINGERPRINTS[memo] = hashlib.sha256(ast.unparse(tree).encode()).hexdigest()
    return _SOURCE_FINGERPRINTS[memo]


def code_fingerprint(modules: Sequence[ModuleType | str]) -> str:
    """sha256 over the name and :func:`source_fingerprint` of each module, in order: the
    code part of a cache key (a cached result is recomputed when the code of any module that
    computes it changes, and kept when only their docstrings or comments do).

    Raises:
        ValueError: ``modules`` is empty, or one has no Python source file.
    """
    if not modules:
        raise ValueError("modules: expected at least one module")
    h = hashlib.sha256()
    for mod in modules:
        name = mod if isinstance(mod, str) else mod.__name__
        h.update(f"{name}\0{source_fingerprint(mod)}\0".encode())
    return h.hexdigest()


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


#: Permissions of every file written here (``tempfile.mkstemp`` would leave 0600: result files
#: and caches shared with other users of the machine must stay readable).
FILE_MODE = 0o644


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same dir + fsync + replace),
    with permissions :data:`FILE_MODE`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> str:
    """``torch.save`` atomically (permissions :data:`FILE_MODE`); returns the sha256 of the
    written bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        digest = file_sha256(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return digest


def entry_paths(kind: str, key: str, root: Path | None = None) -> tuple[Path, Path]:
    """(payload path, manifest path) of cache entry ``key`` of ``kind``."""
    d = (root or cache_root()) / kind
    return d / f"{key}.pt", d / f"{key}.json"


def save_entry(kind: str, key_material: dict[str, Any], payload: Any,
               root: Path | None = None) -> str:
    """Store ``payload`` under the key derived from ``key_material``; returns the key.

    The payload is written first and the manifest (with its sha256) last, so an entry is
    visible only once complete.

    Raises:
        OSError: the entry cannot be written (:func:`cached` turns this into a warning).
    """
    key = entry_key(key_material)
    pt, man = entry_paths(kind, key, root)
    digest = atomic_torch_save(payload, pt)
    manifest = {"key": key, "sha256": digest, "format": CACHE_FORMAT_VERSION,
                "material": key_material}
    atomic_write_bytes(man, json.dumps(manifest, indent=1, sort_keys=True, default=str).encode())
    return key


def load_payload(path: str | os.PathLike[str]) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU: tensors, numbers, strings, containers.

    Raises:
        UnsafeCacheEntryError: the file holds anything else (nothing of it is executed).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = next((line.strip() for line in str(e).splitlines()
                       if "GLOBAL" in line or "global" in line), str(e).splitlines()[0])
        raise UnsafeCacheEntryError(
            f"refusing to load cache entry {path}: it holds objects other than tensors, "
            f"numbers, strings and containers ({detail}). isoclip never writes such a "
            "payload, so the file was not written by it; loading could run code. Delete the "
            "entry (the .pt file and its .json manifest, or `make clean-cache`) to rebuild it."
        ) from None


def _remove(paths: tuple[Path, ...]) -> None:
    """Delete ``paths``; a file that cannot be deleted gets a warning (the caller rebuilds)."""
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            warnings.warn(f"cache entry {p} is corrupt and cannot be removed ({e}); the "
                          "result is rebuilt and returned", stacklevel=4)


def load_verified(kind: str, key_material: dict[str, Any], root: Path | None = None, *,
                  remove_corrupt: bool = True) -> Any | None:
    """The payload stored for ``key_material`` if present and intact, else ``None``.

    Intact means: the manifest parses, names the same key, and the payload's sha256 matches.
    A corrupt entry is deleted (``remove_corrupt``) so that it is rebuilt; one that cannot be
    deleted gives a warning.

    Raises:
        UnsafeCacheEntryError: an intact entry whose payload is not plain data.
    """
    key = entry_key(key_material)
    pt, man = entry_paths(kind, key, root)
    if not (pt.exists() and man.exists()):
        return None
    try:
        manifest = json.loads(man.read_text())
        ok = manifest.get("key") == key and manifest.get("sha256") == file_sha256(pt)
    except (OSError, ValueError):
        ok = False
    if not ok:
        if remove_corrupt:
            _remove((pt, man))
        return None
    return load_payload(pt)


def _open_lock(payload_path: Path) -> int | None:
    """An open descriptor of ``<key>.lock`` beside ``payload_path``, or None when no lock can
    be taken (no ``fcntl``, or an unwritable cache)."""
    if fcntl is None:
        return None
    try:
        payload_path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(payload_path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None


@contextlib.contextmanager
def key_lock(payload_path: Path) -> Iterator[bool]:
    """Hold an exclusive lock on ``<key>.lock`` beside ``payload_path`` (blocks until free).

    Yields True when locked, False when no lock could be taken (an unwritable cache, or no
    ``fcntl``): the caller then proceeds unserialised. Closing the file releases the lock,
    also when the process dies.
    """
    fd = _open_lock(payload_path)
    if fd is None:
        yield False
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield True
    finally:
        os.close(fd)


@contextlib.contextmanager
def try_key_lock(payload_path: Path) -> Iterator[bool | None]:
    """:func:`key_lock` without waiting: yields True when this process now holds the lock on
    ``<key>.lock``, False when another process holds it, None when no lock can be taken (an
    unwritable cache, or no ``fcntl``). Lets several processes share the entries of one long
    computation instead of waiting for each other (see
    :func:`isoclip.baselines.inversion_runner.run_inversion`)."""
    fd = _open_lock(payload_path)
    if fd is None:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: Path, key: str | None = None,
                             max_age: float = STALE_TMP_SECONDS) -> list[Path]:
    """Delete temporaries (``.<name>.<random>.tmp``) of dead writers in ``folder``.

    Those of entry ``key`` are removed whatever their age (call this holding the key's lock:
    no live writer of that key then exists); those of other entries once untouched for
    ``max_age`` seconds. Returns the removed paths; errors are ignored.
    """
    removed: list[Path] = []
    try:
        candidates = [p for p in folder.iterdir()
                      if p.name.startswith(".") and p.name.endswith(".tmp")]
    except OSError:
        return removed
    now = time.time()
    for p in candidates:
        own = key is not None and p.name.startswith((f".{key}.pt.", f".{key}.json."))
        try:
            if own or now - p.stat().st_mtime > max_age:
                p.unlink()
                removed.append(p)
        except OSError:
            pass
    return removed


def _warn_unwritable(root: Path, err: OSError) -> None:
    name = str(root)
    if name in _WARNED_ROOTS:
        return
    _WARNED_ROOTS.add(name)
    warnings.warn(f"cache not writable: {root} ({err}); results are not cached",
                  stacklevel=3)


def cached(kind: str, key_material: dict[str, Any], build: Callable[[], Any],
           root: Path | None = None, enabled: bool = True) -> Any:
    """Return the cached payload for ``key_material`` or build, store and return it.

    A missing entry is built by one process at a time (see the module docstring); a failure
    to store it gives one warning per cache root and the result is returned anyway.
    """
    if not enabled:
        return build()
    hit = load_verified(kind, key_material, root, remove_corrupt=False)
    if hit is not None:
        return hit
    key = entry_key(key_material)
    pt, _ = entry_paths(kind, key, root)
    with key_lock(pt) as locked:
        hit = load_verified(kind, key_material, root)  # filled while we waited?
        if hit is not None:
            return hit
        remove_stale_temporaries(pt.parent, key if locked else None)
        payload = build()
        try:
            save_entry(kind, key_material, payload, root)
        except OSError as e:
            _warn_unwritable(root or cache_root(), e)
    return payload

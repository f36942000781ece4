"""On-disk cache primitives: content keys, atomic writes, verified reads.

Every cached artefact (trained checkpoints, extracted features) is stored as
``<root>/<kind>/<key>.pt`` next to ``<key>.json``, a manifest holding the full key material
and the sha256 of the payload. A payload whose hash does not match its manifest (a partial
or corrupt write) is never loaded: :func:`load_verified` returns ``None`` and the caller
rebuilds it. Writes go to a temporary file in the same directory, are fsynced, then
``os.replace``-d into place, so a crash never leaves a half-written file under the final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

#: Bumped whenever code that produces cached content changes its output.
CACHE_FORMAT_VERSION = 1


def cache_root() -> Path:
    """The cache directory: ``$ISOCLIP_CACHE`` or ``~/.cache/isoclip``."""
    root = os.environ.get("ISOCLIP_CACHE") or os.path.join(Path.home(), ".cache", "isoclip")
    return Path(root).expanduser()


def stable_hash(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys; tuples become lists)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same dir + fsync + replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> str:
    """``torch.save`` atomically; returns the sha256 of the written bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
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


def save_entry(kind: str, key_material: dict, payload: Any, root: Path | None = None) -> str:
    """Store ``payload`` under the key derived from ``key_material``; returns the key.

    The payload is written first and the manifest (with its sha256) last, so an entry is
    visible only once complete.
    """
    key = stable_hash({"format": CACHE_FORMAT_VERSION, **key_material})
    pt, man = entry_paths(kind, key, root)
    digest = atomic_torch_save(payload, pt)
    manifest = {"key": key, "sha256": digest, "format": CACHE_FORMAT_VERSION,
                "material": key_material}
    atomic_write_bytes(man, json.dumps(manifest, indent=1, sort_keys=True, default=str).encode())
    return key


def load_verified(kind: str, key_material: dict, root: Path | None = None) -> Any | None:
    """The payload stored for ``key_material`` if present and intact, else ``None``.

    Intact means: the manifest parses, names the same key, and the payload's sha256 matches.
    A corrupt entry is deleted so that it is rebuilt.
    """
    key = stable_hash({"format": CACHE_FORMAT_VERSION, **key_material})
    pt, man = entry_paths(kind, key, root)
    if not (pt.exists() and man.exists()):
        return None
    try:
        manifest = json.loads(man.read_text())
        ok = manifest.get("key") == key and manifest.get("sha256") == file_sha256(pt)
    except (OSError, ValueError):
        ok = False
    if not ok:
        for p in (pt, man):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
        return None
    return torch.load(pt, map_location="cpu", weights_only=False)


def cached(kind: str, key_material: dict, build: Callable[[], Any],
           root: Path | None = None, enabled: bool = True) -> Any:
    """Return the cached payload for ``key_material`` or build, store and return it."""
    if enabled:
        hit = load_verified(kind, key_material, root)
        if hit is not None:
            return hit
    payload = build()
    if enabled:
        save_entry(kind, key_material, payload, root)
    return payload

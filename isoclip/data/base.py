"""Dataset containers shared by the embedded default and the real path.

A researcher brings their own data as any collection of (image, caption, label) triples;
our synthetic generator and the paper's dataset loaders produce the same containers.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

ImageSource = np.ndarray | Sequence[Image.Image] | Sequence[str | os.PathLike[str]]


def _hash_update_array(h: hashlib._Hash, a: np.ndarray) -> None:
    a = np.ascontiguousarray(a)
    h.update(str(a.dtype).encode())
    h.update(str(a.shape).encode())
    h.update(a.tobytes())


def _check_indices(indices: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise ValueError(f"indices: expected a 1-D sequence of row indices, got {idx.dtype} "
                         f"{idx.shape}")
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"indices: expected values in [0, {n}), got range "
                         f"[{idx.min()}, {idx.max()}]")
    return idx


class ImageReadError(OSError):
    """An image file of a dataset cannot be read (the message names the file and dataset)."""


def _check_captions(captions: Sequence[object]) -> None:
    """Each entry a str or a non-empty list of str (several captions of one image)."""
    for i, c in enumerate(captions):
        if isinstance(c, str):
            continue
        if not isinstance(c, (list, tuple)) or not c or not all(isinstance(t, str) for t in c):
            raise TypeError(f"captions: expected a str or a non-empty list of str per image, "
                            f"got {type(c).__name__} {c!r} at index {i}")


def _check_strings(name: str, items: Sequence[object]) -> None:
    bad = next((i for i, t in enumerate(items) if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(f"{name}: expected str items, got {type(items[bad]).__name__} "
                        f"{items[bad]!r} at index {bad}")


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """Images with integer class labels.

    Attributes:
        images: either a uint8 array of shape [N, H, W, 3], a sequence of N ``PIL.Image``,
            or a sequence of N image file paths (opened lazily, converted to RGB).
        labels: int64 array of shape [N] (class index into ``class_names``), or None for
            data that only trains a model (the CLIP loss never reads labels; evaluators
            that need them say so).
        class_names: human-readable class names, ``len == n_classes`` (None or ``[]``
            without labels).
        name: dataset identifier (part of every feature-cache key), e.g. ``"synthetic/query"``.
        captions: optional list of N captions paired with the images (image-caption data);
            an entry may be a list of several captions of that image (the trainer draws one
            per step; :meth:`first_captions` gives one per image).
    """

    images: ImageSource
    labels: np.ndarray | None
    class_names: list[str] | None
    name: str
    captions: list[str] | list[str | list[str]] | None = None
    _fingerprint: list[str] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.images, (str, bytes, os.PathLike)):
            raise TypeError(
                f"images: got a {type(self.images).__name__} ({self.images!r}) where a sequence "
                "of image paths, a sequence of PIL images or a uint8 array [N, H, W, 3] was "
                "expected; for one image pass [path]")
        if isinstance(self.images, np.ndarray) and (
                self.images.ndim != 4 or self.images.shape[-1] != 3
                or self.images.dtype != np.uint8):
            raise ValueError(
                "images: expected a uint8 array of shape [N, H, W, 3], got "
                f"{self.images.dtype} {self.images.shape}"
            )
        n = len(self.images)
        if self.class_names is None:
            object.__setattr__(self, "class_names", [])
        if self.captions is not None:
            if isinstance(self.captions, (str, bytes)):
                raise TypeError("captions: got one str where a list of N captions was expected")
            if len(self.captions) != n:
                raise ValueError(
                    f"captions: expected {n} captions (one per image), got {len(self.captions)}"
                )
            _check_captions(self.captions)
        if self.labels is None:
            return
        labels = np.asarray(self.labels)
        if labels.ndim != 1 or labels.shape[0] != n:
            raise ValueError(
                f"labels: expected shape [{n}] (one label per image), got {labels.shape}"
            )
        # an empty list has no dtype to blame (numpy reads [] as float64): an empty split is fine
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels: expected integer class indices, got dtype {labels.dtype}")
        n_names = len(self.class_names or [])
        if n and (labels.min() < 0 or labels.max() >= n_names):
            raise ValueError(
                f"labels: expected values in [0, {n_names}) "
                f"(len(class_names)), got range [{labels.min()}, {labels.max()}]"
            )
        object.__setattr__(self, "labels", labels.astype(np.int64))

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: Sequence[int] | np.ndarray, name: str) -> ImageDataset:
        """Rows ``indices`` (in that order) as a new dataset called ``name`` (its cache key).

        Images, labels, class names and captions are taken row by row; the class names are
        kept whole, so a label means the same class in the subset and in the original.

        Raises:
            ValueError: an index outside ``[0, len(self))`` or an empty ``name``.
        """
        idx = _check_indices(indices, len(self))
        if not name:
            raise ValueError("name: expected a non-empty dataset name (part of cache keys)")
        if isinstance(self.images, np.ndarray):
            images: ImageSource = self.images[idx]
        else:
            images = [self.images[i] for i in idx.tolist()]
        captions = None if self.captions is None else [self.captions[i] for i in idx.tolist()]
        labels = None if self.labels is None else self.labels[idx]
        return ImageDataset(images=images, labels=labels, class_names=self.class_names,
                            name=name, captions=captions)

    def first_captions(self) -> list[str]:
        """One caption per image: the caption, or the first of several.

        Raises:
            ValueError: the dataset has no captions.
        """
        if self.captions is None:
            raise ValueError(f"dataset {self.name!r} has no captions")
        return [c if isinstance(c, str) else c[0] for c in self.captions]

    @property
    def several_captions(self) -> bool:
        """Whether some image has more than one caption."""
        return self.captions is not None and any(not isinstance(c, str)
                                                 for c in self.captions)

    def image(self, i: int) -> Image.Image:
        """Image ``i`` as an RGB ``PIL.Image`` (what a model's ``preprocess`` expects)."""
        src = self.images[i]
        if isinstance(src, np.ndarray):
            return Image.fromarray(src, mode="RGB")
        if isinstance(src, Image.Image):
            return src.convert("RGB")
        try:
            with Image.open(src) as im:
                return im.convert("RGB")
        except (OSError, SyntaxError, ValueError) as e:  # what PIL raises for unreadable files
            raise ImageReadError(
                f"dataset {self.name!r}: cannot read image {i}, {src} ({type(e).__name__}: {e}). "
                "The file is missing, truncated or not an image: copy or download it again, "
                "or leave it out of the dataset.") from e

    def fingerprint(self) -> str:
        """A sha256 of the content (pixels or file path+size+mtime, labels, captions, name).

        Used in cache keys: any change of the data changes the key.
        """
        if self._fingerprint:
            return self._fingerprint[0]
        h = hashlib.sha256()
        h.update(self.name.encode())
        if isinstance(self.images, np.ndarray):
            _hash_update_array(h, self.images)
        else:
            for i, src in enumerate(self.images):
                if isinstance(src, Image.Image):
                    h.update(src.convert("RGB").tobytes())
                else:
                    p = Path(src)
                    try:
                        st = p.stat()
                    except OSError as e:
                        raise ImageReadError(f"dataset {self.name!r}: image {i}, {src}: {e}") from e
                    h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
        if self.labels is None:
            h.update(b"no labels\0")
        else:
            _hash_update_array(h, self.labels)
        for c in self.class_names or []:
            h.update(c.encode() + b"\0")
        for cap in self.captions or []:
            if isinstance(cap, str):
                h.update(cap.encode() + b"\0")
            else:  # several captions of one image: a group marker keeps the grouping
                h.update(b"\x1e" + b"\0".join(t.encode() for t in cap) + b"\x1e\0")
        fp = h.hexdigest()
        self._fingerprint.append(fp)
        return fp


@dataclass(frozen=True, eq=False)
class TextDataset:
    """Captions with integer labels (text-text retrieval: same label = relevant).

    Attributes:
        texts: N strings.
        labels: int64 array of shape [N].
        name: dataset identifier used in cache keys.
    """

    texts: list[str]
    labels: np.ndarray
    name: str

    def __post_init__(self) -> None:
        if isinstance(self.texts, (str, bytes)):
            raise TypeError("texts: got one str where a list of N strings was expected")
        _check_strings("texts", self.texts)
        labels = np.asarray(self.labels)
        if labels.ndim != 1 or labels.shape[0] != len(self.texts):
            raise ValueError(
                f"labels: expected shape [{len(self.texts)}] (one per text), got {labels.shape}"
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels: expected integer labels, got dtype {labels.dtype}")
        object.__setattr__(self, "labels", labels.astype(np.int64))

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int] | np.ndarray, name: str) -> TextDataset:
        """Rows ``indices`` (in that order) as a new dataset called ``name``.

        Raises:
            ValueError: an index outside ``[0, len(self))`` or an empty ``name``.
        """
        idx = _check_indices(indices, len(self))
        if not name:
            raise ValueError("name: expected a non-empty dataset name (part of cache keys)")
        return TextDataset([self.texts[i] for i in idx.tolist()], self.labels[idx], name)

    def fingerprint(self) -> str:
        h = hashlib.sha256(self.name.encode())
        for t in self.texts:
            h.update(t.encode() + b"\0")
        _hash_update_array(h, self.labels)
        return h.hexdigest()


@dataclass
class Collection:
    """An image-caption collection in the splits the book's studies evaluate: what a
    :class:`isoclip.data.world.synthetic.SyntheticWorld` or an
    :class:`isoclip.data.emoji.EmojiData` holds, for any data (bring your own).

    Attributes:
        name: a name for tables.
        train: training pairs (images with captions; labels not needed); also the source of
            the agreement rule's calibration pairs. None: evaluation only.
        query, gallery: labelled images (image→image retrieval, relevance = same label), with
            captions for the cross-modal metrics.
        text_query, text_gallery: labelled captions for text→text retrieval (None: no text
            task).
        prompts: zero-shot prompts, one list per zero-shot class (None: no zero-shot metric).
        zero_shot_labels: [len(query)] class of each query image among ``prompts`` (default:
            ``query.labels``).
        class_names: names of the labels of ``query`` and ``gallery``.
    """

    name: str
    train: ImageDataset | None
    query: ImageDataset
    gallery: ImageDataset
    text_query: TextDataset | None = None
    text_gallery: TextDataset | None = None
    prompts: list[list[str]] | None = None
    zero_shot_labels: np.ndarray | None = None
    class_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for split in ("query", "gallery"):
            ds = getattr(self, split)
            if not isinstance(ds, ImageDataset) or ds.labels is None:
                raise ValueError(f"{split}: expected an ImageDataset with labels (relevance), "
                                 f"got {type(ds).__name__}")
        if (self.text_query is None) != (self.text_gallery is None):
            raise ValueError("text_query and text_gallery: give both or neither")
        if not self.class_names:
            self.class_names = list(self.query.class_names or [])
        if self.zero_shot_labels is not None and len(self.zero_shot_labels) != len(self.query):
            raise ValueError(f"zero_shot_labels: expected {len(self.query)} (one per query "
                             f"image), got {len(self.zero_shot_labels)}")

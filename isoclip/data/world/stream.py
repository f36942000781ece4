"""A streaming training split: fresh image-caption pairs for every batch.

Every model trained on a fixed world sees the same ``C · n_train_per_class`` pairs again and
again (the default: 12,000 pairs, 17 epochs in 800 steps of 256). Real CLIP sees hundreds of
millions of distinct pairs and hardly any of them twice. :class:`TrainStream` draws the
training pairs of a world from the same generator as its fixed ``train`` split, but a new
batch of scenes for every step, so the number of distinct pairs seen grows with the steps.

Determinism: batch ``b`` is the ``train`` split's generator run with its own random streams
``default_rng([seed, STREAM_SPLIT_BASE + b, purpose])`` (labels, layout, pixel noise, scenes,
captions), exactly as a fixed split uses ``[seed, split_id, purpose]``; the same world config,
batch index and batch size give byte-identical pairs, in any order and on any machine. Batch
ids start at :data:`STREAM_SPLIT_BASE`, far from the fixed splits' ids, so no batch shares a
random stream with the fixed train, query, gallery or text splits. Classes are drawn uniformly
per pair (a batch is not class-balanced; over many batches every class is equally likely).
The evaluation splits are those of :func:`isoclip.data.world.synthetic.make_world`, unchanged.
"""

from __future__ import annotations

import functools
import hashlib
import operator

import numpy as np

from isoclip.common.cache import stable_hash
from isoclip.data.base import ImageDataset
from isoclip.data.world.config import WorldConfig
from isoclip.data.world.primitives import (
    GENERATOR_VERSION,
    SPLIT_FIELDS,
    STREAM_CAPTIONS,
    STREAM_SCENES,
)

__all__ = ["STREAM_SPLIT_BASE", "STREAM_VERSION", "TrainStream", "train_stream"]

#: Split id of batch 0 of a stream; batch ``b`` uses ``STREAM_SPLIT_BASE + b``. The fixed
#: splits use ids 0-3 (:data:`isoclip.data.world.primitives.SPLIT_IDS`).
STREAM_SPLIT_BASE = 1 << 20
#: Random-stream purpose of a streamed batch's class labels (the fixed splits draw labels
#: from ``[seed, split_id]``; the other purposes are those of the fixed splits).
STREAM_LABELS = 7
#: Bump when a change of this module changes the pairs of an existing config.
STREAM_VERSION = 1
#: Pairs rendered to fingerprint a stream (its first batch of this size).
FINGERPRINT_PAIRS = 64


class TrainStream:
    """The streaming training split of a world: :meth:`batch` renders batch ``b``.

    Attributes:
        config: the world's configuration (``n_train_per_class`` is not used: a stream has
            no fixed size).
        name: ``"synthetic-<12 hex>/train-stream"``, a stable hash of the generator and
            stream versions and of the fields that determine the training pairs.
    """

    def __init__(self, config: WorldConfig) -> None:
        if not isinstance(config, WorldConfig):
            raise TypeError(f"config: expected a WorldConfig, got {type(config).__name__}")
        self.config = config
        fields = tuple(f for f in SPLIT_FIELDS["train"] if f != "n_train_per_class")
        key = {"generator": GENERATOR_VERSION, "stream": STREAM_VERSION,
               **config._key_fields(fields)}
        self.name = f"synthetic-{stable_hash(key)[:12]}/train-stream"

    def __repr__(self) -> str:
        return f"TrainStream({self.name!r})"

    def labels(self, b: int, n: int) -> np.ndarray:
        """Class labels int64 [n] of batch ``b`` (uniform over the world's classes)."""
        b, n = _check_batch(b, n)
        rng = np.random.default_rng([self.config.seed, STREAM_SPLIT_BASE + b, STREAM_LABELS])
        return rng.integers(0, len(self.config.classes), size=n)

    def batch(self, b: int, n: int) -> ImageDataset:
        """Batch ``b`` of ``n`` pairs: images uint8 [n, S, S, 3], labels [n], one caption each
        (training templates, the world's ``partial_frac`` of them partial)."""
        from isoclip.data.world import compositional as comp
        from isoclip.data.world.synthetic import _captions, _render

        b, n = _check_batch(b, n)
        cfg = self.config
        labels = self.labels(b, n)
        sid = STREAM_SPLIT_BASE + b
        if cfg.scene == "compositional":
            scenes = comp.sample_scenes(cfg, labels,
                                        np.random.default_rng([cfg.seed, sid, STREAM_SCENES]))
            caps = comp.captions(cfg, scenes,
                                 np.random.default_rng([cfg.seed, sid, STREAM_CAPTIONS]),
                                 comp.TRAIN_WRAPPERS, cfg.partial_frac)
            images = comp.render(cfg, scenes, sid)
        else:
            caps = _captions(cfg, labels, sid, cfg.partial_frac)
            images = _render(cfg, labels, sid)
        return ImageDataset(images=images, labels=labels, class_names=cfg.class_names,
                            name=f"{self.name}/{b}", captions=caps)

    @functools.cached_property
    def _fingerprint(self) -> str:
        first = self.batch(0, FINGERPRINT_PAIRS)
        h = hashlib.sha256(self.name.encode())
        h.update(first.fingerprint().encode())
        return h.hexdigest()

    def fingerprint(self) -> str:
        """A sha256 of the name and of the content of the first :data:`FINGERPRINT_PAIRS`
        pairs (so a change of the generator that forgot to bump a version still changes every
        cache key built on the stream)."""
        return self._fingerprint


def _check_batch(b: object, n: object) -> tuple[int, int]:
    out = []
    for name, v in (("b", b), ("n", n)):
        try:
            if isinstance(v, bool):
                raise TypeError
            out.append(operator.index(v))  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(f"{name}: expected an int, got {type(v).__name__} {v!r}") from None
    if out[0] < 0:
        raise ValueError(f"b: expected a batch index >= 0, got {out[0]}")
    if out[1] < 1:
        raise ValueError(f"n: expected a batch size >= 1, got {out[1]}")
    return out[0], out[1]


@functools.lru_cache(maxsize=8)
def train_stream(config: WorldConfig) -> TrainStream:
    """The streaming training split of ``config`` (memoised per config)."""
    return TrainStream(config)

"""Image and text features, projected or pre-projection, batched, cached on disk.

Follows the official extraction (IsoCLIP ``src/utils.py`` ``get_features``): float32 model, the
model's own ``preprocess`` applied to each PIL image, no normalisation of the output
(evaluators normalise inside). ``kind="projected"`` is
``model.encode_image`` / ``model.encode_text``; ``kind="preproj"`` stops just before the final
projector (:func:`isoclip.method.projectors.encode_image_preproj` /
:func:`~isoclip.method.projectors.encode_text_preproj`), the features IsoCLIP's filtered projectors
act on.

Cache: entries live under ``$ISOCLIP_CACHE/features/`` (see :mod:`isoclip.common.cache`: atomic
writes, sha256-verified loads, a corrupt or partial entry is deleted and rebuilt). The key
(:func:`feature_key_material`) holds everything that changes the content: the model
fingerprint (weights, config, preprocess, open_clip version), the model's parameter dtype,
the data fingerprint (pixels or file path/size/mtime, labels, captions, dataset name), the
modality, the kind, the torch version and :data:`EXTRACTION_VERSION`. Batch size and device
are not part of the key (they change the output only at float round-off).

Several processes: under ``torchrun`` (:mod:`isoclip.common.dist`) :func:`image_features` and
:func:`text_features` are collectives (every rank calls them, in the same order): the batches
are shared out round-robin, every rank gets the whole matrix back, rank 0 writes the cache
entry. The result equals the one-process extraction (same batches).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from isoclip.common import dist
from isoclip.data.base import ImageDataset, TextDataset
from isoclip.evaluate.classification import class_embeddings
from isoclip.models.loading import ModelBundle

__all__ = [
    "EXTRACTION_VERSION",
    "FeatureKind",
    "feature_key_material",
    "image_features",
    "text_features",
    "texts_fingerprint",
]

#: Version of the extraction code; bump whenever a change here changes cached features.
EXTRACTION_VERSION = 1

FeatureKind = Literal["projected", "preproj"]
_KINDS = ("projected", "preproj")


def _check_kind(kind: str) -> None:
    if kind not in _KINDS:
        raise ValueError(f"kind: expected one of {_KINDS}, got {kind!r}")


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")


def texts_fingerprint(texts: Sequence[str]) -> str:
    """sha256 of a list of strings (order-sensitive, unambiguous: NUL-separated)."""
    h = hashlib.sha256(b"texts:")
    for t in texts:
        h.update(t.encode() + b"\0")
    return h.hexdigest()


def _model_dtype(bundle: ModelBundle) -> torch.dtype:
    dtype: torch.dtype = next(bundle.model.parameters()).dtype
    return dtype


def feature_key_material(bundle: ModelBundle, data_fingerprint: str, data_name: str,
                         modality: Literal["image", "text"], kind: str) -> dict[str, Any]:
    """The cache key material of one feature matrix (see the module docstring)."""
    _check_kind(kind)
    return {
        "what": "features",
        "extraction_version": EXTRACTION_VERSION,
        "modality": modality,
        "kind": kind,
        "model": bundle.fingerprint,
        "model_name": bundle.name,
        "pretrained": bundle.pretrained,
        "model_dtype": str(_model_dtype(bundle)),
        "out_dtype": "float32",
        "data": data_fingerprint,
        "data_name": data_name,
        "torch": torch.__version__.split("+")[0],
    }


def _encoder(modality: Literal["image", "text"], kind: str) -> Callable[[Any, Tensor], Tensor]:
    """``model, batch -> features`` for one modality and kind (projectors imported lazily)."""
    if kind == "projected":
        if modality == "image":
            return lambda m, x: m.encode_image(x)
        return lambda m, x: m.encode_text(x)
    from isoclip.method import projectors
    if modality == "image":
        return projectors.encode_image_preproj
    return projectors.encode_text_preproj


def _run_batched(bundle: ModelBundle, n: int, batch_size: int, desc: str, progress: bool,
                 make_batch: Callable[[int, int], Tensor],
                 encode: Callable[[Any, Tensor], Tensor]) -> Tensor:
    """Encode items [0, n) in batches; returns float32 CPU [n, D] (eval mode, no autograd).

    Under torchrun (:mod:`isoclip.common.dist`) the batches are dealt round-robin to the
    ranks and gathered back in order on every rank: the same batches as in one process, so
    the same features (bitwise on CPU at equal thread counts).
    """
    if n == 0:
        raise ValueError(f"{desc}: nothing to encode (0 items)")
    model = bundle.model
    was_training = model.training
    model.eval()
    bounds = [(a, min(a + batch_size, n)) for a in range(0, n, batch_size)]
    mine = dist.shard(len(bounds))
    out: dict[int, Tensor] = {}
    try:
        with torch.no_grad(), tqdm(total=sum(bounds[k][1] - bounds[k][0] for k in mine),
                                   desc=desc, disable=not (progress and dist.is_main()),
                                   unit="item", leave=False) as bar:
            for k in mine:
                start, stop = bounds[k]
                x = make_batch(start, stop).to(bundle.device)
                out[k] = encode(model, x).float().cpu()
                bar.update(stop - start)
    finally:
        model.train(was_training)
    if dist.is_distributed():
        for part in dist.all_gather(out):
            out.update(part)
    return torch.cat([out[k] for k in range(len(bounds))]).contiguous()


def image_features(bundle: ModelBundle, dataset: ImageDataset, kind: FeatureKind = "projected",
                   *, batch_size: int = 64, cache: bool = True, progress: bool = True) -> Tensor:
    """Image features of every image of ``dataset``.

    Args:
        bundle: model + preprocess (:func:`isoclip.models.loading.load_model`).
        dataset: N images; each goes through ``bundle.preprocess`` as a PIL image.
        kind: ``"projected"`` (``model.encode_image``, [N, d]) or ``"preproj"`` (input of the
            image projector, [N, d_i]).
        batch_size: images per forward pass.
        cache: read/write the on-disk feature cache.
        progress: show a tqdm bar.

    Returns:
        float32 CPU tensor [N, d] or [N, d_i], unnormalised, row i = image i.
    """
    _check_kind(kind)
    _check_batch_size(batch_size)
    if not isinstance(dataset, ImageDataset):
        raise TypeError(f"dataset: expected an ImageDataset, got {type(dataset).__name__}")

    def build() -> Tensor:
        def make_batch(a: int, b: int) -> Tensor:
            return torch.stack([bundle.preprocess(dataset.image(i)) for i in range(a, b)])

        return _run_batched(bundle, len(dataset), batch_size,
                            f"{kind} image features {dataset.name}", progress, make_batch,
                            _encoder("image", kind))

    material = feature_key_material(bundle, dataset.fingerprint(), dataset.name, "image", kind)
    return dist.cached_collective("features", material, build, enabled=cache)


def _as_texts(texts: TextDataset | ImageDataset | Sequence[str]) -> tuple[list[str], str, str]:
    """(strings, data fingerprint, data name) of any accepted text source."""
    if isinstance(texts, TextDataset):
        return list(texts.texts), texts.fingerprint(), texts.name
    if isinstance(texts, ImageDataset):
        if texts.captions is None:
            raise ValueError(f"texts: ImageDataset {texts.name!r} has no captions")
        caps = texts.first_captions()  # one per image (the first of several)
        return caps, texts_fingerprint(caps), f"{texts.name}/captions"
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError("texts: expected a TextDataset, an ImageDataset with captions or a "
                        f"list of strings, got {type(texts).__name__}")
    strings = list(texts)
    bad = [type(t).__name__ for t in strings if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts: every item must be a str, got {sorted(set(bad))}")
    return strings, texts_fingerprint(strings), "texts"


def text_features(bundle: ModelBundle, texts: TextDataset | ImageDataset | Sequence[str],
                  kind: FeatureKind = "projected", *, batch_size: int = 256, cache: bool = True,
                  progress: bool = True) -> Tensor:
    """Text features of N strings, tokenised with ``bundle.tokenizer``.

    Args:
        bundle: model + tokenizer.
        texts: a :class:`TextDataset`, an :class:`ImageDataset` (its ``captions``), or a list
            of strings (keyed by their content).
        kind: ``"projected"`` (``model.encode_text``, [N, d]) or ``"preproj"`` (input of the
            text projector, [N, d_t]).
        batch_size: texts per forward pass.
        cache: read/write the on-disk feature cache.
        progress: show a tqdm bar.

    Returns:
        float32 CPU tensor [N, d] or [N, d_t], unnormalised, row i = text i.
    """
    _check_kind(kind)
    _check_batch_size(batch_size)
    strings, fingerprint, name = _as_texts(texts)

    def build() -> Tensor:
        def make_batch(a: int, b: int) -> Tensor:
            return bundle.tokenizer(strings[a:b])

        return _run_batched(bundle, len(strings), batch_size, f"{kind} text features {name}",
                            progress, make_batch, _encoder("text", kind))

    material = feature_key_material(bundle, fingerprint, name, "text", kind)
    return dist.cached_collective("features", material, build, enabled=cache)


def zero_shot_weights(bundle: ModelBundle, prompts: Sequence[Sequence[str]], *,
                      batch_size: int = 256, cache: bool = True, progress: bool = True
                      ) -> Tensor:
    """Zero-shot class weights [C, d] from ``prompts[c]`` (the prompts of class c).

    Use :func:`fill_templates` for ``"{}"`` templates, or the synthetic world's ``prompts``.
    Prompt features come from :func:`isoclip.models.features.text_features` (cached).
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("prompts: expected at least one prompt for every class")
    flat = [s for p in prompts for s in p]
    feats = text_features(bundle, flat, "projected", batch_size=batch_size, cache=cache,
                          progress=progress)
    return class_embeddings(torch.split(feats, [len(p) for p in prompts]))

"""Drop-in IsoCLIP: IsoCLIP features from any open_clip model, and the filtered projectors as a file.

IsoCLIP (Magistri et al., CVPR 2026) replaces the projectors of a CLIP model by
``Ŵ_i = W_i U_S U_Sᵀ`` and ``Ŵ_t = W_t V_S V_Sᵀ``, where ``U_S, V_S`` are the singular vectors of
``Psi = W_iᵀ W_t`` kept by a band ``(k_top, k_bottom)`` (book notation page, eq-iso-projectors).
:func:`apply` wraps a model so that ``encode_image`` / ``encode_text`` (open_clip's signatures)
return ``f Ŵ_iᵀ + b_i`` / ``g Ŵ_tᵀ + b_t`` from the model's own pre-projection features ``f``,
``g``; everything else about the model is unchanged::

    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained="openai")
    iso = isoclip.apply(model, band="auto")
    feats = iso.encode_image(images, normalize=True)   # [N, d] IsoCLIP image features

:func:`export_projectors` writes ``Ŵ_i``, ``Ŵ_t`` (and the biases) to a small safetensors file
with its metadata, so that another code base can apply them with one matrix product and
without this package (:func:`load_projectors` reads it back)::

    embedding = preprojection_features @ W.T (+ b)        # W [d, d_in], b [d]

The pieces are the package's own: :func:`isoclip.method.projectors.get_projectors`,
:func:`~isoclip.method.projectors.encode_image_preproj` /
:func:`~isoclip.method.projectors.encode_text_preproj`, :func:`isoclip.method.operator.svd`,
:func:`isoclip.selection.rules.select_band` and :func:`isoclip.method.bands.iso_projectors`.

May import: every other layer (a top-level module, like the command line).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from isoclip.common.types import check_modality
from isoclip.method.bands import Band, iso_projectors, paper_scaled_band
from isoclip.method.operator import SVD, svd
from isoclip.method.projectors import (
    Projectors,
    encode_image_preproj,
    encode_text_preproj,
    get_projectors,
)
from isoclip.models.loading import ModelBundle
from isoclip.selection.rules import select_band

__all__ = ["FORMAT", "BandSpec", "ExportedProjectors", "IsoCLIP", "apply", "export_projectors",
           "load_projectors", "resolve_band"]

#: ``metadata["format"]`` of the files written by :func:`export_projectors`.
FORMAT = "isoclip-projectors"
#: Version of that format: bumped when the tensors or metadata keys change meaning.
FORMAT_VERSION = "1"

#: What :func:`apply` accepts as ``band``.
BandSpec = Band | str | tuple[int, int] | list[int]


def _version() -> str:
    """The installed isoclip version (the package metadata: no import of ``isoclip``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("isoclip")
    except PackageNotFoundError:  # a source tree that is not installed
        return "unknown"


@dataclass(frozen=True)
class ExportedProjectors:
    """Filtered projectors read from (or about to be written to) a file.

    Attributes:
        projectors: ``Ŵ_i`` [d, d_i], ``Ŵ_t`` [d, d_t] and the biases ``b_i``, ``b_t`` [d] (or
            None), in the paper's orientation: embedding = ``features @ W.T + b``.
        band: the ``(k_top, k_bottom)`` the projectors were filtered with.
        metadata: strings: ``format``, ``format_version``, ``model``, ``pretrained``,
            ``k_top``, ``k_bottom``, ``rank`` (r of Psi), ``isoclip_version``,
            ``image_linearized`` and ``convention``.
    """

    projectors: Projectors
    band: Band
    metadata: dict[str, str] = field(default_factory=dict)


def _unwrap(model: Any) -> tuple[nn.Module, str | None, str | None]:
    """(open_clip model, model name, pretrained tag) of a model, a bundle or an IsoCLIP."""
    if isinstance(model, IsoCLIP):
        return model.model, model.model_name, model.pretrained
    if isinstance(model, ModelBundle):
        return model.model, model.name, model.pretrained
    if isinstance(model, nn.Module):
        return model, None, None
    raise TypeError(f"model: expected an open_clip model (nn.Module), an isoclip ModelBundle or "
                    f"an IsoCLIP, got {type(model).__name__}")


def resolve_band(P: Projectors, band: BandSpec, *, dec: SVD | None = None,
                 model_name: str | None = None, pretrained: str | None = None,
                 task: str = "image") -> Band:
    """The :class:`~isoclip.method.bands.Band` that ``band`` names for projectors ``P``.

    Args:
        P: the model's (unfiltered) projectors.
        band: ``"auto"`` (:func:`~isoclip.selection.rules.select_band`, isotropy rule, from the
            weights alone), ``"paper"`` (the paper's band of ``(model_name, pretrained, task)``,
            rescaled to the rank of ``P`` if it differs: :func:`paper_scaled_band`), a
            :class:`Band`, or ``(k_top, k_bottom)``.
        dec: ``svd(P)`` if already computed.
        model_name, pretrained, task: the backbone and task for ``band="paper"``.

    Raises:
        ValueError: an unknown string, a malformed tuple, ``"paper"`` without ``model_name`` or
            ``pretrained``, or a band that keeps nothing (``k_top + k_bottom >= r``).
        KeyError: ``"paper"`` for a backbone without an official band (the message lists them).
    """
    dec = svd(P) if dec is None else dec
    if isinstance(band, Band):
        chosen = band
    elif isinstance(band, str):
        if band == "auto":
            chosen = select_band(P, "isotropy", dec=dec)
        elif band == "paper":
            if not model_name or not pretrained:
                raise ValueError("band='paper' needs model_name and pretrained (the paper's "
                                 "bands are per backbone, e.g. model_name='ViT-B-32', "
                                 "pretrained='openai'); pass them, or a ModelBundle as model")
            chosen = paper_scaled_band(dec.r, model_name, pretrained, task)
        else:
            raise ValueError(f"band: expected 'auto', 'paper', a Band or (k_top, k_bottom), "
                             f"got the string {band!r}")
    elif isinstance(band, (tuple, list)):
        if len(band) != 2:
            raise ValueError(f"band: expected (k_top, k_bottom), got {band!r}")
        chosen = Band(*band)
    else:
        raise TypeError(f"band: expected 'auto', 'paper', a Band or (k_top, k_bottom), got "
                        f"{type(band).__name__}")
    chosen.indices(dec.r)  # validates k_top + k_bottom < r
    return chosen


class IsoCLIP(nn.Module):
    """An open_clip model whose encoders return IsoCLIP features (see :func:`apply`).

    ``encode_image`` / ``encode_text`` have open_clip's signatures; ``forward(image, text)``
    returns ``(image_features, text_features, logit_scale.exp())`` with unit-norm features, as
    open_clip's ``CLIP.forward`` does without ``output_dict``. The filtered projectors are
    buffers: ``.to(device)`` moves them with the model.

    Attributes:
        model: the wrapped open_clip model (not modified).
        band: the band the projectors were filtered with.
        rank: r of Psi, ``min(d_i, d_t)``.
        model_name, pretrained: the backbone, when known (from a ModelBundle or given).
    """

    W_i: Tensor
    W_t: Tensor
    b_i: Tensor | None
    b_t: Tensor | None

    def __init__(self, model: nn.Module, projectors: Projectors, band: Band, rank: int, *,
                 model_name: str | None = None, pretrained: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.band = band
        self.rank = rank
        self.model_name = model_name
        self.pretrained = pretrained
        self.image_linearized = projectors.image_linearized
        self.register_buffer("W_i", projectors.W_i.detach().clone())
        self.register_buffer("W_t", projectors.W_t.detach().clone())
        self.register_buffer("b_i", None if projectors.b_i is None else projectors.b_i.clone())
        self.register_buffer("b_t", None if projectors.b_t is None else projectors.b_t.clone())

    @property
    def projectors(self) -> Projectors:
        """The filtered projectors ``Ŵ_i`` [d, d_i], ``Ŵ_t`` [d, d_t] (with the biases)."""
        return Projectors(self.W_i, self.W_t, self.b_i, self.b_t, self.image_linearized)

    @property
    def logit_scale(self) -> Tensor:
        """The wrapped model's ``logit_scale`` (log of the inverse temperature)."""
        scale = self.model.logit_scale
        if not isinstance(scale, Tensor):
            raise TypeError("the wrapped model has no logit_scale tensor")
        return scale

    def encode_image(self, image: Tensor, normalize: bool = False) -> Tensor:
        """IsoCLIP image features [N, d] of preprocessed images [N, 3, H, W]."""
        f = encode_image_preproj(self.model, image)
        out = self.projectors.to(f.dtype).project_image(f)
        return F.normalize(out, dim=-1) if normalize else out

    def encode_text(self, text: Tensor, normalize: bool = False) -> Tensor:
        """IsoCLIP text features [N, d] of tokens [N, L] (the model's tokenizer)."""
        g = encode_text_preproj(self.model, text)
        out = self.projectors.to(g.dtype).project_text(g)
        return F.normalize(out, dim=-1) if normalize else out

    def forward(self, image: Tensor | None = None, text: Tensor | None = None
                ) -> tuple[Tensor | None, Tensor | None, Tensor]:
        """``(image_features, text_features, logit_scale.exp())``, features L2-normalised."""
        fi = None if image is None else self.encode_image(image, normalize=True)
        ft = None if text is None else self.encode_text(text, normalize=True)
        return fi, ft, self.logit_scale.exp()

    def export(self) -> ExportedProjectors:
        """The filtered projectors with their metadata (what :func:`export_projectors` writes)."""
        P = self.projectors
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": self.model_name or "",
            "pretrained": self.pretrained or "",
            "k_top": str(self.band.k_top),
            "k_bottom": str(self.band.k_bottom),
            "rank": str(self.rank),
            "isoclip_version": _version(),
            "image_linearized": json.dumps(self.image_linearized),
            "convention": "embedding = features @ W.T + b; W_i [d, d_i], W_t [d, d_t], "
                          "b_i/b_t [d] when present; features are the model's pre-projection "
                          "image/text features",
        }
        return ExportedProjectors(P, self.band, meta)

    def extra_repr(self) -> str:
        name = f"{self.model_name}/{self.pretrained}" if self.model_name else "open_clip model"
        return (f"{name}, band=(k_top={self.band.k_top}, k_bottom={self.band.k_bottom}) of "
                f"r={self.rank}, W_i {tuple(self.W_i.shape)}, W_t {tuple(self.W_t.shape)}")


def apply(model: nn.Module | ModelBundle, band: BandSpec | ExportedProjectors = "auto", *,
          model_name: str | None = None, pretrained: str | None = None,
          task: str = "image") -> IsoCLIP:
    """IsoCLIP for ``model``: an object with ``encode_image`` / ``encode_text`` like open_clip's.

    Args:
        model: an open_clip ``CLIP`` / ``CustomTextCLIP`` (any family
            :func:`~isoclip.method.projectors.get_projectors` supports), or an isoclip
            :class:`~isoclip.models.loading.ModelBundle` (its name and tag are then known).
        band: ``"auto"`` (default: the isotropy rule on the weights alone), ``"paper"`` (the
            paper's band of the backbone; needs the name and tag), a :class:`Band`,
            ``(k_top, k_bottom)``, or projectors read by :func:`load_projectors` (applied as
            they are, after a shape check). ``(0, 0)`` reproduces the model's own features.
        model_name, pretrained: the backbone, for ``band="paper"`` and the exported metadata
            (taken from a ModelBundle when not given).
        task: ``"image"`` or ``"text"``: which of the paper's bands ``"paper"`` means.

    Returns:
        :class:`IsoCLIP` wrapping ``model`` (which is not modified).

    Raises:
        TypeError: ``model`` is not a model, a ModelBundle or an IsoCLIP; ``band`` of a
            wrong type.
        ValueError: a bad ``band`` or ``task`` (see :func:`resolve_band`), or loaded
            projectors whose shapes do not match the model's.
        NotImplementedError: a model family without a known projector (named in the message).
    """
    check_modality("task", task)
    module, name, tag = _unwrap(model)
    model_name = model_name or name
    pretrained = pretrained or tag
    P = get_projectors(module)
    if isinstance(band, ExportedProjectors):
        Q = band.projectors
        if (Q.W_i.shape, Q.W_t.shape) != (P.W_i.shape, P.W_t.shape):
            raise ValueError(f"band: the loaded projectors have W_i {tuple(Q.W_i.shape)}, W_t "
                             f"{tuple(Q.W_t.shape)}, the model W_i {tuple(P.W_i.shape)}, W_t "
                             f"{tuple(P.W_t.shape)}: they were exported for another model")
        rank = int(band.metadata.get("rank") or min(P.d_i, P.d_t))
        return IsoCLIP(module, Q.to(P.dtype), band.band, rank,
                       model_name=model_name or band.metadata.get("model") or None,
                       pretrained=pretrained or band.metadata.get("pretrained") or None)
    dec = svd(P)
    chosen = resolve_band(P, band, dec=dec, model_name=model_name, pretrained=pretrained,
                          task=task)
    return IsoCLIP(module, iso_projectors(P, chosen, dec), chosen, dec.r,
                   model_name=model_name, pretrained=pretrained)


def export_projectors(model: nn.Module | ModelBundle | IsoCLIP, band: BandSpec | None,
                      path: str | os.PathLike[str], *, model_name: str | None = None,
                      pretrained: str | None = None, task: str = "image") -> Path:
    """Write the filtered projectors of ``model`` to a safetensors file.

    Args:
        model: an :class:`IsoCLIP` (its band is used when ``band`` is None), or a model /
            ModelBundle to which :func:`apply` is applied first.
        band: as for :func:`apply`; None: the IsoCLIP's own band (``"auto"`` for a model).
        path: the file to write (parent folders are created).
        model_name, pretrained, task: as for :func:`apply`.

    Returns:
        The path written. Tensors: ``W_i`` [d, d_i], ``W_t`` [d, d_t] and, when the model
        has them, ``b_i``, ``b_t`` [d] (in the model's dtype); metadata as
        :class:`ExportedProjectors`.
    """
    from safetensors.torch import save_file

    if isinstance(model, IsoCLIP) and band is None and model_name is None and pretrained is None:
        iso = model
    else:
        iso = apply(model, "auto" if band is None else band, model_name=model_name,
                    pretrained=pretrained, task=task)
    exp = iso.export()
    tensors = {"W_i": exp.projectors.W_i, "W_t": exp.projectors.W_t}
    if exp.projectors.b_i is not None:
        tensors["b_i"] = exp.projectors.b_i
    if exp.projectors.b_t is not None:
        tensors["b_t"] = exp.projectors.b_t
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(out),
              metadata=exp.metadata)
    return out


def load_projectors(path: str | os.PathLike[str]) -> ExportedProjectors:
    """Read a file written by :func:`export_projectors`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an isoclip projectors file, or a format version this package does
            not know (the message says which).
    """
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"projectors file {p} does not exist")
    with safe_open(str(p), framework="pt") as f:
        meta: Mapping[str, str] = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    if meta.get("format") != FORMAT:
        raise ValueError(f"{p}: not an isoclip projectors file (metadata format="
                         f"{meta.get('format')!r}, expected {FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{p}: format version {meta.get('format_version')!r}; this isoclip "
                         f"({_version()}) reads version {FORMAT_VERSION}")
    missing = {"W_i", "W_t"} - set(tensors)
    if missing:
        raise ValueError(f"{p}: missing tensors {sorted(missing)}")
    P = Projectors(tensors["W_i"], tensors["W_t"], tensors.get("b_i"), tensors.get("b_t"),
                   json.loads(meta.get("image_linearized", "false")))
    band = Band(int(meta["k_top"]), int(meta["k_bottom"]))
    return ExportedProjectors(P, band, dict(meta))

"""Named training variants: the training-time fixes of the modality gap on one registry.

Every variant is :data:`isoclip.training.embedded.DEFAULT_TRAIN` (same steps, batch, optimiser,
schedule, seed, data) with a few :class:`isoclip.training.trainer.TrainConfig` fields changed, trained by
the same :func:`isoclip.training.trainer.load_or_train` into the same cache, and evaluated by the same
evaluators. Notebooks select them by name (:data:`VARIANTS`, :func:`variant_config`).

=================  =======================================================================
name               what changes
=================  =======================================================================
``clip``           nothing: the book's default model (learned τ)
``clip-tau-0.01``  τ fixed at 0.01 (CLIP's final learned value; Liang et al.; CTG τ table)
``clip-tau-0.1``   τ fixed at 0.1
``clip-tau-1``     τ fixed at 1 (closes the gap in Liang et al. and in CTG's table)
``shared``         AlignCLIP's SharedCLIP: one transformer, LayerNorm and projection for both
                   modalities (equal-width config ``isoclip-tiny-vit-w96``), learned τ
``shared-imsep``   SharedCLIP + IMSep (α = 1, β = 0.5, images only, attribute semantics)
``clip-atp-cu``    CLIP + α(t)·L_ATP + β(t)·L_CU with ModGap's released schedule, τ = 0.1
=================  =======================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from isoclip.training.trainer import TrainConfig

__all__ = ["VARIANTS", "Variant", "load_variant", "variant_config", "variant_names"]


@dataclass(frozen=True)
class Variant:
    """A named training variant.

    Attributes:
        name: registry key (used by notebook parameters).
        label: short label for tables and figures.
        paper: where it comes from (paper and section).
        overrides: :class:`isoclip.training.trainer.TrainConfig` fields that differ from the default.
    """

    name: str
    label: str
    paper: str
    overrides: dict[str, Any] = field(default_factory=dict)


_ALL = (
    Variant("clip", "CLIP (learned τ)", "Radford et al. 2021; the book's default", {}),
    Variant("clip-tau-0.01", "CLIP, τ = 0.01",
            "Liang et al. 2022, Sec. 4.2; Cross the Gap, gap experiment", {"temperature": 0.01}),
    Variant("clip-tau-0.1", "CLIP, τ = 0.1", "Liang et al. 2022, Sec. 4.2", {"temperature": 0.1}),
    Variant("clip-tau-1", "CLIP, τ = 1",
            "Liang et al. 2022, Sec. 4.2; Cross the Gap, gap experiment", {"temperature": 1.0}),
    Variant("shared", "SharedCLIP", "AlignCLIP, shared encoder (align_clip/model.py)",
            {"model": "isoclip-tiny-vit-w96", "architecture": "shared"}),
    Variant("shared-imsep", "SharedCLIP + IMSep", "AlignCLIP, IMSep (notation eq-imsep)",
            {"model": "isoclip-tiny-vit-w96", "architecture": "shared", "loss": "imsep"}),
    Variant("clip-atp-cu", "CLIP + ATP + CU (τ = 0.1)",
            "Closing the Modality Gap, ATP + CU losses", {"loss": "atp_cu", "temperature": 0.1}),
)

#: Every registered variant by name, in table order.
VARIANTS: dict[str, Variant] = {v.name: v for v in _ALL}


def variant_names() -> list[str]:
    """Names of :data:`VARIANTS`, in table order."""
    return list(VARIANTS)


def variant_config(name: str, base: TrainConfig | None = None, **overrides: Any) -> TrainConfig:
    """The :class:`isoclip.training.trainer.TrainConfig` of variant ``name``.

    Args:
        name: a key of :data:`VARIANTS`.
        base: the configuration the variant modifies (default
            :data:`isoclip.training.embedded.DEFAULT_TRAIN`); e.g. notebook step/seed parameters.
        overrides: further field changes applied last (``None`` values are ignored).

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    if name not in VARIANTS:
        raise ValueError(f"variant: expected one of {variant_names()}, got {name!r}")
    if base is None:
        from isoclip.training.embedded import DEFAULT_TRAIN
        base = DEFAULT_TRAIN
    cfg = replace(base, **VARIANTS[name].overrides)
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def load_variant(name: str, world: Any = None, base: TrainConfig | None = None, *,
                 progress: bool = False, **overrides: Any) -> Any:
    """The :class:`isoclip.training.embedded.Embedded` (world + trained model) of variant ``name``:
    loaded from the training cache, or trained now and cached.

    Args:
        name: a key of :data:`VARIANTS`.
        world: :class:`isoclip.data.world.config.WorldConfig` (default: the book's world).
        base, overrides: as in :func:`variant_config`.
        progress: tqdm bar while training (off in notebooks: no stderr output).
    """
    from isoclip.training.embedded import DEFAULT_WORLD, embedded_default

    cfg = variant_config(name, base, **overrides)
    return embedded_default(DEFAULT_WORLD if world is None else world, cfg, progress=progress)

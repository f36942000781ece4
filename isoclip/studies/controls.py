"""The random-init control: the same architecture without pretrained weights, same evaluation.

A number measured on a pretrained CLIP says something about *pretraining* only where it
differs from what the same architecture gives with random weights: a random-init ViT-B/32
already orders the bands of a caption set the way the paper's band figure does (its middle
band beats the top and bottom bands on text→text retrieval), because part of that ordering
comes from the architecture and the data, not from what CLIP learned. Every real-model table
can therefore carry a control row or column computed by the *same function* on
``load_model(<same name>, pretrained=None)``:

* :func:`random_init_bundle` loads the control of a model (by name, or of a loaded
  :class:`~isoclip.models.loading.ModelBundle`, which also covers the embedded model: its
  tiny config with fresh weights);
* :func:`with_random_init_control` runs one evaluation function on both;
* :func:`control_comparison` puts a metric of the two side by side with their difference.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import pandas as pd
import torch

from isoclip.models.loading import ModelBundle, load_model

__all__ = ["RANDOM_INIT", "control_comparison", "random_init_bundle", "weights_label",
           "with_random_init_control"]

T = TypeVar("T")

#: Label of the control in tables and in :func:`with_random_init_control`'s result.
RANDOM_INIT = "random init"


def weights_label(bundle: ModelBundle) -> str:
    """``"<pretrained tag>"``, ``"checkpoint <file name>"`` or :data:`RANDOM_INIT`."""
    if bundle.pretrained is None:
        return RANDOM_INIT
    tag = str(bundle.pretrained)
    if "/" in tag or os.sep in tag or Path(tag).suffix in {".pt", ".pth", ".bin", ".safetensors"}:
        return f"checkpoint {Path(tag).name}"
    return tag


def random_init_bundle(model: str | ModelBundle, *, seed: int = 0,
                       device: str | torch.device | None = None) -> ModelBundle:
    """The same architecture with ``pretrained=None`` (weights drawn with ``seed``).

    Args:
        model: an open_clip / isoclip config name, or a loaded bundle (its ``name`` and, unless
            ``device`` is given, its device).
        seed: seed of the random initialisation (:func:`isoclip.models.loading.load_model`).
        device: where to load it (None: the bundle's device, else CPU).
    """
    if isinstance(model, ModelBundle):
        name, dev = model.name, device if device is not None else model.device
    elif isinstance(model, str):
        name, dev = model, device if device is not None else "cpu"
    else:
        raise TypeError(f"model: expected a model name or a ModelBundle, got "
                        f"{type(model).__name__}")
    return load_model(name, None, seed=seed, device=dev)


def with_random_init_control(bundle: ModelBundle, evaluate: Callable[[ModelBundle], T], *,
                             seed: int = 0) -> dict[str, T]:
    """``evaluate`` on ``bundle`` and on its random-init control.

    Args:
        bundle: the model under study (pretrained, or already random init: then the control
            is a second random draw only if its seed differs).
        evaluate: any function of a bundle (a chapter's study function, a metric).
        seed: seed of the control's weights.

    Returns:
        ``{weights_label(bundle): evaluate(bundle), "random init": evaluate(control)}``; a
        random-init ``bundle`` is keyed ``"random init (as given)"``.
    """
    control = random_init_bundle(bundle, seed=seed)
    label = weights_label(bundle)
    if label == RANDOM_INIT:
        label = f"{RANDOM_INIT} (as given)"
    return {label: evaluate(bundle), RANDOM_INIT: evaluate(control)}


def control_comparison(results: Mapping[str, pd.DataFrame], on: Sequence[str],
                       value: str) -> pd.DataFrame:
    """One metric of the model and of its control side by side.

    Args:
        results: :func:`with_random_init_control` output whose values are tables with the
            key columns ``on`` and the metric column ``value``; exactly one key is
            :data:`RANDOM_INIT`.
        on: columns identifying a row (e.g. ``["dataset", "method"]``).
        value: the metric column (e.g. ``"mAP"``).

    Returns:
        Columns ``on``, one column per weights label (the model first, then ``"random
        init"``) and ``"pretrained − random init"``.

    Raises:
        ValueError: no (or more than one other) entry besides :data:`RANDOM_INIT`, or missing
            columns.
    """
    others = [k for k in results if k != RANDOM_INIT]
    if RANDOM_INIT not in results or len(others) != 1:
        raise ValueError(f"results: expected one model and {RANDOM_INIT!r}, got {list(results)}")
    model = others[0]
    for k, df in results.items():
        missing = [c for c in [*on, value] if c not in df.columns]
        if missing:
            raise ValueError(f"results[{k!r}]: missing columns {missing}")
    a = results[model][[*on, value]].rename(columns={value: model})
    b = results[RANDOM_INIT][[*on, value]].rename(columns={value: RANDOM_INIT})
    out = a.merge(b, on=list(on), how="outer", sort=False)
    out[f"pretrained − {RANDOM_INIT}"] = out[model] - out[RANDOM_INIT]
    return out

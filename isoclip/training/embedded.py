"""The embedded default: the synthetic world plus the tiny model trained on it.

Every chapter of the book starts from :func:`embedded_default` with its notebook parameters;
the defaults here are what CI builds. Training is cached (see :mod:`isoclip.training.trainer`), so all
chapters share one trained model per parameter set.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from isoclip.data.registry import RetrievalData
from isoclip.data.world.config import WorldConfig
from isoclip.data.world.synthetic import SyntheticWorld, make_world
from isoclip.training.trainer import TrainConfig, TrainedModel, load_or_train

#: Training configuration of the book's default model.
DEFAULT_TRAIN = TrainConfig(model="isoclip-tiny-vit", steps=800, batch_size=256, lr=1e-3,
                            weight_decay=0.1, warmup_frac=0.1, temperature=None, seed=0)

#: The book's default world.
DEFAULT_WORLD = WorldConfig()


@dataclass
class Embedded:
    """The synthetic world and the model trained on its train split."""

    world: SyntheticWorld
    trained: TrainedModel

    @property
    def bundle(self):  # noqa: ANN201 - ModelBundle, kept import-light
        return self.trained.bundle


def train_config(**overrides: Any) -> TrainConfig:
    """``DEFAULT_TRAIN`` with notebook-parameter overrides (``None`` values are ignored)."""
    return replace(DEFAULT_TRAIN, **{k: v for k, v in overrides.items() if v is not None})


def world_config(**overrides: Any) -> WorldConfig:
    """``DEFAULT_WORLD`` with overrides (``None`` values are ignored)."""
    return replace(DEFAULT_WORLD, **{k: v for k, v in overrides.items() if v is not None})


def embedded_default(world: WorldConfig = DEFAULT_WORLD, train: TrainConfig = DEFAULT_TRAIN,
                     *, progress: bool = True, cache: bool = True) -> Embedded:
    """Generate the world and load (or train and cache) the model trained on it."""
    w = make_world(world)
    trained = load_or_train(w.train, train, progress=progress, cache=cache)
    return Embedded(world=w, trained=trained)


def resolve_model(model: str = "embedded", pretrained: str | None = None, *,
                  device: str = "cpu", world: WorldConfig = DEFAULT_WORLD,
                  train: TrainConfig = DEFAULT_TRAIN, progress: bool = True):  # noqa: ANN201
    """The model a notebook's parameters name: ``"embedded"`` = our trained tiny model,
    anything else = :func:`isoclip.models.loading.load_model` (real path, same code downstream)."""
    from isoclip.models.loading import load_model

    if model == "embedded":
        return embedded_default(world, train, progress=progress).bundle
    return load_model(model, pretrained, device=device)


def resolve_retrieval(dataset: str = "embedded", data_root: Any = None,
                      modality: str = "image", *,
                      world: WorldConfig = DEFAULT_WORLD) -> RetrievalData:
    """The retrieval benchmark a notebook's parameters name, as a
    :class:`isoclip.data.RetrievalData` (query, gallery, ``same_split``, ``gnd``).

    Args:
        dataset: ``"embedded"`` = the synthetic world of the embedded default (image:
            ``world.query`` -> ``world.gallery``; text: ``world.text_query`` ->
            ``world.text_gallery``; never the same split), anything else = a registered dataset
            (:func:`isoclip.data.available_datasets`) read by
            :func:`isoclip.data.load_retrieval_dataset` from its official layout.
        data_root: folder holding the real datasets (ignored for ``"embedded"``).
        modality: ``"image"`` or ``"text"``; a real dataset must be of that modality.
        world: configuration of the synthetic world (``"embedded"`` only).

    Raises:
        ValueError: bad modality, unknown dataset, a dataset of the other modality, or a real
            dataset without ``data_root`` (the message names the expected layout and source).
        isoclip.data.DatasetNotFoundError: the dataset is not (completely) under ``data_root``.
    """
    from isoclip.data.registry import available_datasets, dataset_info, load_retrieval_dataset

    if modality not in ("image", "text"):
        raise ValueError(f"modality must be 'image' or 'text', got {modality!r}")
    if dataset == "embedded":
        w = make_world(world)
        q, g = (w.query, w.gallery) if modality == "image" else (w.text_query, w.text_gallery)
        return RetrievalData(name="embedded", query=q, gallery=g, same_split=False,
                             query_split="query" if modality == "image" else "text_query",
                             gallery_split="gallery" if modality == "image" else "text_gallery",
                             folder=Path("."))
    info = dataset_info(dataset)
    if info.modality != modality:
        others = [i.name for i in available_datasets(modality)]  # type: ignore[arg-type]
        raise ValueError(f"dataset {dataset!r} is for {info.modality} retrieval, but this "
                         f"needs {modality} retrieval; {modality} sets: {', '.join(others)}")
    if data_root is None or str(data_root).strip() == "":
        raise ValueError(
            f"dataset {dataset!r} needs data_root: the folder that holds the datasets (the "
            f"official --dataroot), with this layout under it:\n{info.describe_layout()}\n"
            f"Official data: {info.source}\n"
            "Pass data_root (notebook parameter, `--set data_root=DIR`, or "
            "`make reproduce DATA_ROOT=DIR`), or use dataset='embedded'.")
    return load_retrieval_dataset(dataset, data_root)


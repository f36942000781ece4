"""The embedded default: the synthetic world plus the tiny model trained on it, and the second
embedded model, trained on emoji images and their names (:mod:`isoclip.data.emoji`).

Every chapter of the book starts from :func:`embedded_default` with its notebook parameters;
the defaults here are what CI builds. Training is cached (see :mod:`isoclip.training.trainer`), so all
chapters share one trained model per parameter set. :func:`embedded_emoji` is the emoji
model; :func:`model_for_set` says which embedded model evaluates a registered set.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from isoclip.common.types import check_modality
from isoclip.data.emoji import EmojiConfig, EmojiData, load_emoji
from isoclip.data.registry import RetrievalData
from isoclip.data.world.config import WorldConfig
from isoclip.data.world.synthetic import SyntheticWorld, make_world
from isoclip.training.trainer import TrainConfig, TrainedModel, load_or_train

if TYPE_CHECKING:  # the model classes load lazily (resolve_model)
    from isoclip.models.loading import ModelBundle

#: Training configuration of the book's default model.
DEFAULT_TRAIN = TrainConfig(model="isoclip-tiny-vit", steps=800, batch_size=256, lr=1e-3,
                            weight_decay=0.1, warmup_frac=0.1, temperature=None, seed=0)

#: The book's default world.
DEFAULT_WORLD = WorldConfig()

#: The emoji data of the second embedded model (Noto images, 8 augmented renderings and
#: captions per emoji: 14,960 training pairs for the 1,870 emoji of version 16.0.0).
DEFAULT_EMOJI = EmojiConfig()

#: Training configuration of the emoji model: the default model's tiny ViT and recipe,
#: 1000 steps of 256 pairs (17 epochs), one torch thread.
EMOJI_TRAIN = TrainConfig(model="isoclip-tiny-vit", steps=1000, batch_size=256, lr=1e-3,
                          weight_decay=0.1, warmup_frac=0.1, temperature=None, seed=0)


@dataclass
class Embedded:
    """The synthetic world and the model trained on its train split."""

    world: SyntheticWorld
    trained: TrainedModel

    @property
    def bundle(self) -> ModelBundle:
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


@dataclass
class EmbeddedEmoji:
    """The emoji data and the model trained on its training renderings."""

    data: EmojiData
    trained: TrainedModel

    @property
    def bundle(self) -> ModelBundle:
        return self.trained.bundle


def embedded_emoji(emoji: EmojiConfig = DEFAULT_EMOJI, train: TrainConfig = EMOJI_TRAIN, *,
                   progress: bool = True, cache: bool = True) -> EmbeddedEmoji:
    """Render the emoji data and load (or train and cache) the model trained on it.

    Raises:
        isoclip.data.emoji.EmojiDataNotFoundError: the npm package is not fetched
            (``make emoji-data``).
    """
    data = load_emoji(emoji)
    trained = load_or_train(data.train, train, progress=progress, cache=cache)
    return EmbeddedEmoji(data=data, trained=trained)


#: The embedded model of each family of registered sets: ``"embedded"`` (the synthetic world's
#: model) and ``"embedded-emoji"``.
EMBEDDED_MODELS = {"synthetic": "embedded", "emoji": "embedded-emoji"}


def model_for_set(name: str, model: str = "embedded") -> str:
    """The model that evaluates set ``name`` when a chapter's parameter is ``model``: with
    ``"embedded"``, each embedded family's own model (emoji sets: ``"embedded-emoji"``);
    any other model (a real CLIP) evaluates every set."""
    if model != "embedded":
        return model
    family = name.split("/", 1)[0] if "/" in name else "synthetic"
    return EMBEDDED_MODELS.get(family, "embedded")


def resolve_model(model: str = "embedded", pretrained: str | None = None, *,
                  device: str = "cpu", world: WorldConfig = DEFAULT_WORLD,
                  train: TrainConfig = DEFAULT_TRAIN, emoji: EmojiConfig = DEFAULT_EMOJI,
                  emoji_train: TrainConfig = EMOJI_TRAIN, progress: bool = True) -> ModelBundle:
    """The model a notebook's parameters name: ``"embedded"`` = our trained tiny model
    (``world``, ``train``), ``"embedded-emoji"`` = the emoji model (:func:`embedded_emoji` of
    ``emoji``, ``emoji_train``), anything else = :func:`isoclip.models.loading.load_model`
    (real path, same code downstream)."""
    from isoclip.models.loading import load_model

    if model == "embedded":
        return embedded_default(world, train, progress=progress).bundle
    if model == "embedded-emoji":
        return embedded_emoji(emoji, emoji_train, progress=progress).bundle
    return load_model(model, pretrained, device=device)


def resolve_retrieval(dataset: str = "embedded", data_root: Any = None,
                      modality: str = "image", *,
                      world: WorldConfig = DEFAULT_WORLD) -> RetrievalData:
    """The retrieval benchmark a notebook's parameters name, as a
    :class:`isoclip.data.RetrievalData` (query, gallery, ``same_split``, ``gnd``).

    Args:
        dataset: ``"embedded"`` = the synthetic world of the embedded default (image:
            ``world.query`` -> ``world.gallery``; text: ``world.text_query`` ->
            ``world.text_gallery``; never the same split; the set ``synthetic/world`` under
            its historical name), anything else = a registered set
            (:func:`isoclip.data.registry.load_dataset`): an embedded set such as
            ``"synthetic/shape=circle"`` or a paper dataset read from its official layout.
        data_root: folder holding the real datasets (ignored for embedded sets).
        modality: ``"image"`` or ``"text"``; a real dataset must be of that modality.
        world: configuration of the synthetic world (synthetic sets only).

    Raises:
        ValueError: bad modality, unknown dataset, a dataset of the other modality, or a real
            dataset without ``data_root`` (the message names the expected layout and source).
        isoclip.data.DatasetNotFoundError: the dataset is not (completely) under ``data_root``.
    """
    from isoclip.data.registry import load_dataset

    check_modality("modality", modality)
    if dataset == "embedded":
        return replace(load_dataset("synthetic/world", modality, world=world),  # type: ignore[arg-type]
                       name="embedded", calibration=None)
    return load_dataset(dataset, modality, data_root, world=world)  # type: ignore[arg-type]

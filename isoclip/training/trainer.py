"""Training tiny CLIP models from scratch on CPU (the embedded default) and its variants.

The default loss is CLIP's symmetric InfoNCE (Radford et al. 2021; IsoCLIP's
L_CLIP = ½(L_i→t + L_t→i); book notation page, eq-clip-loss) with a learned temperature (open_clip's
``logit_scale``, initialised at log(1/0.07) and clamped at log 100) or a fixed one.
The training-time fixes of the modality gap are variants of the same trainer
(:class:`TrainConfig` ``architecture`` / ``loss``; named presets in :mod:`isoclip.training.variants`):

- ``architecture="shared"``: AlignCLIP's SharedCLIP (:func:`isoclip.models.loading.share_towers`);
- ``loss="imsep"``: AlignCLIP's CLIP + intra-modality separation
  (:func:`isoclip.baselines.losses.imsep_loss`) with semantic distances from what each caption
  mentions (:func:`isoclip.data.world.synthetic.caption_attributes`);
- ``loss="atp_cu"``: ModGap's CLIP + α(t)·L_ATP + β(t)·L_CU (:func:`isoclip.baselines.losses.atp_cu_loss`).

AdamW, linear warmup then cosine decay,
weight decay on matrices only (open_clip's convention). Training stops by step count, never
by wall time, so the same parameters give the same model.

Trained models are cached under ``$ISOCLIP_CACHE/checkpoints`` keyed by everything that
changes them (model config, data fingerprint, training config, code version); see
:mod:`isoclip.common.cache`.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import numpy as np
import open_clip
import pandas as pd
import torch
from tqdm.auto import tqdm

from isoclip.baselines.losses import IMSEP_MODALITIES, atp_cu_loss, clip_loss, imsep_loss
from isoclip.common.cache import cached, entry_key, stable_hash
from isoclip.data.base import ImageDataset
from isoclip.data.world.stream import TrainStream
from isoclip.models.loading import (
    ModelBundle,
    OpenClipModel,
    expected_random_init,
    load_model,
    register_configs,
    share_towers,
)

#: Bump when a change of this module changes trained weights.
TRAIN_CODE_VERSION = 1

#: Values of :attr:`TrainConfig.architecture` and :attr:`TrainConfig.loss`.
ARCHITECTURES = ("clip", "shared")
LOSSES = ("clip", "imsep", "atp_cu")
#: Sources of IMSep's semantic features (:attr:`TrainConfig.imsep_semantics`).
IMSEP_SEMANTICS = ("attributes",)
#: Values of :attr:`TrainConfig.data`.
DATA_MODES = ("fixed", "stream")

#: Fields added for the variants. Left out of the cache key when at their defaults, so the
#: default model (and every model trained before they existed) keeps its key and weights.
VARIANT_FIELDS = ("architecture", "loss", "imsep_alpha", "imsep_beta", "imsep_modalities",
                  "imsep_semantics", "data")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained tiny model (besides the data).

    Attributes:
        model: open_clip config name (an isoclip tiny config by default).
        steps: optimisation steps (the only stopping rule).
        batch_size: pairs per step.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay, applied to ≥2-D weights only.
        warmup_frac: fraction of ``steps`` with linear warmup; cosine decay afterwards.
        temperature: None = learned τ (open_clip ``logit_scale``); a float = τ fixed.
        init_temperature: initial τ when learned.
        seed: seed of initialisation and batch sampling.
        log_every: steps between log rows.
        checkpoint_fracs: fractions of training at which full weights are kept
            (0.0 = initialisation, 1.0 = final), for the spectrum-over-training figures.
        architecture: ``"clip"`` (two towers) or ``"shared"`` (AlignCLIP's SharedCLIP: one
            transformer, final LayerNorm and projection for both modalities; needs a config
            with equal tower shapes, e.g. ``"isoclip-tiny-vit-w96"``).
        loss: ``"clip"`` (symmetric InfoNCE), ``"imsep"`` (AlignCLIP, α·CLIP without ½ +
            β·IMSep) or ``"atp_cu"`` (ModGap: CLIP + α(t) L_ATP + β(t) L_CU; the released
            run fixes ``temperature=0.1``).
        imsep_alpha, imsep_beta: AlignCLIP's α (CLIP term) and β (IMSep term).
        imsep_modalities: ``"image"``, ``"text"`` or ``"both"``: which intra-modal
            similarities IMSep separates (AlignCLIP's paper separates images; its README command
            sets both ``--separate_image`` and ``--separate_text``).
        imsep_semantics: source of the semantic features; ``"attributes"`` = the shapes and
            colours each caption mentions (:func:`isoclip.data.world.synthetic.caption_attributes`).
        data: ``"fixed"`` (default): batches are drawn from one fixed dataset, reshuffled
            every epoch; ``"stream"``: step ``b`` trains on batch ``b`` of a
            :class:`isoclip.data.world.stream.TrainStream` (fresh pairs every step, so the
            distinct pairs seen are ``steps · batch_size``).
    """

    model: str = "isoclip-tiny-vit"
    steps: int = 1000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_frac: float = 0.1
    temperature: float | None = None
    init_temperature: float = 0.07
    seed: int = 0
    log_every: int = 10
    checkpoint_fracs: tuple[float, ...] = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0)
    architecture: str = "clip"
    loss: str = "clip"
    imsep_alpha: float = 1.0
    imsep_beta: float = 0.5
    imsep_modalities: str = "image"
    imsep_semantics: str = "attributes"
    data: str = "fixed"

    def __post_init__(self) -> None:
        _check_field_types(self)
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture: expected one of {ARCHITECTURES}, got "
                             f"{self.architecture!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss: expected one of {LOSSES}, got {self.loss!r}")
        if self.imsep_modalities not in IMSEP_MODALITIES:
            raise ValueError(f"imsep_modalities: expected one of {IMSEP_MODALITIES}, got "
                             f"{self.imsep_modalities!r}")
        if self.data not in DATA_MODES:
            raise ValueError(f"data: expected one of {DATA_MODES}, got {self.data!r}")
        if self.imsep_semantics not in IMSEP_SEMANTICS:
            raise ValueError(f"imsep_semantics: expected one of {IMSEP_SEMANTICS}, got "
                             f"{self.imsep_semantics!r}")
        for name in ("imsep_alpha", "imsep_beta"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: expected a float >= 0, got {getattr(self, name)}")
        if self.steps < 1:
            raise ValueError(f"steps: expected a positive int, got {self.steps}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size: expected ≥ 2 (contrastive loss), got {self.batch_size}")
        if self.temperature is not None and not self.temperature > 0:
            raise ValueError(f"temperature: expected None (learned) or > 0, got {self.temperature}")
        if not 0 <= self.warmup_frac < 1:
            raise ValueError(f"warmup_frac: expected in [0, 1), got {self.warmup_frac}")
        # a list (e.g. from JSON) becomes the tuple of the default; the cache key is unchanged
        object.__setattr__(self, "checkpoint_fracs",
                           tuple(float(f) for f in self.checkpoint_fracs))
        if any(not 0 <= f <= 1 for f in self.checkpoint_fracs):
            raise ValueError(
                f"checkpoint_fracs: expected values in [0, 1], got {self.checkpoint_fracs}")

    def checkpoint_steps(self) -> list[int]:
        return sorted({round(f * self.steps) for f in self.checkpoint_fracs})

    def key_dict(self) -> dict[str, Any]:
        """The fields that enter the cache key: all, except :data:`VARIANT_FIELDS` at their
        defaults (so adding those fields changed no existing key)."""
        d = asdict(self)
        for name in VARIANT_FIELDS:
            if d[name] == _FIELD_DEFAULTS[name]:
                del d[name]
        return d


_FIELD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}

def _is_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: object) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _is_reals(v: object) -> bool:
    return (isinstance(v, Iterable) and not isinstance(v, (str, bytes))
            and all(_is_real(f) for f in v))


#: Annotation of a TrainConfig field -> (check, what is expected). A field of a new type must
#: be added here (constructing any TrainConfig fails until it is).
_FIELD_TYPES = {
    "int": (_is_int, "an int"),
    "float": (_is_real, "a float"),
    "str": (lambda v: isinstance(v, str), "a str"),
    "float | None": (lambda v: v is None or _is_real(v), "None or a float"),
    "tuple[float, ...]": (_is_reals, "a sequence of floats"),
}


def _check_field_types(cfg: TrainConfig) -> None:
    """TypeError naming the first field of the wrong type (ints are accepted for floats; the
    values are kept as given, so the cache key of an existing configuration is unchanged)."""
    for f in dataclasses.fields(cfg):
        check, expected = _FIELD_TYPES[str(f.type)]
        v = getattr(cfg, f.name)
        if not check(v):
            raise TypeError(f"TrainConfig.{f.name}: expected {expected}, got "
                            f"{type(v).__name__} {v!r}")


def create_model(cfg: TrainConfig, seed: int | None = None) -> ModelBundle:
    """The untrained model of ``cfg`` (towers shared for ``architecture="shared"``)."""
    bundle = load_model(cfg.model, pretrained=None, seed=cfg.seed if seed is None else seed)
    if cfg.architecture == "shared":
        share_towers(bundle.model)
    return bundle


@dataclass
class TrainedModel:
    """A trained model with its history.

    Attributes:
        bundle: the final model (eval mode) with preprocess, tokenizer and a fingerprint equal
            to the training cache key.
        config: the training configuration.
        log: one row per ``log_every`` steps: step, loss, temperature, lr.
        checkpoints: step -> state_dict of the full model at that step.
        train_seconds: wall time of the training run that produced the cache entry.
        key: the cache key: the entry is ``checkpoints/<key>.pt`` under the cache root.
    """

    bundle: ModelBundle
    config: TrainConfig
    log: pd.DataFrame
    checkpoints: dict[int, dict[str, torch.Tensor]] = field(repr=False)
    train_seconds: float
    key: str

    def model_at(self, step: int) -> OpenClipModel:
        """A fresh copy of the model with the weights saved at ``step`` (eval mode)."""
        if step not in self.checkpoints:
            raise KeyError(
                f"step {step}: no checkpoint; saved steps are {sorted(self.checkpoints)}")
        with expected_random_init():
            model = open_clip.create_model(self.config.model, pretrained=None)
        if self.config.architecture == "shared":
            share_towers(model)
        model.load_state_dict(self.checkpoints[step])
        return model.eval()


def image_tensor(images: np.ndarray, mean: tuple[float, ...],
                 std: tuple[float, ...]) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> normalised float32 [N, 3, H, W].

    Equals the model's ``preprocess`` (ToTensor + Normalize) for images already at the model's
    resolution (tested), without the PIL round trip.
    """
    x = torch.from_numpy(np.array(images, dtype=np.uint8, copy=True))
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


def dataset_tensor(bundle: ModelBundle, dataset: ImageDataset) -> torch.Tensor:
    """All images of ``dataset`` as the model's input tensor [N, 3, H, W]."""
    pcfg = bundle.model.visual.preprocess_cfg
    if isinstance(dataset.images, np.ndarray) and dataset.images.shape[1] == bundle.image_size \
            and dataset.images.shape[2] == bundle.image_size:
        return image_tensor(dataset.images, tuple(pcfg["mean"]), tuple(pcfg["std"]))
    return torch.stack([bundle.preprocess(dataset.image(i)) for i in range(len(dataset))])


def semantic_features(dataset: ImageDataset, cfg: TrainConfig) -> torch.Tensor:
    """IMSep's semantic features s [N, k] of the dataset's captions (``cfg.imsep_semantics``).

    ``"attributes"``: the multi-hot of the shapes and colours each caption mentions
    (:func:`isoclip.data.world.synthetic.caption_attributes`), so D = 1 − ŝŝᵀ is 0 for two captions
    of the same class, 1 − 1/√2 ≈ 0.29 between a full and a partial caption that agree, 0.5
    for classes sharing one attribute and 1 for classes sharing none. AlignCLIP embeds the
    captions with SBERT instead; here the generator's own structure is exact, offline and
    needs no extra model (a sentence embedder would mostly measure template wording, which
    carries no meaning in this world).
    """
    from isoclip.data.world.synthetic import caption_attributes

    if dataset.captions is None:
        raise ValueError(f"dataset {dataset.name!r}: IMSep needs captions")
    if dataset.several_captions:
        raise ValueError(f"dataset {dataset.name!r}: IMSep's caption attributes need one "
                         "caption per image")
    return torch.from_numpy(caption_attributes(cast("list[str]", list(dataset.captions))))


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup over ``warmup_frac·steps`` then cosine decay to 0 (step is 0-based)."""
    warm = max(1, int(cfg.warmup_frac * cfg.steps))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = (step - warm) / max(1, cfg.steps - warm)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * progress))


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay: list[torch.nn.Parameter]
    no_decay: list[torch.nn.Parameter]
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "logit_scale" in n or "embedding" in n or "token" in n
         else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def _check_data(dataset: ImageDataset | TrainStream, cfg: TrainConfig) -> None:
    want = TrainStream if cfg.data == "stream" else ImageDataset
    if not isinstance(dataset, want):
        raise TypeError(f"dataset: TrainConfig(data={cfg.data!r}) trains on a "
                        f"{want.__name__}, got {type(dataset).__name__}")


def _stream_batch(bundle: ModelBundle, stream: TrainStream, step: int, cfg: TrainConfig
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Images [B, 3, H, W], tokens [B, L] and IMSep semantics (or None) of stream batch
    ``step``."""
    batch = stream.batch(step, cfg.batch_size)
    sem = semantic_features(batch, cfg) if cfg.loss == "imsep" else None
    captions = cast("list[str]", batch.captions)  # a stream batch: one caption per image
    return dataset_tensor(bundle, batch), bundle.tokenizer(list(captions)), sem


def _caption_tokens(bundle: ModelBundle, dataset: ImageDataset
                    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Tokens of every caption; with several captions per image also each image's first
    row in them (``offsets`` [N]) and its number of captions (``counts`` [N]), else None."""
    caps = list(dataset.captions or [])
    if not dataset.several_captions:
        return bundle.tokenizer(cast("list[str]", caps)), None, None
    groups = [[c] if isinstance(c, str) else list(c) for c in caps]
    counts = torch.tensor([len(g) for g in groups], dtype=torch.long)
    offsets = torch.cumsum(counts, 0) - counts
    return bundle.tokenizer([c for g in groups for c in g]), offsets, counts


def train_clip(dataset: ImageDataset | TrainStream, cfg: TrainConfig = TrainConfig(),
               progress: bool = True) -> dict[str, Any]:
    """Train a model of config ``cfg.model`` from scratch on ``dataset`` (images + captions):
    a fixed :class:`~isoclip.data.base.ImageDataset` (``cfg.data == "fixed"``) or a
    :class:`~isoclip.data.world.stream.TrainStream` (``cfg.data == "stream"``).

    Returns the cache payload: ``{"state_dict", "checkpoints", "log", "train_seconds"}``.

    Raises:
        TypeError: ``dataset`` is not of the kind ``cfg.data`` asks for.
    """
    _check_data(dataset, cfg)
    if isinstance(dataset, TrainStream):  # cfg.data == "stream" (checked)
        return _train_loop(dataset, cfg, progress)
    if dataset.captions is None:
        raise ValueError(f"dataset {dataset.name!r}: training needs captions (captions=None)")
    if len(dataset) < cfg.batch_size:
        raise ValueError(
            f"dataset {dataset.name!r}: {len(dataset)} pairs < batch_size={cfg.batch_size}")
    return _train_loop(dataset, cfg, progress)


def _train_loop(dataset: ImageDataset | TrainStream, cfg: TrainConfig, progress: bool
                ) -> dict[str, Any]:
    bundle = create_model(cfg)
    model = bundle.model.train()
    stream = dataset if isinstance(dataset, TrainStream) else None
    fixed = None if isinstance(dataset, TrainStream) else dataset
    if fixed is not None:
        images = dataset_tensor(bundle, fixed)
        tokens, offsets, counts = _caption_tokens(bundle, fixed)
        # several captions per image: one drawn per image and step from its own stream, so
        # the batches (and single-caption trainings) are unchanged
        cap_gen = torch.Generator().manual_seed(cfg.seed + 1) if counts is not None else None
        sem = semantic_features(fixed, cfg) if cfg.loss == "imsep" else None
    if cfg.temperature is None:
        model.logit_scale.data.fill_(math.log(1.0 / cfg.init_temperature))
    else:
        model.logit_scale.data.fill_(math.log(1.0 / cfg.temperature))
        model.logit_scale.requires_grad_(False)
    opt = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr,
                            betas=(0.9, 0.98), eps=1e-6)
    gen = torch.Generator().manual_seed(cfg.seed)
    save_at = set(cfg.checkpoint_steps())
    checkpoints: dict[int, dict[str, torch.Tensor]] = {}
    rows: list[dict[str, float]] = []
    n = len(fixed) if fixed is not None else 0
    perm = torch.randperm(n, generator=gen) if stream is None else torch.empty(0)
    pos = 0
    t0 = time.perf_counter()
    for step in tqdm(range(cfg.steps), disable=not progress, desc=f"train {cfg.model}"):
        if step in save_at:
            checkpoints[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if stream is not None:  # fresh pairs: batch `step` of the stream
            x, t, s_b = _stream_batch(bundle, stream, step, cfg)
        else:
            if pos + cfg.batch_size > n:  # epoch boundary: reshuffle, drop the remainder
                perm = torch.randperm(n, generator=gen)
                pos = 0
            idx = perm[pos:pos + cfg.batch_size]
            pos += cfg.batch_size
            if counts is None or offsets is None:  # both None or neither
                x, t = images[idx], tokens[idx]
            else:
                pick = offsets[idx] + (torch.rand(len(idx), generator=cap_gen)
                                       * counts[idx]).long()
                x, t = images[idx], tokens[pick]
            s_b = None if sem is None else sem[idx]
        lr = lr_at(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        img = model.encode_image(x)
        txt = model.encode_text(t)
        parts: dict[str, torch.Tensor] = {}
        if cfg.loss == "clip":
            loss = clip_loss(img, txt, model.logit_scale.exp())
        elif cfg.loss == "imsep":
            s_b = cast(torch.Tensor, s_b)  # the semantics are computed for cfg.loss "imsep"
            parts = imsep_loss(img, txt, s_b, model.logit_scale.exp(),
                               alpha=cfg.imsep_alpha, beta=cfg.imsep_beta,
                               modalities=cfg.imsep_modalities)  # type: ignore[arg-type]
            loss = parts.pop("total")
        else:
            parts = atp_cu_loss(img, txt, model.logit_scale.exp(), step, cfg.steps)
            loss = parts.pop("total")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            rows.append({"step": step, "loss": loss.item(),
                         "temperature": float(1.0 / model.logit_scale.detach().exp()), "lr": lr,
                         **{k: float(v.detach()) for k, v in parts.items()}})
    seconds = time.perf_counter() - t0
    model.eval()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if cfg.steps in save_at:
        checkpoints[cfg.steps] = state
    return {"state_dict": state, "checkpoints": checkpoints, "log": rows,
            "train_seconds": seconds}


def train_key_material(dataset: ImageDataset | TrainStream, cfg: TrainConfig
                       ) -> dict[str, Any]:
    """Everything that changes the trained weights (the cache key material)."""
    _check_data(dataset, cfg)
    register_configs()
    return {
        "what": "tiny-clip",
        "train_code": TRAIN_CODE_VERSION,
        "train_config": cfg.key_dict(),
        "model_config": open_clip.get_model_config(cfg.model),
        "data": dataset.fingerprint(),
        "torch": torch.__version__.split("+")[0],
        "open_clip": open_clip.__version__,
    }


#: Environment variable: ``"1"`` = load trained models only, never train (set by the notebook
#: runner: the book's models are trained beforehand by ``make models``, see
#: :mod:`isoclip.studies.manifest`).
MODELS_ONLY_ENV = "ISOCLIP_MODELS_ONLY"


class ModelNotTrainedError(RuntimeError):
    """A model is not in the training cache and training is switched off
    (:data:`MODELS_ONLY_ENV`)."""


def _refuse_training(dataset: ImageDataset | TrainStream, cfg: TrainConfig, key: str) -> None:
    changed = ", ".join(f"{k}={v!r}" for k, v in asdict(cfg).items()
                        if v != _FIELD_DEFAULTS[k])
    raise ModelNotTrainedError(
        f"no trained model in the cache for TrainConfig({changed}) on data {dataset.name!r} "
        f"(key {key[:12]}), and {MODELS_ONLY_ENV}=1 forbids training here (the notebook runner "
        "sets it). If it is one of the book's models, run `make models`; otherwise declare it "
        "in isoclip.studies.manifest.MODELS and run `make models`, or run the notebooks with "
        "`python -m isoclip.notebooks --train-missing`.")


def load_or_train(dataset: ImageDataset | TrainStream, cfg: TrainConfig = TrainConfig(), *,
                  cache: bool = True, progress: bool = True) -> TrainedModel:
    """The model trained on ``dataset`` with ``cfg``: from the cache when present and intact,
    else trained now and cached (atomically).

    Raises:
        ModelNotTrainedError: it is not cached (or ``cache=False``) and the environment
            variable :data:`MODELS_ONLY_ENV` is ``"1"``.
    """
    material = train_key_material(dataset, cfg)

    def build() -> dict[str, Any]:
        if os.environ.get(MODELS_ONLY_ENV) == "1":
            _refuse_training(dataset, cfg, entry_key(material))
        return train_clip(dataset, cfg, progress)

    payload = cached("checkpoints", material, build, enabled=cache)
    bundle = create_model(cfg)
    bundle.model.load_state_dict(payload["state_dict"])
    bundle.model.eval()
    # the model's identity in feature-cache keys (older than entry_key): unchanged, so cached
    # features stay valid
    identity = stable_hash(material)
    bundle.pretrained = f"isoclip-trained:{identity[:12]}"
    bundle.fingerprint = stable_hash({"trained": identity})
    return TrainedModel(bundle=bundle, config=cfg, log=pd.DataFrame(payload["log"]),
                        checkpoints=payload["checkpoints"],
                        train_seconds=float(payload["train_seconds"]),
                        key=entry_key(material))

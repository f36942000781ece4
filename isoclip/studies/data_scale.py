"""The regime study's data-scale axis: a fixed training set against a stream of fresh pairs.

Every model of the regime study (:mod:`isoclip.studies.regimes`) trains on one fixed set of
``C · n_train_per_class`` pairs; real CLIP sees hundreds of millions of distinct pairs. Here
the same world and recipe train twice, once on the fixed ``train`` split
(``TrainConfig(data="fixed")``) and once on a stream that renders fresh pairs for every batch
(``TrainConfig(data="stream")``, :class:`isoclip.data.world.stream.TrainStream`). One long run
per configuration keeps full weights at several steps (``TrainConfig.checkpoint_fracs``), and
every kept step is evaluated with the regime study's full diagnostics
(:func:`isoclip.studies.regimes.evaluate_bundle`): the curves are gains and CLIP-likeness
against the number of *distinct* pairs seen (``min(steps · batch, train set size)`` for the
fixed set, ``steps · batch`` for the stream).

A checkpoint inside a run is not the end of a shorter run: the learning rate follows the
long run's cosine schedule and has not decayed at an intermediate step.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, replace
from typing import Any

import pandas as pd

from isoclip.common.cache import stable_hash
from isoclip.data.world.config import WorldConfig
from isoclip.data.world.stream import train_stream
from isoclip.data.world.synthetic import make_world
from isoclip.models.loading import ModelBundle
from isoclip.training.embedded import DEFAULT_TRAIN, DEFAULT_WORLD
from isoclip.training.trainer import TrainConfig, TrainedModel, create_model, load_or_train

__all__ = ["DATA_SCALE_RUNS", "DATA_SCALE_WORLDS", "DATA_SCALE_STEPS", "DATA_SCALE_AT",
           "distinct_pairs", "scale_train_config", "checkpoint_bundle", "run_data_scale",
           "load_data_scale", "data_scale_summary", "data_scale_figure"]

#: Worlds of the axis: the compositional ``rich`` world of the regime study (up to 3 objects,
#: optional attributes captioned with probability 0.5), far from the ceiling at 800 steps.
DATA_SCALE_WORLDS: dict[str, WorldConfig] = {
    "rich": replace(DEFAULT_WORLD, scene="compositional", max_objects=3, mention_prob=0.5),
}


def scale_train_config(data: str, temperature: float | None, steps: int,
                       at: tuple[int, ...]) -> TrainConfig:
    """The default recipe for ``steps`` steps on ``data`` (``"fixed"`` or ``"stream"``),
    keeping weights at the steps ``at`` (each in [1, steps]) and the final step."""
    bad = [s for s in at if not 1 <= s <= steps]
    if bad:
        raise ValueError(f"at: expected steps in [1, {steps}], got {bad}")
    fracs = tuple(sorted({s / steps for s in at} | {1.0}))
    return replace(DEFAULT_TRAIN, data=data, temperature=temperature, steps=steps,
                   checkpoint_fracs=fracs)


#: The runs (name -> (world name, training)): one long run per data mode and temperature
#: keeps the weights at 400 and 800 steps (the book's default length) and ends at 1200 steps
#: (the length that fitted the study's compute budget: 2 shared CPU cores).
DATA_SCALE_STEPS = 1200
DATA_SCALE_AT = (400, 800)
DATA_SCALE_RUNS: dict[str, tuple[str, TrainConfig]] = {
    f"rich-{data}-{tau_name}": ("rich", scale_train_config(data, tau, DATA_SCALE_STEPS,
                                                           DATA_SCALE_AT))
    for tau_name, tau in (("learned", None), ("tau0.01", 0.01)) for data in ("fixed", "stream")
}


def distinct_pairs(train: TrainConfig, world: WorldConfig, step: int) -> int:
    """Distinct training pairs seen after ``step`` steps: ``step · batch_size`` for a
    stream, capped at the train split's size for a fixed set."""
    seen = step * train.batch_size
    if train.data == "stream":
        return seen
    return min(seen, len(world.classes) * world.n_train_per_class)


def checkpoint_bundle(trained: TrainedModel, step: int) -> ModelBundle:
    """The model of ``trained`` with the weights kept at ``step`` (eval mode), with its own
    fingerprint (features extracted from it are cached apart from the final model's); the
    final step returns ``trained.bundle`` itself."""
    if step == trained.config.steps:
        return trained.bundle
    if step not in trained.checkpoints:
        raise KeyError(f"step {step}: no checkpoint; kept steps are {sorted(trained.checkpoints)}")
    bundle = create_model(trained.config)
    bundle.model.load_state_dict(trained.checkpoints[step])
    bundle.model.eval()
    identity = stable_hash({"trained": trained.key, "step": step})
    bundle.pretrained = f"isoclip-trained:{trained.key[:12]}@{step}"
    bundle.fingerprint = identity
    return bundle


def run_data_scale(name: str, *, stride: int = 2, oti: bool = True, progress: bool = False
                   ) -> list[dict[str, Any]]:
    """Train (or load) the run ``name`` of :data:`DATA_SCALE_RUNS` and evaluate every kept
    step with the regime study's diagnostics (:func:`isoclip.studies.regimes.evaluate_bundle`).

    Returns:
        One JSON-ready row per kept step (> 0): ``run``, ``world_name``, ``data``, ``step``,
        ``distinct_pairs``, ``epochs`` (passes over the fixed set; for a stream, the steps'
        pairs over the fixed set's size), ``temperature`` (τ at that step),
        ``world`` / ``train`` (the configurations), ``train_seconds`` (the whole run) and every
        key of the regime study's evaluation.
    """
    from isoclip.studies.regimes import _jsonable, evaluate_bundle

    if name not in DATA_SCALE_RUNS:
        raise ValueError(f"name: expected one of {list(DATA_SCALE_RUNS)}, got {name!r}")
    world_name, cfg = DATA_SCALE_RUNS[name]
    world_cfg = DATA_SCALE_WORLDS[world_name]
    world = make_world(world_cfg)
    data = train_stream(world_cfg) if cfg.data == "stream" else world.train
    trained = load_or_train(data, cfg, progress=progress)
    n_fixed = len(world_cfg.classes) * world_cfg.n_train_per_class
    rows = []
    for step in sorted(s for s in trained.checkpoints if s > 0):
        t0 = time.perf_counter()
        bundle = checkpoint_bundle(trained, step)
        result = evaluate_bundle(bundle, world, stride, oti)
        scale = float(bundle.model.logit_scale.detach())
        rows.append(_jsonable({
            "run": name, "world_name": world_name, "data": cfg.data, "step": step,
            "distinct_pairs": distinct_pairs(cfg, world_cfg, step),
            "epochs": step * cfg.batch_size / n_fixed, "temperature": math.exp(-scale),
            "world": asdict(world_cfg), "train": asdict(cfg),
            "train_seconds": trained.train_seconds, **result,
            "eval_seconds": time.perf_counter() - t0}))
    return rows


def load_data_scale(path: Any) -> tuple[dict[str, str], pd.DataFrame]:
    """Read the data-scale results (``benchmarks/regime_study.py --data-scale``): the regime
    study's table (:func:`isoclip.studies.regimes.load_study`: gains per domain and band)
    with ``steps`` set to the evaluated step, plus ``clip_distance``
    (:func:`isoclip.studies.regimes.clip_likeness`)."""
    from isoclip.studies.regimes import clip_likeness, load_study

    about, rows = load_study(path)
    rows["steps"] = rows["step"].astype(int)
    rows["clip_distance"] = clip_likeness(rows)
    return about, rows


#: Columns of :func:`data_scale_summary`'s curves: result column -> label.
SCALE_GAINS = {"i2i_gain_heldout": "Δ iso, whole world",
               "i2i_in_shape_gain_heldout": "Δ iso, within one shape",
               "i2i_in_shape_gain_centred": "Δ centred, within one shape",
               "oti_in_shape_gain": "Δ OTI, within one shape"}
SCALE_DIAGNOSTICS = {"zero_shot_acc": "zero-shot top-1 (%)", "gap": "modality gap",
                     "cone_image": "image cone", "flatness_mid_ratio": "flatness (mid / ends)"}


def data_scale_summary(rows: pd.DataFrame) -> dict[str, Any]:
    """Numbers the chapter states about the data-scale axis, by name: per data mode the best
    whole-world and within-shape held-out gains (with run, step, CLIP's mAP and the
    diagnostics of that row), and the largest zero-shot accuracy."""
    out: dict[str, Any] = {}
    for data in ("fixed", "stream"):
        sub = rows[rows["data"] == data]
        if sub.empty:
            continue
        zs = sub["zero_shot_acc"].astype(float)
        out[f"{data}_best_zs"] = float(zs.max())
        for dom, name in (("", "whole"), ("in_shape_", "shape")):
            g = sub[f"i2i_{dom}gain_heldout"].astype(float)
            r = sub.loc[g.idxmax()]
            pre = f"{data}_{name}"
            out.update({f"{pre}_gain": float(g.max()), f"{pre}_run": r["run"],
                        f"{pre}_step": int(r["step"]), f"{pre}_clip": float(r[f"i2i_{dom}mAP"]),
                        f"{pre}_band": str(tuple(r[f"i2i_{dom}oracle_band"])),
                        f"{pre}_zs": float(r["zero_shot_acc"]), f"{pre}_gap": float(r["gap"]),
                        f"{pre}_cone": float(r["cone_image"]),
                        f"{pre}_flat": float(r["flatness_mid_ratio"])})
    return out


def data_scale_figure(rows: pd.DataFrame, columns: dict[str, str], *, ncols: int = 2):
    """Small multiples against distinct training pairs seen (log axis): one panel per column
    of ``columns`` (result column -> panel title), one line per run (colour: data mode,
    line style: temperature), a marker per evaluated step."""
    import numpy as np

    from isoclip.studies.plotting import legend_below, page_figure

    n = len(columns)
    nrows = int(np.ceil(n / ncols))
    fig, axes = page_figure(nrows, ncols, sharex=True, aspect=0.42)
    colours = {"fixed": "#4C72B0", "stream": "#DD8452"}
    styles = {"learned": "-", "0.01": "--"}
    for ax, (col, title) in zip(np.ravel(axes), columns.items()):
        for run, sub in rows.sort_values("step").groupby("run", sort=False):
            data, tau = sub["data"].iloc[0], sub["tau"].iloc[0]
            label = f"{data}, {'learned τ' if tau == 'learned' else f'τ = {tau}'}"
            ax.plot(sub["distinct_pairs"].astype(float), sub[col].astype(float),
                    color=colours.get(data, "0.3"), ls=styles.get(tau, ":"), marker="o", ms=4,
                    label=label)
        if "gain" in col:
            ax.axhline(0, color="0.4", lw=0.8)
        ax.set_xscale("log")
        ax.set_title(title)
    for ax in np.ravel(axes)[n:]:
        ax.set_visible(False)
    for ax in np.ravel(axes)[-ncols:]:
        ax.set_xlabel("distinct training pairs seen")
    legend_below(fig, ax=np.ravel(axes)[0], ncol=2)
    return fig

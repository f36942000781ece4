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
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

import pandas as pd

from isoclip.common.cache import stable_hash
from isoclip.data.world.config import WorldConfig
from isoclip.data.world.stream import train_stream
from isoclip.data.world.synthetic import make_world
from isoclip.models.loading import ModelBundle
from isoclip.training.embedded import DEFAULT_TRAIN, DEFAULT_WORLD
from isoclip.training.trainer import TrainConfig, TrainedModel, create_model, load_or_train

if TYPE_CHECKING:  # matplotlib is imported by the figure function only
    from matplotlib.figure import Figure

__all__ = [
    "DATA_SCALE_MIN_STEP",
    "DATA_SCALE_RUNS",
    "DATA_SCALE_STEPS",
    "DATA_SCALE_WORLDS",
    "checkpoint_bundle",
    "data_scale_figure",
    "data_scale_summary",
    "distinct_pairs",
    "kept_steps",
    "load_data_scale",
    "run_data_scale",
    "scale_train_config",
    "study_rows",
]

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


#: The runs (name -> (world name, training)): the book's recipe (800 steps of 256 pairs,
#: weights kept at its default ``checkpoint_fracs``), learned τ and τ = 0.01, on the fixed
#: set and on the stream. The two fixed runs are the regime study's ``rich-learned`` and
#: ``rich-tau0.01`` models (the same configuration, so the same cache entry and weights).
#: 800 steps is what the study's compute budget allowed (2 shared CPU cores, about 3.5 s
#: per step under load); longer schedules are the next step of this axis.
DATA_SCALE_STEPS = 800
DATA_SCALE_RUNS: dict[str, tuple[str, TrainConfig]] = {
    f"rich-{data}-{tau_name}": ("rich", replace(DEFAULT_TRAIN, data=data, temperature=tau,
                                                steps=DATA_SCALE_STEPS))
    for tau_name, tau in (("learned", None), ("tau0.01", 0.01)) for data in ("fixed", "stream")
}
#: Kept steps evaluated (the earlier kept steps, 40 and 80, are still in warm-up).
DATA_SCALE_MIN_STEP = 200


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


def kept_steps(name: str, min_step: int = DATA_SCALE_MIN_STEP) -> list[int]:
    """The kept steps of run ``name`` from ``min_step`` on, last first (the order in which
    :func:`run_data_scale` evaluates them when asked for all)."""
    if name not in DATA_SCALE_RUNS:
        raise ValueError(f"name: expected one of {list(DATA_SCALE_RUNS)}, got {name!r}")
    return sorted((s for s in DATA_SCALE_RUNS[name][1].checkpoint_steps()
                   if s >= max(min_step, 1)), reverse=True)


def run_data_scale(name: str, *, stride: int = 2, oti: bool = True, progress: bool = False,
                   steps: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Train (or load) the run ``name`` of :data:`DATA_SCALE_RUNS` and evaluate its weights at
    ``steps`` (default :func:`kept_steps`) with the regime study's diagnostics
    (:func:`isoclip.studies.regimes.evaluate_bundle`).

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
    for step in (kept_steps(name) if steps is None else list(steps)):
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


def _plain(x: Any) -> Any:
    import json

    return json.loads(json.dumps(x))


def study_rows(study: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of the data-scale table taken from the regime study (``study``:
    :func:`isoclip.studies.regimes.load_study`'s table) for the runs of
    :data:`DATA_SCALE_RUNS` whose configuration is one of its runs (same world and training,
    hence the same model): their final step, with ``source`` = the study run's name."""
    out = []
    for name, (world_name, cfg) in DATA_SCALE_RUNS.items():
        world_cfg = DATA_SCALE_WORLDS[world_name]
        for _, r in study.iterrows():
            if _plain(r["world"]) == _plain(asdict(world_cfg)) and \
                    _plain({k: v for k, v in r["train"].items() if k != "data"}) == \
                    _plain({k: v for k, v in asdict(cfg).items() if k != "data"}) and \
                    r["train"].get("data", "fixed") == cfg.data:
                n_fixed = len(world_cfg.classes) * world_cfg.n_train_per_class
                out.append({**r.to_dict(), "run": name, "source": r["run"],
                            "world_name": world_name, "data": cfg.data, "step": cfg.steps,
                            "distinct_pairs": distinct_pairs(cfg, world_cfg, cfg.steps),
                            "epochs": cfg.steps * cfg.batch_size / n_fixed,
                            "temperature": r["final_temperature"]})
                break
    return out


def load_data_scale(path: Any, study: pd.DataFrame | None = None
                    ) -> tuple[dict[str, str], pd.DataFrame]:
    """Read the data-scale results (``benchmarks/regime_study.py --data-scale``): the regime
    study's table (:func:`isoclip.studies.regimes.load_study`: gains per domain and band)
    with ``steps`` set to the evaluated step, ``source`` (``"data-scale"`` or the regime-study
    run a row comes from, see :func:`study_rows`) and ``clip_distance``
    (:func:`isoclip.studies.regimes.clip_likeness`).

    Args:
        study: the regime study's table; its runs with a configuration of
            :data:`DATA_SCALE_RUNS` add their final step where the file has none.
    """
    from isoclip.studies.regimes import clip_likeness, load_study

    about, rows = load_study(path)
    rows["source"] = "data-scale"
    if study is not None:
        have = set(zip(rows["run"], rows["step"].astype(int)))
        extra = [r for r in study_rows(study) if (r["run"], r["step"]) not in have]
        if extra:
            rows = pd.concat([rows, pd.DataFrame(extra)], ignore_index=True)
    rows["step"] = rows["step"].astype(int)
    rows["steps"] = rows["step"]
    order = {n: i for i, n in enumerate(DATA_SCALE_RUNS)}
    rows = rows.sort_values(["run", "step"], key=lambda c: c.map(order) if c.name == "run"
                            else c).reset_index(drop=True)
    rows["clip_distance"] = clip_likeness(rows)
    return about, rows


#: Columns of :func:`data_scale_summary`'s curves: result column -> label.
SCALE_GAINS = {"i2i_gain_heldout": "Δ iso, whole world",
               "i2i_in_shape_gain_heldout": "Δ iso, within one shape",
               "i2i_in_shape_gain_centred": "Δ centred, within one shape",
               "oti_in_shape_gain": "Δ OTI, within one shape"}
SCALE_DIAGNOSTICS = {"zero_shot_acc": "zero-shot top-1 (%)", "gap": "modality gap",
                     "cone_image": "image cone", "flatness_mid_ratio": "flatness (mid / ends)"}


#: Result columns compared between the fixed set and the stream at the final step.
FINAL_COLUMNS = ("zero_shot_acc", "i2i_mAP", "i2i_gain_heldout", "i2i_in_shape_mAP",
                 "i2i_in_shape_gain_heldout", "i2i_in_shape_gain_centred", "oti_in_shape_gain",
                 "gap", "cone_image", "cone_text", "flatness_mid_ratio", "clip_distance",
                 "temperature", "distinct_pairs", "epochs")


def data_scale_summary(rows: pd.DataFrame, min_gain: float = 1.0) -> dict[str, Any]:
    """Numbers the chapter states about the data-scale axis, by name.

    - ``<data>_best_zs`` and, for ``<dom>`` in ``whole`` / ``shape``, ``<data>_<dom>_gain``
      (best held-out gain over the data mode's rows) with its ``_run``, ``_step``, ``_clip``
      (CLIP's mAP), ``_band`` (oracle band, also as ``_k_top`` / ``_k_bottom`` of ``_rank``
      directions, and ``_top_phrase`` in words) and that row's ``_zs``, ``_gap``, ``_cone``,
      ``_flat``, ``_agree`` (agreement band's gain) and ``_oti`` (OTI's gain);
    - ``<tau>_<data>_<column>`` for ``<tau>`` in ``learned`` / ``tau001`` and every column of
      :data:`FINAL_COLUMNS`, at the run's final step, and ``<tau>_<data>_first_step`` with
      ``_first_zero_shot_acc``, ``_first_i2i_mAP``, ``_first_i2i_in_shape_mAP`` at its first
      evaluated step;
    - ``scale_claim``: whether a stream row gains ``min_gain`` mAP or more over the whole
      world and within one shape, in words.
    """
    out: dict[str, Any] = {}
    for name, (_, cfg) in DATA_SCALE_RUNS.items():
        final = rows[(rows["run"] == name) & (rows["step"] == cfg.steps)]
        if final.empty:
            continue
        tau = "learned" if cfg.temperature is None else f"tau{cfg.temperature:g}".replace(".", "")
        for col in FINAL_COLUMNS:
            out[f"{tau}_{cfg.data}_{col}"] = float(final[col].iloc[0])
        first = rows[rows["run"] == name].sort_values("step").iloc[0]
        out[f"{tau}_{cfg.data}_first_step"] = int(first["step"])
        for col in ("zero_shot_acc", "i2i_mAP", "i2i_in_shape_mAP"):
            out[f"{tau}_{cfg.data}_first_{col}"] = float(first[col])
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
                        f"{pre}_flat": float(r["flatness_mid_ratio"]),
                        f"{pre}_k_top": int(r[f"i2i_{dom}oracle_band"][0]),
                        f"{pre}_k_bottom": int(r[f"i2i_{dom}oracle_band"][1]),
                        f"{pre}_rank": int(r["rank"]),
                        f"{pre}_agree": float(r[f"i2i_{dom}gain_agree"]),
                        f"{pre}_oti": float(r[f"oti_{dom}gain"])})
            out[f"{pre}_top_phrase"] = (
                "removes no top direction: it keeps the strongest directions and drops the "
                "weakest" if out[f"{pre}_k_top"] == 0 else
                f"removes {out[f'{pre}_k_top']} top directions, as the paper's band does")
    if "stream_whole_gain" in out:
        whole, shape = out["stream_whole_gain"], out["stream_shape_gain"]
        out["scale_claim"] = (
            ("no stream row gains" if whole < min_gain else "a stream row gains")
            + f" {min_gain:.0f} mAP or more over the whole world, and "
            + ("none" if shape < min_gain else "at least one") + " within one shape")
    return out


def data_scale_figure(rows: pd.DataFrame, columns: dict[str, str], *, ncols: int = 2
                      ) -> Figure:
    """Small multiples against distinct training pairs seen (log axis): one panel per column
    of ``columns`` (result column -> panel title), one line per run (colour: data mode,
    line style and marker: temperature), a marker per evaluated step."""
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
                    color=colours.get(data, "0.3"), ls=styles.get(tau, ":"),
                    marker="o" if tau == "learned" else "s", ms=5, label=label)
        if "gain" in col:
            ax.axhline(0, color="0.4", lw=0.8)
        ax.set_xscale("log")
        ticks = sorted(rows["distinct_pairs"].astype(float).unique())
        ax.set_xticks(ticks, [f"{t / 1000:.0f}k" for t in ticks])
        ax.minorticks_off()
        ax.set_title(title)
    for ax in np.ravel(axes)[n:]:
        ax.set_visible(False)
    for ax in np.ravel(axes)[-ncols:]:
        ax.set_xlabel("distinct training pairs seen")
    legend_below(fig, ax=np.ravel(axes)[0], ncol=2)
    return fig

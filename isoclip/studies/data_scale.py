"""The regime study's data-scale axis: a fixed training set against a stream of fresh pairs.

Every model of the regime study (:mod:`isoclip.studies.regimes`) trains on one fixed set of
``C · n_train_per_class`` pairs; real CLIP sees hundreds of millions of distinct pairs. Here
the same world and recipe train twice, once on the fixed ``train`` split
(``TrainConfig(data="fixed")``) and once on a stream that renders fresh pairs for every batch
(``TrainConfig(data="stream")``, :class:`isoclip.data.world.stream.TrainStream`), at the book's
800 steps and at longer schedules, each length a run of its own. Every run keeps full weights
at several steps (``TrainConfig.checkpoint_fracs``); the final step (and, where evaluated, the
kept steps) carries the regime study's full diagnostics
(:func:`isoclip.studies.regimes.evaluate_bundle`): the curves are gains and CLIP-likeness
against the number of *distinct* pairs seen (``min(steps · batch, train set size)`` for the
fixed set, ``steps · batch`` for the stream).

A checkpoint inside a run is not the end of a shorter run: the learning rate follows the
run's cosine schedule and has not decayed at an intermediate step; hence one run per length.
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
    "DATA_SCALE_LONG",
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
    "picture_checks",
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


#: The runs (name -> (world name, training)): the book's recipe (batches of 256 pairs, weights
#: kept at its default ``checkpoint_fracs``), learned τ and τ = 0.01, on the fixed set and on
#: the stream. The 800-step runs (the book's length) carry no length in their name; the two
#: fixed ones are the regime study's ``rich-learned`` and ``rich-tau0.01`` models (the same
#: configuration, so the same cache entry and weights). Longer schedules are separate runs
#: named ``<...>-<steps>`` (:data:`DATA_SCALE_LONG`): the cosine schedule depends on the total
#: number of steps, so step 2,000 of a 5,000-step run is not the end of a 2,000-step run.
DATA_SCALE_STEPS = 800
#: The longer runs, in the order they are trained: (data, τ name, steps).
DATA_SCALE_LONG: tuple[tuple[str, str, int], ...] = (
    ("stream", "learned", 2000), ("stream", "learned", 5000),
    ("stream", "tau0.01", 2000), ("stream", "tau0.01", 5000),
    ("fixed", "learned", 2000), ("stream", "learned", 10000),
)
_TAUS: dict[str, float | None] = {"learned": None, "tau0.01": 0.01}


def _run_name(data: str, tau_name: str, steps: int) -> str:
    base = f"rich-{data}-{tau_name}"
    return base if steps == DATA_SCALE_STEPS else f"{base}-{steps}"


DATA_SCALE_RUNS: dict[str, tuple[str, TrainConfig]] = {
    _run_name(data, tau_name, steps): ("rich", replace(DEFAULT_TRAIN, data=data,
                                                       temperature=_TAUS[tau_name], steps=steps))
    for data, tau_name, steps in (
        [(d, t, DATA_SCALE_STEPS) for t in _TAUS for d in ("fixed", "stream")]
        + list(DATA_SCALE_LONG))
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
    with ``steps`` set to the evaluated step, ``length`` (the run's total steps), ``final``
    (``step == length``), ``source`` (``"data-scale"`` or the regime-study
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
    rows["length"] = [int(t["steps"]) for t in rows["train"]]
    rows["final"] = rows["step"] == rows["length"]
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


#: The paper's picture on a row, as thresholds: Ψ's middle decays at most this fraction of
#: the rate of its ends (``flatness_mid_ratio``; the paper's Fig. 2: steep ends, flat middle).
FLAT_MIDDLE = 0.5


def picture_checks(row: pd.Series, min_gain: float = 1.0) -> dict[str, bool]:
    """The paper's picture on one row of :func:`load_data_scale`, within one shape (the
    analogue of a fine-grained dataset), as four checks: ``flat`` (Ψ's middle decays at most
    :data:`FLAT_MIDDLE` times the rate of its ends), ``top_band`` (the within-shape oracle band
    removes top directions, k_top > 0), ``beats_clip`` (the held-out band gains ``min_gain``
    mAP or more over CLIP) and ``beats_centred`` (it beats centring each shape on its own
    gallery mean by ``min_gain`` or more)."""
    iso = float(row["i2i_in_shape_gain_heldout"])
    return {"flat": float(row["flatness_mid_ratio"]) <= FLAT_MIDDLE,
            "top_band": int(row["i2i_in_shape_oracle_band"][0]) > 0,
            "beats_clip": iso >= min_gain,
            "beats_centred": iso - float(row["i2i_in_shape_gain_centred"]) >= min_gain}


def _tau_name(cfg: TrainConfig) -> str:
    return "learned" if cfg.temperature is None else f"tau{cfg.temperature:g}".replace(".", "")


def _best_row_keys(sub: pd.DataFrame, pre: str, dom: str, min_gain: float) -> dict[str, Any]:
    """The keys of :func:`data_scale_summary` for the row of ``sub`` with the best held-out
    gain in domain ``dom`` (``""`` or ``"in_shape_"``), prefixed ``pre``."""
    g = sub[f"i2i_{dom}gain_heldout"].astype(float)
    r = sub.loc[g.idxmax()]
    band = r[f"i2i_{dom}oracle_band"]
    out: dict[str, Any] = {
        f"{pre}_gain": float(g.max()), f"{pre}_run": r["run"], f"{pre}_step": int(r["step"]),
        f"{pre}_length": int(r["length"]), f"{pre}_clip": float(r[f"i2i_{dom}mAP"]),
        f"{pre}_band": str(tuple(band)), f"{pre}_zs": float(r["zero_shot_acc"]),
        f"{pre}_gap": float(r["gap"]), f"{pre}_cone": float(r["cone_image"]),
        f"{pre}_flat": float(r["flatness_mid_ratio"]), f"{pre}_k_top": int(band[0]),
        f"{pre}_k_bottom": int(band[1]), f"{pre}_rank": int(r["rank"]),
        f"{pre}_kept": int(r["rank"]) - int(band[0]) - int(band[1]),
        f"{pre}_agree": float(r[f"i2i_{dom}gain_agree"]),
        f"{pre}_centred": float(r[f"i2i_{dom}gain_centred"]),
        f"{pre}_oti": float(r[f"oti_{dom}gain"]),
        f"{pre}_distinct_pairs": int(r["distinct_pairs"])}
    out[f"{pre}_top_phrase"] = (
        "removes no top direction: it keeps the strongest directions and drops the "
        "weakest" if out[f"{pre}_k_top"] == 0 else
        f"removes {out[f'{pre}_k_top']} top directions, as the paper's band does")
    checks = picture_checks(r, min_gain)
    out[f"{pre}_n_checks"] = sum(checks.values())
    return out


def data_scale_summary(rows: pd.DataFrame, min_gain: float = 1.0) -> dict[str, Any]:
    """Numbers the chapter states about the data-scale axis, by name.

    - ``<data>_best_zs`` and, for ``<dom>`` in ``whole`` / ``shape``, ``<data>_<dom>_gain``
      (best held-out gain over the data mode's rows, any run and kept step) with its
      ``_run``, ``_step``, ``_length`` (the run's total steps), ``_distinct_pairs``,
      ``_clip`` (CLIP's mAP), ``_band`` (oracle band, also as ``_k_top`` / ``_k_bottom`` of
      ``_rank`` directions, ``_kept`` directions kept, and ``_top_phrase`` in words) and that row's ``_zs``, ``_gap``,
      ``_cone``, ``_flat``, ``_agree`` (agreement band's gain), ``_centred`` (centring's
      gain), ``_oti`` (OTI's gain) and ``_n_checks`` (how many of :func:`picture_checks`
      hold);
    - ``<tau>_<data>_<column>`` for ``<tau>`` in ``learned`` / ``tau001`` and every column of
      :data:`FINAL_COLUMNS`, at the final step of the book-length (800-step) run, and
      ``<tau>_<data>_first_step`` with ``_first_zero_shot_acc``, ``_first_i2i_mAP``,
      ``_first_i2i_in_shape_mAP`` at its first evaluated step; the same columns of a longer
      run as ``<tau>_<data>_<steps>_<column>``;
    - ``long_<tau>_<data>_steps`` and ``long_<tau>_<data>_<column>``: the final step of the
      longest run of that series with results;
    - ``n_runs_final`` (runs with their final step evaluated), ``max_length`` (longest of
      them), ``train_seconds`` (summed training wall time of the data-scale runs, once per
      run; the fixed 800-step runs come from the regime study; also as ``train_hours``),
      ``n_runs_own`` (those runs), ``seconds_per_step`` (training seconds per step of the
      800-step stream runs), ``seconds_per_step_long`` (of the longer runs; NaN when there
      are none), ``flat_middle`` (:data:`FLAT_MIDDLE`),
      ``n_picture`` (rows where all four :func:`picture_checks` hold), ``n_flat``,
      ``n_top_band``, ``n_beats_centred`` (rows where that check holds), ``n_rows``,
      ``flat_min`` / ``flat_max`` over the rows;
    - ``scale_claim``: whether a stream row gains ``min_gain`` mAP or more over the whole
      world and within one shape, in words; ``picture_claim``: whether any row shows the
      paper's picture, in words.
    """
    out: dict[str, Any] = {}
    final_rows = rows[rows["step"] == rows["length"]]
    longest: dict[str, int] = {}
    for name, (_, cfg) in DATA_SCALE_RUNS.items():
        final = final_rows[final_rows["run"] == name]
        if final.empty:
            continue
        tau = _tau_name(cfg)
        series = f"{tau}_{cfg.data}"
        pre = series if cfg.steps == DATA_SCALE_STEPS else f"{series}_{cfg.steps}"
        for col in FINAL_COLUMNS:
            out[f"{pre}_{col}"] = float(final[col].iloc[0])
        if cfg.steps == DATA_SCALE_STEPS:
            first = rows[rows["run"] == name].sort_values("step").iloc[0]
            out[f"{series}_first_step"] = int(first["step"])
            for col in ("zero_shot_acc", "i2i_mAP", "i2i_in_shape_mAP"):
                out[f"{series}_first_{col}"] = float(first[col])
        if cfg.steps >= longest.get(series, 0):
            longest[series] = cfg.steps
            out[f"long_{series}_steps"] = cfg.steps
            for col in FINAL_COLUMNS:
                out[f"long_{series}_{col}"] = float(final[col].iloc[0])
    for data in ("fixed", "stream"):
        sub = rows[rows["data"] == data]
        if sub.empty:
            continue
        out[f"{data}_best_zs"] = float(sub["zero_shot_acc"].astype(float).max())
        for dom, name in (("", "whole"), ("in_shape_", "shape")):
            out.update(_best_row_keys(sub, f"{data}_{name}", dom, min_gain))
    out["n_runs_final"] = int(final_rows["run"].nunique())
    out["max_length"] = int(final_rows["length"].max()) if len(final_rows) else 0
    own = rows[rows["source"] == "data-scale"]
    out["train_seconds"] = float(own.groupby("run")["train_seconds"].first().astype(float).sum())
    out["n_runs_own"] = int(own["run"].nunique())
    out["train_hours"] = out["train_seconds"] / 3600
    per_run = own.groupby("run").first()
    per_step = per_run["train_seconds"].astype(float) / per_run["length"].astype(float)
    book = (per_run["length"] == DATA_SCALE_STEPS) & (per_run["data"] == "stream")
    out["seconds_per_step"] = float(per_step[book].mean())
    out["seconds_per_step_long"] = float(per_step[per_run["length"] > DATA_SCALE_STEPS].mean())
    out["flat_middle"] = FLAT_MIDDLE
    checks = pd.DataFrame([picture_checks(r, min_gain) for _, r in rows.iterrows()])
    out["n_rows"] = len(rows)
    out["n_picture"] = int(checks.all(axis=1).sum()) if len(checks) else 0
    for key in ("flat", "top_band", "beats_centred"):
        out[f"n_{key}"] = int(checks[key].sum()) if len(checks) else 0
    flat = rows["flatness_mid_ratio"].astype(float)
    out["flat_min"], out["flat_max"] = float(flat.min()), float(flat.max())
    if "stream_whole_gain" in out:
        whole, shape = out["stream_whole_gain"], out["stream_shape_gain"]
        out["scale_claim"] = (
            ("no stream row gains" if whole < min_gain else "a stream row gains")
            + f" {min_gain:.0f} mAP or more over the whole world, and "
            + ("none" if shape < min_gain else "at least one") + " within one shape")
    out["picture_claim"] = (
        (f"none of the {out['n_rows']} evaluated models shows" if out["n_picture"] == 0 else
         f"{out['n_picture']} of the {out['n_rows']} evaluated models show")
        + " it whole (a flat middle, a top band removed, a gain over CLIP and over centring)")
    return out


def data_scale_figure(rows: pd.DataFrame, columns: dict[str, str], *, ncols: int = 2
                      ) -> Figure:
    """Small multiples against distinct training pairs seen (log axis): one panel per column
    of ``columns`` (result column -> panel title). Per series (data mode × temperature;
    colour: data mode, line style and marker: temperature) one line through the final steps
    of its runs of every length (each an annealed schedule); the kept steps inside a run
    are small open markers joined by a thin line. Fixed-set runs share one abscissa (all
    their distinct pairs are seen within the first epoch): each final marker is labelled with
    its steps."""
    import numpy as np

    from isoclip.studies.plotting import legend_below, page_figure

    n = len(columns)
    nrows = int(np.ceil(n / ncols))
    fig, axes = page_figure(nrows, ncols, sharex=True, aspect=0.42)
    colours = {"fixed": "#4C72B0", "stream": "#DD8452"}
    styles = {"learned": "-", "0.01": "--"}
    rows = rows.sort_values(["length", "step"])
    for ax, (col, title) in zip(np.ravel(axes), columns.items()):
        for (data, tau), series in rows.groupby(["data", "tau"], sort=False):
            colour, marker = colours.get(data, "0.3"), "o" if tau == "learned" else "s"
            for _, run in series.groupby("run", sort=False):
                if len(run) > 1:  # the kept steps inside one schedule
                    ax.plot(run["distinct_pairs"].astype(float), run[col].astype(float),
                            color=colour, lw=0.7, alpha=0.5, marker=marker, ms=4, mfc="white")
            ends = series[series["step"] == series["length"]]
            label = f"{data}, {'learned τ' if tau == 'learned' else f'τ = {tau}'}"
            ax.plot(ends["distinct_pairs"].astype(float), ends[col].astype(float),
                    color=colour, ls=styles.get(tau, ":"), marker=marker, ms=6, label=label)
            if data == "fixed":
                for _, e in ends.iterrows():
                    ax.annotate(f"{int(e['length'])}", (float(e["distinct_pairs"]),
                                                        float(e[col])),
                                xytext=(4, 5 if tau == "learned" else -5),
                                textcoords="offset points",
                                color=colour, va="center")
        if "gain" in col:
            ax.axhline(0, color="0.4", lw=0.8)
        ax.set_xscale("log")
        ticks = sorted(rows["distinct_pairs"].astype(float).unique())
        kept: list[float] = []
        for t in ticks:  # no two tick labels closer than a factor 1.6
            if not kept or t / kept[-1] > 1.6:
                kept.append(t)
        ticks = kept
        ax.set_xticks(ticks, [f"{t / 1e6:.1f}M" if t >= 1e6 else f"{t / 1000:.0f}k"
                              for t in ticks])
        ax.minorticks_off()
        ax.set_title(title)
    for ax in np.ravel(axes)[n:]:
        ax.set_visible(False)
    for ax in np.ravel(axes)[-ncols:]:
        ax.set_xlabel("distinct training pairs seen")
    legend_below(fig, ax=np.ravel(axes)[0], ncol=2)
    return fig

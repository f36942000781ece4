"""Per-query latency of CLIP, IsoCLIP, OTI and OVI, measured side by side (the latency chapter).

The claim being checked (IsoCLIP, Magistri et al., CVPR 2026: "greatly lowers latency" against
Cross the Gap's inversions): IsoCLIP costs what CLIP costs, a matrix multiply
per query, while modality inversion costs 150 (OTI) or 1000 (OVI) forward/backward passes
of an encoder per query. Secondary summaries quote ≈7 ms (CLIP), ≈7 ms (IsoCLIP) and
≈1879 ms (OTI) per query on a GPU (not checked against the paper).

What one timed *query* is (batch of 1, everything after the query arrives raw):

=======  =====  ==========================================================================
method   query  timed work
=======  =====  ==========================================================================
CLIP     image  ``preprocess(PIL)`` -> ``encode_image`` -> L2-normalise -> ``@ gallery.T``
IsoCLIP  image  ``preprocess`` -> ``encode_image_preproj`` -> ``@ W_i_hat.T (+ b_i)`` ->
                normalise -> ``@ gallery.T``
OTI      image  ``preprocess`` -> ``encode_image`` (target) -> ``inversion.oti`` (template
                tokenisation + ``steps`` AdamW steps + final encoding) -> normalise ->
                ``@ gallery.T``
CLIP     text   ``tokenizer([caption])`` -> ``encode_text`` -> normalise -> ``@ gallery.T``
IsoCLIP  text   ``tokenizer`` -> ``encode_text_preproj`` -> ``@ W_t_hat.T (+ b_t)`` -> ...
OVI      text   ``tokenizer`` -> ``encode_text`` (target) -> ``inversion.ovi`` -> ...
=======  =====  ==========================================================================

Not timed (done once, offline): loading the model, IsoCLIP's SVD and band projectors
(training- and data-free), encoding the gallery. The gallery is ``gallery_size`` random unit
vectors of the embedding dimension: the similarity cost depends only on its shape. OTI's and
OVI's galleries are image and text features respectively (inter-modal retrieval of the
inverted query, Cross the Gap ``retrieval.py``), of the same shape.

Measurement: all jobs run in one process on the same device, interleaved (every round runs
each job once, in a fresh seeded random order) so that load from other processes and cache
effects of the preceding job hit every method alike; the statistic is the median over
repeats, after ``warmup`` untimed rounds. On a shared machine the timings are bimodal (idle
or contended core), which makes a ratio of medians jitter by a few percent;
:func:`latency_ratios` therefore also reports the median of per-round ratios. Inversions with fewer
steps than the paper's (to keep a large model affordable on CPU) are extrapolated linearly,
``t(N) = t(0) + (t(n) - t(0)) N / n``, from timings at ``n`` steps and at 0 steps (the
fixed part: target encoding, initialisation, final encoding, similarity) — per-step cost is
constant because every step does the same work.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from tqdm.auto import tqdm

from isoclip.baselines.inversion import OTI_STEPS, OVI_NUM_PSEUDO_PATCHES, OVI_STEPS, oti, ovi
from isoclip.common.threads import torch_threads
from isoclip.method.bands import Band, iso_projectors
from isoclip.method.projectors import encode_image_preproj, encode_text_preproj, get_projectors
from isoclip.models.loading import ModelBundle

__all__ = [
    "DEFAULT_CAPTION",
    "ISOCLIP_OVER_CLIP_MAX",
    "OTI_OVER_ISOCLIP_MIN",
    "PAPER_BANDS",
    "PAPER_RANK",
    "PAPER_STEPS",
    "default_band",
    "latency_bundle",
    "latency_ratios",
    "latency_rows",
    "measure_latency",
    "summarize_latency",
]

#: Steps of the paper's inversions (Cross the Gap configs ``configs/oti/*.yaml``,
#: ``configs/ovi/*.yaml``): what latency is reported for.
PAPER_STEPS: Mapping[str, int] = {"OTI": OTI_STEPS, "OVI": OVI_STEPS}
#: IsoCLIP's bands for OpenAI ViT-B/32 (official scripts ``exp_img-img_retrieval/*.sh`` 150/50,
#: ``exp_txt-txt_retrieval/*.sh`` 20/100).
PAPER_BANDS: Mapping[str, Band] = {"image": Band(150, 50), "text": Band(20, 100)}
#: Rank r of Psi for ViT-B/32 (min(d_i, d_t) = 512), the scale of :data:`PAPER_BANDS`.
PAPER_RANK = 512
#: The book's latency target: IsoCLIP's per-query time at most this multiple of CLIP's.
ISOCLIP_OVER_CLIP_MAX = 1.05
#: The book's latency target: OTI's per-query time at least this multiple of IsoCLIP's.
OTI_OVER_ISOCLIP_MIN = 100.0
#: The raw caption of the text queries (fits the tiny models' 18-token budget).
DEFAULT_CAPTION = "a photo of a red circle on a striped background"


def default_band(r: int, modality: str) -> Band:
    """The paper's ViT-B/32 band for ``modality`` scaled from rank 512 to rank ``r``.

    Latency does not depend on the band (``W_hat`` has the shape of ``W``); this only picks a
    valid one. For r = 512 it is the paper's band exactly.
    """
    paper = PAPER_BANDS[modality]
    scale = r / PAPER_RANK
    return Band(round(paper.k_top * scale), round(paper.k_bottom * scale))


def latency_bundle(model: str = "embedded", pretrained: str | None = None, *,
                   device: str = "auto", train_steps: int | None = None) -> ModelBundle:
    """The model whose queries a latency chapter times: ``"embedded"`` = the book's default tiny
    model (trained ``train_steps`` steps; None: its default), else the open_clip model
    ``model`` with ``pretrained`` weights (None: random init) on ``device``."""
    from isoclip.training import embedded

    if model == "embedded":
        return embedded.embedded_default(embedded.DEFAULT_WORLD,
                                         embedded.train_config(steps=train_steps),
                                         progress=False).bundle
    return embedded.resolve_model(model, pretrained, device=device, progress=False)


def latency_rows(summary: pd.DataFrame) -> list[dict[str, object]]:
    """Tidy rows of a result file (:func:`isoclip.studies.results.write_result`) from
    :func:`summarize_latency`: ``dataset`` = ``"<query> query"`` (a raw image or caption),
    task ``"latency"``, ``method``, metric ``"ms per query"`` (at the reported steps) and
    ``queries`` = the timed repeats."""
    return [{"dataset": f"{row.query} query", "task": "latency", "method": row.method,
             "metric": "ms per query", "value": float(row.per_query_ms),
             "queries": int(row.repeats)} for row in summary.itertuples(index=False)]


#: Row order of :func:`summarize_latency` within each query modality.
_METHOD_ORDER = ("CLIP", "IsoCLIP", "OTI", "OVI")


@dataclass
class _Job:
    method: str
    query: str
    steps: int
    repeats: int
    run: Callable[[], Tensor]


def _random_image(size: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), mode="RGB")


def _check_count(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")


def measure_latency(
    bundle: ModelBundle,
    *,
    gallery_size: int = 1000,
    repeats: int = 50,
    inversion_repeats: int = 3,
    warmup: int = 1,
    oti_steps: int = OTI_STEPS,
    ovi_steps: int = OVI_STEPS,
    num_pseudo_patches: int = OVI_NUM_PSEUDO_PATCHES,
    image_band: Band | None = None,
    text_band: Band | None = None,
    image: Image.Image | None = None,
    caption: str = DEFAULT_CAPTION,
    num_threads: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Time single raw queries for CLIP, IsoCLIP, OTI (image) and CLIP, IsoCLIP, OVI (text).

    Args:
        bundle: the model (``isoclip.models.loading.load_model``), on the device to measure.
        gallery_size: number of gallery embeddings each query is compared with.
        repeats: timed queries per CLIP / IsoCLIP job.
        inversion_repeats: timed queries per OTI / OVI job.
        warmup: untimed rounds before timing (every job runs once per round).
        oti_steps, ovi_steps: inversion steps actually run. When they differ from
            :data:`PAPER_STEPS`, 0-step jobs are timed as well, for
            :func:`summarize_latency` to extrapolate.
        num_pseudo_patches: OVI's P.
        image_band, text_band: IsoCLIP bands (default :func:`default_band`).
        image: the raw query image (default: seeded random RGB noise at the model's input
            resolution, so ``preprocess`` is a pass-through resize).
        caption: the raw query caption.
        num_threads: if given, ``torch.set_num_threads`` for the measurement (restored after).
        seed: seed of the default image and of the random galleries.
        progress: show a tqdm bar over all runs.

    Returns:
        Tidy frame, one row per timed query: ``model, pretrained, device, threads,
        gallery_size, method, query, steps, repeat, seconds`` (``steps`` is the number of
        inversion steps, 0 for CLIP / IsoCLIP).
    """
    for name, value, minimum in (("gallery_size", gallery_size, 1), ("repeats", repeats, 1),
                                 ("inversion_repeats", inversion_repeats, 1),
                                 ("warmup", warmup, 0), ("oti_steps", oti_steps, 1),
                                 ("ovi_steps", ovi_steps, 1)):
        _check_count(name, value, minimum)
    if num_threads is not None:
        _check_count("num_threads", num_threads, 1)
    with torch_threads(num_threads) as threads:
        jobs = _jobs(bundle, gallery_size=gallery_size, repeats=repeats,
                     inversion_repeats=inversion_repeats, oti_steps=oti_steps,
                     ovi_steps=ovi_steps, num_pseudo_patches=num_pseudo_patches,
                     image_band=image_band, text_band=text_band, image=image, caption=caption,
                     seed=seed)
        rows = _run(jobs, warmup, bundle.device, seed, progress)
    df = pd.DataFrame(rows, columns=["method", "query", "steps", "repeat", "seconds"])
    meta = {"model": bundle.name, "pretrained": bundle.pretrained or "random-init",
            "device": str(bundle.device), "threads": threads, "gallery_size": gallery_size}
    for i, (key, column_value) in enumerate(meta.items()):
        df.insert(i, key, column_value)
    return df


def _jobs(bundle: ModelBundle, *, gallery_size: int, repeats: int, inversion_repeats: int,
          oti_steps: int, ovi_steps: int, num_pseudo_patches: int, image_band: Band | None,
          text_band: Band | None, image: Image.Image | None, caption: str,
          seed: int) -> list[_Job]:
    model, device = bundle.model, bundle.device
    P = get_projectors(model)
    r = min(P.d_i, P.d_t)
    iso_i = iso_projectors(P, image_band or default_band(r, "image"))
    iso_t = iso_projectors(P, text_band or default_band(r, "text"))
    generator = torch.Generator().manual_seed(seed)
    galleries = [F.normalize(torch.randn(gallery_size, P.d, generator=generator), dim=-1)
                 .to(device=device, dtype=P.dtype) for _ in range(2)]
    gallery_image, gallery_text = galleries
    raw_image = image if image is not None else _random_image(bundle.image_size, seed)

    def image_input() -> Tensor:
        return bundle.preprocess(raw_image).unsqueeze(0).to(device)

    def text_input() -> Tensor:
        return bundle.tokenizer([caption]).to(device)

    def rank(query: Tensor, gallery: Tensor) -> Tensor:
        return F.normalize(query, dim=-1) @ gallery.T

    @torch.no_grad()
    def clip_image() -> Tensor:
        return rank(model.encode_image(image_input()), gallery_image)

    @torch.no_grad()
    def iso_image() -> Tensor:
        return rank(iso_i.project_image(encode_image_preproj(model, image_input())), gallery_image)

    @torch.no_grad()
    def clip_text() -> Tensor:
        return rank(model.encode_text(text_input()), gallery_text)

    @torch.no_grad()
    def iso_text() -> Tensor:
        return rank(iso_t.project_text(encode_text_preproj(model, text_input())), gallery_text)

    def oti_image(steps: int) -> Callable[[], Tensor]:
        @torch.no_grad()
        def run() -> Tensor:
            target = model.encode_image(image_input())
            res = oti(model, bundle.tokenizer, target, steps=steps, progress=False)
            return rank(res.features, gallery_image)
        return run

    def ovi_text(steps: int) -> Callable[[], Tensor]:
        @torch.no_grad()
        def run() -> Tensor:
            target = model.encode_text(text_input())
            res = ovi(model, target, steps=steps, num_pseudo_patches=num_pseudo_patches,
                      progress=False)
            return rank(res.features, gallery_text)
        return run

    jobs = [_Job("CLIP", "image", 0, repeats, clip_image),
            _Job("IsoCLIP", "image", 0, repeats, iso_image),
            _Job("OTI", "image", oti_steps, inversion_repeats, oti_image(oti_steps)),
            _Job("CLIP", "text", 0, repeats, clip_text),
            _Job("IsoCLIP", "text", 0, repeats, iso_text),
            _Job("OVI", "text", ovi_steps, inversion_repeats, ovi_text(ovi_steps))]
    if oti_steps != PAPER_STEPS["OTI"]:
        jobs.append(_Job("OTI", "image", 0, inversion_repeats, oti_image(0)))
    if ovi_steps != PAPER_STEPS["OVI"]:
        jobs.append(_Job("OVI", "text", 0, inversion_repeats, ovi_text(0)))
    return jobs


def _run(jobs: list[_Job], warmup: int, device: torch.device, seed: int,
         progress: bool) -> list[tuple[str, str, int, int, float]]:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    rounds = warmup + max(job.repeats for job in jobs)
    total = sum(warmup + job.repeats for job in jobs)
    rows: list[tuple[str, str, int, int, float]] = []
    rng = np.random.default_rng(seed)
    with tqdm(total=total, desc="latency", disable=not progress) as bar:
        for i in range(rounds):
            for j in rng.permutation(len(jobs)):
                job = jobs[j]
                repeat = i - warmup
                if repeat >= job.repeats:
                    continue
                sync()
                start = time.perf_counter()
                job.run()
                sync()
                seconds = time.perf_counter() - start
                if repeat >= 0:
                    rows.append((job.method, job.query, job.steps, repeat, seconds))
                bar.update()
    return rows


def summarize_latency(df: pd.DataFrame,
                      reported_steps: Mapping[str, int] = PAPER_STEPS) -> pd.DataFrame:
    """Median per-query time of each method, inversions reported at ``reported_steps``.

    Args:
        df: output of :func:`measure_latency`.
        reported_steps: method -> steps to report (default: the paper's 150 / 1000).

    Returns:
        One row per (method, query): ``method, query, repeats, steps_run, steps_reported,
        median_ms`` (measured, at ``steps_run``), ``iqr_ms``, ``per_query_ms`` (at
        ``steps_reported``; equal to ``median_ms`` unless extrapolated) and ``extrapolated``.

    Raises:
        ValueError: an inversion ran with fewer/more steps than reported and its 0-step
            timings are missing.
    """
    def q(p: float) -> Callable[[pd.Series], float]:
        return lambda s: float(s.quantile(p))

    stats = (df.groupby(["query", "method", "steps"], sort=False)["seconds"]
             .agg(repeats="size", median="median", q1=q(0.25), q3=q(0.75)).reset_index())
    rows = []
    for (query, method), grp in stats.groupby(["query", "method"], sort=False):
        run = grp[grp["steps"] == grp["steps"].max()].iloc[0]
        steps_run = int(run["steps"])
        target = int(reported_steps.get(method, steps_run))
        per_query = float(run["median"])
        extrapolated = target != steps_run
        if extrapolated:
            zero = grp[grp["steps"] == 0]
            if zero.empty:
                raise ValueError(f"df: {method} ran {steps_run} steps, {target} are to be "
                                 "reported, and there are no 0-step timings to extrapolate from")
            fixed = float(zero["median"].iloc[0])
            per_query = fixed + (per_query - fixed) * target / steps_run
        rows.append({"method": method, "query": query, "repeats": int(run["repeats"]),
                     "steps_run": steps_run, "steps_reported": target,
                     "median_ms": 1e3 * float(run["median"]),
                     "iqr_ms": 1e3 * float(run["q3"] - run["q1"]),
                     "per_query_ms": 1e3 * per_query, "extrapolated": extrapolated})
    order = {name: i for i, name in enumerate(_METHOD_ORDER)}
    out = pd.DataFrame(rows)
    return out.sort_values(["query", "method"], key=lambda c: c.map(order) if c.name == "method"
                           else c, ignore_index=True)


def _per_round(df: pd.DataFrame, method: str, query: str, steps: int) -> pd.Series:
    """Seconds of one job indexed by round (``repeat``)."""
    sel = (df["method"] == method) & (df["query"] == query) & (df["steps"] == steps)
    return df[sel].set_index("repeat")["seconds"]


def latency_ratios(df: pd.DataFrame,
                   reported_steps: Mapping[str, int] = PAPER_STEPS) -> pd.DataFrame:
    """The latency ratios and the book's targets from :func:`measure_latency` output.

    Args:
        df: output of :func:`measure_latency`.
        reported_steps: as in :func:`summarize_latency`.

    Returns:
        Rows ``IsoCLIP/CLIP`` (image, text), ``OTI/IsoCLIP`` (image), ``OVI/IsoCLIP`` (text)
        with columns ``ratio, query``, ``value`` (ratio of the ``per_query_ms`` medians of
        :func:`summarize_latency`: the reported number), ``paired`` (median over rounds of
        the per-round ratio of the two queries, which ran in the same round: insensitive to
        load drifting between rounds on a shared machine; NaN when either side is
        extrapolated), ``target`` (a string such as ``"<= 1.05"``, empty when the book sets
        none) and ``meets_target`` (on ``value``; None when there is no target).
    """
    summary = summarize_latency(df, reported_steps).set_index(["method", "query"])
    specs = [("IsoCLIP/CLIP", "image", "IsoCLIP", "CLIP", "<=", ISOCLIP_OVER_CLIP_MAX),
             ("IsoCLIP/CLIP", "text", "IsoCLIP", "CLIP", "<=", ISOCLIP_OVER_CLIP_MAX),
             ("OTI/IsoCLIP", "image", "OTI", "IsoCLIP", ">=", OTI_OVER_ISOCLIP_MIN),
             ("OVI/IsoCLIP", "text", "OVI", "IsoCLIP", "", None)]
    rows = []
    for name, query, num, den, op, bound in specs:
        top, bottom = summary.loc[(num, query)], summary.loc[(den, query)]
        value = float(top["per_query_ms"] / bottom["per_query_ms"])
        paired = float("nan")
        if not (top["extrapolated"] or bottom["extrapolated"]):
            ratio = (_per_round(df, num, query, int(top["steps_run"]))
                     / _per_round(df, den, query, int(bottom["steps_run"])))
            paired = float(ratio.dropna().median())
        meets = None if bound is None else (value <= bound if op == "<=" else value >= bound)
        rows.append({"ratio": name, "query": query, "value": value, "paired": paired,
                     "target": "" if bound is None else f"{op} {bound:g}",
                     "meets_target": meets})
    return pd.DataFrame(rows)


#: Per-query latencies attributed to the IsoCLIP paper (ms, on a GPU whose model our sources do
#: not name). From a secondary summary, **unverified** against the paper.
PAPER_LATENCY_MS: dict[tuple[str, str], float] = {
    ("CLIP", "image"): 7.0,
    ("IsoCLIP", "image"): 7.0,
    ("OTI", "image"): 1879.0,
}


def latency_comparison(summary: pd.DataFrame,
                       paper: dict[tuple[str, str], float] | None = None) -> pd.DataFrame:
    """Our per-query latencies beside the paper's.

    Args:
        summary: :func:`isoclip.studies.latency.summarize_latency` output.
        paper: (method, query) -> ms (default :data:`PAPER_LATENCY_MS`).

    Returns:
        One row per (query, method) of ``summary``, same order: ``query, method, steps,
        ours_ms`` (``per_query_ms``), ``iqr_ms``, ``extrapolated``, ``ours_vs_clip`` (ours /
        CLIP's for the same query modality), ``paper_ms`` and ``paper_vs_clip`` (NaN where the
        paper has no figure).
    """
    paper = PAPER_LATENCY_MS if paper is None else paper
    rows = []
    clip = {q: float(g.loc[g["method"] == "CLIP", "per_query_ms"].iloc[0])
            for q, g in summary.groupby("query") if (g["method"] == "CLIP").any()}
    for row in summary.itertuples(index=False):
        p = paper.get((row.method, row.query), float("nan"))
        p_clip = paper.get(("CLIP", row.query), float("nan"))
        base = clip.get(row.query, float("nan"))
        rows.append({"query": row.query, "method": row.method,
                     "steps": int(row.steps_reported), "ours_ms": float(row.per_query_ms),
                     "iqr_ms": float(row.iqr_ms), "extrapolated": bool(row.extrapolated),
                     "ours_vs_clip": float(row.per_query_ms) / base, "paper_ms": p,
                     "paper_vs_clip": p / p_clip})
    return pd.DataFrame(rows)

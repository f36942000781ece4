"""The band-analysis chapter's study (IsoCLIP's band figure and band choice): intra-modal
retrieval tasks as pre-projection features, the paper's one-band-at-a-time analysis
(:func:`region_study`), the mAP of each way of choosing a band (:func:`band_choices`), and the
band ordering over a list of sets (:func:`band_ordering_study`: for every set, the mAP of the
top band only, the kept middle band and the bottom band only, per query, with the table, the
averages with paired intervals, the figure per set family and the tidy rows of a result file).

Works on any model (the embedded tiny models or an open_clip model) and any retrieval set of
the registry (the band ordering also on revisited Oxford / Paris, by protocol).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from isoclip.method.bands import Band
from isoclip.method.operator import SVD, svd
from isoclip.method.projectors import Projectors, get_projectors
from isoclip.models.features import image_features, text_features
from isoclip.selection.analysis import histogram_overlap, pos_neg_scores, region_bands
from isoclip.selection.sweep import BandScorer, best_band, sweep_bands

__all__ = ["REGIONS", "REGION_METHODS", "BandOrdering", "RegionStudy", "RetrievalTask",
           "band_choices", "band_ordering_study", "ordering_display", "ordering_figure",
           "ordering_glue", "ordering_reading", "ordering_rows", "ordering_table", "ordering_tables",
           "ordering_verdict_table", "ordering_verdicts", "primary_sets", "region_results",
           "region_study", "set_task"]

_TITLES = {"image": "image→image", "text": "text→text"}
ModalityName = Literal["image", "text"]


@dataclass(frozen=True)
class RetrievalTask:
    """One intra-modal retrieval task as pre-projection features.

    Attributes:
        modality: ``"image"`` or ``"text"``; title: ``"image→image"`` or ``"text→text"``.
        query: [Q, d_i or d_t] query features; gallery: [G, ...] gallery features (the same
            tensor when ``same_split``: every item queries all the others).
        query_labels: [Q] class ids; gallery_labels: [G] (None for a revisited set).
        gnd: the revisitop ground truth of a revisited Oxford / Paris set (relevance by
            protocol instead of labels), else None; name: the set's registry name.
    """

    modality: ModalityName
    title: str
    query: Tensor
    gallery: Tensor
    query_labels: Any
    gallery_labels: Any
    same_split: bool
    gnd: Any = None
    name: str = ""

    @property
    def n_query(self) -> int:
        return len(self.query)

    @property
    def n_gallery(self) -> int:
        return len(self.gallery)


@dataclass(frozen=True)
class RegionStudy:
    """Result of :func:`region_study`.

    Attributes:
        table: one row per (modality, region): ``modality, region, k_top, k_bottom, kept,
            mean_sim, overlap, mAP`` (region: ``top``, ``middle``, ``bottom``).
        samples: (modality, region) → (all query-gallery cosines, positive ones, negative ones)
            as flat arrays, for the histograms.
    """

    table: pd.DataFrame
    samples: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]]


def region_study(P: Projectors, tasks: Mapping[str, RetrievalTask], bands: Mapping[str, Band],
                 *, hist_bins: int = 60, dec: SVD | None = None) -> RegionStudy:
    """IsoCLIP's band figure: project onto one region of the spectrum at a time (only the top
    ``k_top`` directions, the kept middle band, only the bottom ``k_bottom``) and measure the
    mAP, the mean similarity and the overlap of the positive and negative similarity
    histograms (:func:`isoclip.selection.analysis.histogram_overlap`, ``hist_bins`` bins).

    Args:
        tasks: modality → task; bands: modality → the band whose regions are analysed.
    """
    dec = svd(P) if dec is None else dec
    rows: list[dict[str, Any]] = []
    samples: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for t in tasks.values():
        mod = t.modality
        scorer = BandScorer(P, t.query, t.gallery, mod, dec)
        for name, band in region_bands(dec.r, bands[mod]).items():
            s = scorer.scores(band)
            pos, neg = pos_neg_scores(s, t.query_labels, t.gallery_labels,
                                      same_split=t.same_split)
            m = sweep_bands(P, t.query, t.gallery, t.query_labels, t.gallery_labels, mod,
                            [band.k_top], [band.k_bottom], same_split=t.same_split,
                            dec=dec).mAP.iloc[0]
            rows.append({"modality": mod, "region": name, "k_top": band.k_top,
                             "k_bottom": band.k_bottom, "kept": band.kept(dec.r),
                             "mean_sim": float(s.mean()),
                             "overlap": histogram_overlap(pos, neg, hist_bins), "mAP": m})
            s_all = s[~torch.eye(len(s), dtype=torch.bool)] if t.same_split else s.flatten()
            samples[(mod, name)] = (s_all.numpy(), pos, neg)
    return RegionStudy(pd.DataFrame(rows), samples)


def band_choices(P: Projectors, task: RetrievalTask, sweep: pd.DataFrame,
                 candidates: Mapping[str, Band], *, dec: SVD | None = None) -> pd.DataFrame:
    """mAP of each way of choosing the band for ``task``: the *oracle* (best band of
    ``sweep``, which used the test labels: an upper bound, not a method) and every band of
    ``candidates`` (name → band, e.g. the label-free rule, the paper's band, no filtering).

    Returns:
        One row per choice, oracle first: ``choice, k_top, k_bottom, kept, mAP``.
    """
    dec = svd(P) if dec is None else dec
    extra = pd.concat([sweep_bands(P, task.query, task.gallery, task.query_labels,
                                   task.gallery_labels, task.modality, [b.k_top], [b.k_bottom],
                                   same_split=task.same_split, dec=dec)
                       for b in candidates.values()])

    def m_of(b: Band) -> float:
        hit = extra[(extra.k_top == b.k_top) & (extra.k_bottom == b.k_bottom)]
        return float(hit.mAP.iloc[0])

    oracle = best_band(sweep)
    rows = [("oracle", oracle, float(sweep.mAP.max()))]
    rows += [(name, b, m_of(b)) for name, b in candidates.items()]
    return pd.DataFrame([{"choice": name, "k_top": b.k_top, "k_bottom": b.k_bottom,
                              "kept": b.kept(dec.r), "mAP": m} for name, b, m in rows])


# ---------------------------------------------------------------------------------------------
# the band ordering over a list of sets

#: The regions of the band figure, in table order, and the unfiltered baseline.
REGIONS = ("top", "middle", "bottom")
#: Region -> method name in a result file (the middle band is IsoCLIP's kept band).
REGION_METHODS = {"CLIP": "CLIP", "top": "top band only", "middle": "IsoCLIP",
                  "bottom": "bottom band only"}
_TASKS = {"image": "image-image", "text": "text-text"}


def set_task(bundle: Any, name: str, modality: ModalityName, data_root: Any = None,
             **config: Any) -> RetrievalTask:
    """A registered set (:func:`isoclip.data.registry.load_dataset`) as a retrieval task with
    ``bundle``'s pre-projection features. A slice of an embedded family (e.g.
    ``synthetic/shape=circle``) takes its rows of the whole set's features, so one extraction
    serves every slice (:func:`isoclip.data.suites.rows_in_whole`).

    Args:
        config: ``world=`` / ``emoji=`` configurations of the embedded data.

    Raises:
        ValueError, DatasetNotFoundError: the registry's errors (unknown name, wrong
            modality, missing data_root or data).
    """
    from isoclip.data import suites
    from isoclip.data.registry import load_dataset

    data = load_dataset(name, modality, data_root, **config)
    feat: Any = image_features if modality == "image" else text_features
    whole = suites.whole_set(name) if suites.is_embedded(name) else name
    if whole != name:
        wdata = load_dataset(whole, modality, data_root, **config)
        rows = suites.rows_in_whole(name, modality, **config)
        q = feat(bundle, wdata.query, "preproj", progress=False)[torch.as_tensor(rows["query"])]
        g = (feat(bundle, wdata.gallery, "preproj", progress=False)[
            torch.as_tensor(rows["gallery"])] if "gallery" in rows  # else: its own gallery
             else feat(bundle, data.gallery, "preproj", progress=False))
    else:
        q = feat(bundle, data.query, "preproj", progress=False)
        g = q if data.same_split else feat(bundle, data.gallery, "preproj", progress=False)
    return RetrievalTask(modality, _TITLES[modality], q, g, data.query.labels,
                         data.gallery.labels, bool(data.same_split), gnd=data.gnd, name=name)


def region_results(P: Projectors, task: RetrievalTask, band: Band, *, dec: SVD | None = None,
                   meta: Mapping[str, Any] | None = None) -> list[Any]:
    """Per-query AP (percent) of the unfiltered projector (``"CLIP"``, the band (0, 0)) and of
    each region of ``band`` (:data:`REGIONS`, :func:`isoclip.selection.analysis.region_bands`;
    an empty end is NaN) on ``task``.

    Returns:
        One :class:`isoclip.studies.suite.SetResult` (``ap``: region -> [Q], ``bands``:
        region -> band, ``meta``: ``meta``), or one per protocol E / M / H of a revisited set
        (``meta["protocol"]``, label ``"<label> (E)"``, ...), as the suite's tables take them.
    """
    from isoclip.evaluate.retrieval import FixedLabelRanker
    from isoclip.evaluate.stats import integer_labels
    from isoclip.studies.suite import REVISITED_SETTINGS, RevisitedRanker, SetResult

    dec = svd(P) if dec is None else dec
    regions = {"CLIP": Band(0, 0), **region_bands(dec.r, band)}
    scorer = BandScorer(P, task.query, task.gallery, task.modality, dec)
    meta = dict(meta or {})
    rankers: list[tuple[str, Any]]
    if task.gnd is not None:
        rankers = [(abbr, RevisitedRanker(task.gnd, task.n_gallery, setting))
                   for setting, abbr in REVISITED_SETTINGS.items()]
    else:
        rankers = [("", FixedLabelRanker(integer_labels(task.query_labels),
                                         integer_labels(task.gallery_labels), task.same_split))]
    nan = torch.full((task.n_query,), float("nan"), dtype=torch.float64)
    aps: list[dict[str, Tensor]] = [dict.fromkeys(("CLIP", *REGIONS), nan) for _ in rankers]
    for k, b in regions.items():  # one [Q, G] score matrix at a time (CUB: 11,788²)
        s = scorer.scores(b)
        for ap, (_, ranker) in zip(aps, rankers):
            ap[k] = 100.0 * ranker.per_query(s)["mAP"].double()
        del s
    out = []
    for ap, (abbr, _) in zip(aps, rankers):
        m = {**meta, **({"label": f"{meta.get('label', task.name)} ({abbr})", "protocol": abbr}
                        if abbr else {})}
        out.append(SetResult(name=task.name, modality=task.modality, n_query=task.n_query,
                             n_gallery=task.n_gallery, same_split=task.same_split, ap=ap,
                             bands=dict(regions), meta=m))
    return out


@dataclass
class BandOrdering:
    """:func:`band_ordering_study`'s output.

    Attributes:
        results: weights label (the model's, then ``"random init"`` for the control) -> one
            :func:`region_results` entry per (set, task, protocol), image sets first.
        bands: weights label -> modality -> model label -> the band whose regions were
            measured; ranks: model label -> r.
        seconds: stage -> wall time.
    """

    results: dict[str, list[Any]]
    bands: dict[str, dict[str, dict[str, Band]]]
    seconds: dict[str, float]

    def task(self, modality: str, weights: str | None = None) -> list[Any]:
        """The results of one task (of the model's weights by default)."""
        label = next(iter(self.results)) if weights is None else weights
        return [r for r in self.results[label] if r.modality == modality]


def band_ordering_study(datasets: str | Sequence[str], text_datasets: str | Sequence[str], *,
                        model: str = "embedded", pretrained: str | None = None,
                        data_root: Any = None, device: str = "auto", train: Any = None,
                        control: bool | None = None) -> BandOrdering:
    """The paper's band ordering (its band figure: top band only, middle band, bottom band
    only) on every set of ``datasets`` (image→image) and ``text_datasets`` (text→text).

    Each set is evaluated by its model (:func:`isoclip.training.embedded.model_for_set`: with
    ``"embedded"``, synthetic sets by the default model and emoji sets by the emoji model;
    otherwise every set by ``model``), with the paper's band of that model and task
    (:func:`isoclip.studies.verdicts.paper_band`: the ViT-B/32 band scaled to r for models it
    does not list).

    Args:
        datasets, text_datasets: names or suites (:func:`isoclip.data.registry.datasets_list`).
        model, pretrained, device: the model (``"embedded"`` or an open_clip name and tag).
        data_root: folder of the paper's datasets.
        train: the default embedded model's training (None: the book's).
        control: also run the random-init control (:mod:`isoclip.studies.controls`); None:
            whenever ``model`` is a pretrained open_clip model.

    Raises:
        ValueError: unknown or wrong-modality names, or an empty list (named in the message).
    """
    import time

    from isoclip.data.registry import datasets_list
    from isoclip.studies.controls import RANDOM_INIT, random_init_bundle
    from isoclip.studies.suite import set_meta
    from isoclip.studies.verdicts import paper_band
    from isoclip.training import embedded as emb

    names = {}
    for mod, arg, given in (("image", "datasets", datasets), ("text", "text_datasets",
                                                              text_datasets)):
        lst = datasets_list(given if isinstance(given, str) else list(given), mod  # type: ignore[arg-type]
                            ) if len(given) else []
        if not lst:
            raise ValueError(f"{arg}: expected at least one {mod} set, got {given!r}")
        names[mod] = lst
    if control is None:
        control = model != "embedded" and pretrained is not None
    train = emb.DEFAULT_TRAIN if train is None else train
    t0 = time.perf_counter()
    bundles: dict[str, Any] = {}

    def bundle_for(key: str) -> Any:
        if key not in bundles:
            bundles[key] = emb.resolve_model(key, pretrained, device=device, train=train,
                                             progress=False)
        return bundles[key]

    main = "trained here" if model == "embedded" else str(pretrained or RANDOM_INIT)
    if control and main == RANDOM_INIT:
        main = f"{RANDOM_INIT} (as given)"
    weights = {main: bundle_for}
    if control:
        ctrl: dict[str, Any] = {}

        def control_for(key: str) -> Any:
            if key not in ctrl:
                ctrl[key] = random_init_bundle(bundle_for(key))
            return ctrl[key]

        weights[RANDOM_INIT] = control_for
    results: dict[str, list[Any]] = {}
    bands: dict[str, dict[str, dict[str, Band]]] = {}
    for label, get in weights.items():
        results[label], bands[label] = [], {"image": {}, "text": {}}
        decs: dict[str, tuple[Projectors, SVD]] = {}
        for mod in ("image", "text"):
            for name in names[mod]:
                key = emb.model_for_set(name, model)
                bundle = get(key)
                if key not in decs:
                    P = get_projectors(bundle.model)
                    decs[key] = (P, svd(P))
                P, dec = decs[key]
                band = paper_band(model, pretrained, mod, dec.r).band  # type: ignore[arg-type]
                bands[label][mod][key] = band
                task = set_task(bundle, name, mod, data_root)  # type: ignore[arg-type]
                results[label] += region_results(P, task, band, dec=dec,
                                                 meta=set_meta(name, key))
    return BandOrdering(results=results, bands=bands,
                        seconds={"band ordering": time.perf_counter() - t0})


def ordering_table(results: Sequence[Any]) -> pd.DataFrame:
    """One row per (set, protocol) and, per family, the average over the sets that enter it
    (:func:`isoclip.studies.suite.in_average`: fine-grained sets, or every paper dataset with
    ROxf/RPar by their Medium protocol; whole sets never).

    Columns: ``family, set, kind`` (``"fine-grained"``, ``"whole"``, ``"dataset"``,
    ``"average"``), ``n`` (queries), ``CLIP`` (no filtering), ``top``, ``middle``, ``bottom``
    (mAP %), ``best`` (the region with the highest mAP, ``"tie (...)"`` when several share
    it), ``margin`` (middle − the better end).
    """
    from isoclip.studies.suite import in_average

    def mean(v: Tensor) -> float:
        ok = ~torch.isnan(v)
        return float(v[ok].mean()) if bool(ok.any()) else math.nan

    rows = []
    for r in results:
        fg = r.meta.get("fine_grained")
        rows.append({"family": r.meta.get("family", ""), "set": r.meta.get("label", r.name),
                     "kind": "fine-grained" if fg else "whole" if fg is False else "dataset",
                     "in_average": in_average(r), "n": r.n_query,
                     **{k: mean(r.ap[k]) for k in ("CLIP", *REGIONS)}})
    df = pd.DataFrame(rows)
    avg = []
    for fam, part in df[df["in_average"]].groupby("family", sort=False):
        kind = "fine-grained sets" if (part["kind"] == "fine-grained").all() else "datasets"
        avg.append({"family": fam, "set": f"average ({len(part)} {kind})", "kind": "average",
                    "in_average": False, "n": int(part["n"].sum()),
                    **part[["CLIP", *REGIONS]].mean().to_dict()})
    out = pd.concat([df, pd.DataFrame(avg)], ignore_index=True) if avg else df
    out["best"] = [_best({k: row[k] for k in REGIONS if not math.isnan(row[k])})
                   for _, row in out.iterrows()]
    ends = out[["top", "bottom"]].max(axis=1, skipna=True)
    out["margin"] = out["middle"] - ends
    return out


def _best(values: Mapping[str, float], tol: float = 1e-9) -> str:
    """The region with the highest mAP, or ``"tie (a, b)"`` when several share it."""
    top = max(values.values())
    winners = [k for k, v in values.items() if v >= top - tol]
    return winners[0] if len(winners) == 1 else f"tie ({', '.join(winners)})"


def ordering_display(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The ordering tables of the model and its control (weights label -> :func:`ordering_table`
    of one task) side by side in the paper's layout: rows (family, set) with each family's
    sets, their average, then the whole set; columns ``queries``, then per weights label CLIP,
    top, middle, bottom and the best region."""
    from isoclip.studies.suite import FAMILY_LABELS

    order = {"fine-grained": 0, "dataset": 0, "average": 1, "whole": 2}
    parts = {}
    first = next(iter(tables.values()))
    fams = {f: i for i, f in enumerate(dict.fromkeys(first["family"]))}
    idx = (first.assign(_f=first["family"].map(fams), _o=first["kind"].map(order),
                        _p=range(len(first)))
           .sort_values(["_f", "_o", "_p"], kind="stable").index)
    keys = [(FAMILY_LABELS.get(f, f), s) for f, s in zip(first.loc[idx, "family"],
                                                         first.loc[idx, "set"])]
    for label, t in tables.items():
        t = t.loc[idx, ["CLIP", *REGIONS, "best"]]
        t.index = pd.MultiIndex.from_tuples(keys, names=["", "set"])
        parts[label] = t.rename(columns={"CLIP": "CLIP (all)"})
    out = pd.concat(parts, axis=1) if len(parts) > 1 else next(iter(parts.values()))
    out.insert(0, ("", "queries") if len(parts) > 1 else "queries",
               first.loc[idx, "n"].astype(int).to_numpy())
    return out


def ordering_verdicts(results: Sequence[Any], scope: str, *, n_boot: int = 2000,
                      seed: int = 0) -> pd.DataFrame:
    """The paper's ordering claim (the middle band alone beats both ends) on each family's
    average (:func:`isoclip.studies.suite.average_gain`: paired, stratified bootstrap).

    Returns:
        One row per family: ``family, n_sets``, ``vs_top`` and ``vs_bottom`` (middle − end,
        ``"+1.23 [+0.45, +2.01]"``; ``"n/a"`` without that end), ``holds`` (both intervals
        above 0) and ``verdict`` (a sentence ending with ``scope``).
    """
    from isoclip.studies.suite import average_gain, in_average
    from isoclip.studies.verdicts import fmt_delta

    rows = []
    for fam in dict.fromkeys(r.meta.get("family", "") for r in results):
        sets = [r for r in results if r.meta.get("family", "") == fam and in_average(r)]
        if not sets:
            continue
        cells, holds = {}, True
        for end in ("top", "bottom"):
            if any(bool(torch.isnan(r.ap[end]).all()) for r in sets):
                cells[end] = "n/a"
                continue
            g = average_gain(sets, "middle", end, n_boot=n_boot, seed=seed)
            cells[end] = fmt_delta(g["delta"], g["lo"], g["hi"])
            holds = holds and g["lo"] > 0
        verdict = ("the middle band beats both ends on the average" if holds else
                   "the middle band does not beat both ends on the average") + f" {scope}"
        rows.append({"family": fam, "n_sets": len(sets), "vs_top": cells["top"],
                     "vs_bottom": cells["bottom"], "holds": holds, "verdict": verdict})
    return pd.DataFrame(rows)


def ordering_rows(study: BandOrdering) -> list[dict[str, Any]]:
    """Tidy rows of a result file (:func:`isoclip.studies.results.write_result`): per set,
    task and protocol, the mAP of CLIP (no filtering), the top band only, IsoCLIP (the kept
    middle band) and the bottom band only (:data:`REGION_METHODS`); the control's methods
    are prefixed ``"random init"`` (its CLIP: ``"random init"``)."""
    from isoclip.studies.controls import RANDOM_INIT
    from isoclip.studies.suite import in_average

    rows: list[dict[str, Any]] = []
    for i, (label, results) in enumerate(study.results.items()):
        for r in results:
            for k, method in REGION_METHODS.items():
                v = r.ap[k][~torch.isnan(r.ap[k])]
                if not len(v):
                    continue
                if i:
                    method = RANDOM_INIT if k == "CLIP" else f"{RANDOM_INIT} ({method})"
                rows.append({"dataset": r.name, "task": _TASKS[r.modality], "method": method,
                             "metric": "mAP", "value": float(v.mean()),
                             "variant": r.meta.get("protocol", ""),
                             "in_average": in_average(r), "queries": len(v)})
    return rows


def ordering_figure(tables: Mapping[str, Mapping[str, pd.DataFrame]]) -> Any:
    """The band figure per set family: one panel per (task, family), the mAP of the top band
    only, the middle band and the bottom band only of every set (whole set first, then the
    sets of the family and their average), the control's as hollow markers.

    Args:
        tables: task title -> weights label -> :func:`ordering_table` (the model's first).
    """
    from matplotlib.lines import Line2D

    from isoclip.studies.plotting import BAND_COLOURS, legend_below, page_figure
    from isoclip.studies.suite import FAMILY_LABELS

    panels = [(title, fam) for title, ts in tables.items()
              for fam in dict.fromkeys(next(iter(ts.values()))["family"])]
    ncols = max(len(dict.fromkeys(next(iter(ts.values()))["family"])) for ts in tables.values())
    nrows = len(tables)
    fig, axes = page_figure(nrows, ncols, height=2.9 * nrows + 0.6, squeeze=False)
    order = {"whole": 0, "fine-grained": 1, "dataset": 1, "average": 2}
    used = set()
    for row, title in enumerate(tables):
        fams = [f for t, f in panels if t == title]
        for col in range(ncols):
            ax = axes[row, col]
            if col >= len(fams):
                ax.set_axis_off()
                continue
            fam = fams[col]
            for w, (label, t) in enumerate(tables[title].items()):
                d = t[t["family"] == fam]
                d = d.iloc[np.argsort(d["kind"].map(order).to_numpy(), kind="stable")]
                x = np.arange(len(d))
                for j, region in enumerate(REGIONS):
                    y = d[region].to_numpy(float)
                    ax.plot(x + (j - 1) * 0.2, y, ls="none", marker="o", ms=5.5,
                            color=BAND_COLOURS[region],
                            mfc=BAND_COLOURS[region] if w == 0 else "white", mew=1.3)
                if w == 0:
                    ticks = ["average" if k == "average" else
                             ("whole" if k == "whole" else s.split(" = ")[-1])
                             for s, k in zip(d["set"], d["kind"])]
                    ax.set_xticks(x, ticks, rotation=60 if len(x) > 4 else 0,
                                  ha="right" if len(x) > 4 else "center")
                    if len(d) > 1 and d["kind"].iloc[0] == "whole":
                        ax.axvline(0.5, color="0.6", lw=0.8, ls="--")
                    if (d["kind"] == "average").any():
                        ax.axvspan(len(d) - 1.5, len(d) - 0.5, color="0.92", lw=0, zorder=0)
                used.add(label)
            ax.set_title(f"{title}: {FAMILY_LABELS.get(fam, fam)}")
            ax.set_ylabel("mAP (%)" if col == 0 else "")
            ax.grid(axis="x", visible=False)
    handles: list[Any] = [Line2D([], [], ls="none", marker="o", color=BAND_COLOURS[k],
                                 label=f"{k} band only" if k != "middle" else "middle band")
                          for k in REGIONS]
    labels = list(next(iter(tables.values())))
    if len(labels) > 1:
        handles += [Line2D([], [], ls="none", marker="o", color="0.3", label=labels[0]),
                    Line2D([], [], ls="none", marker="o", color="0.3", mfc="white",
                           label=labels[1])]
    legend_below(fig, handles, [str(h.get_label()) for h in handles], ncol=min(len(handles), 5))
    return fig


def primary_sets(datasets: str | Sequence[str], text_datasets: str | Sequence[str],
                 model: str = "embedded", data_root: Any = None) -> tuple[str, str, str]:
    """The sets of the chapter's detailed band figure and sweep: the first class-labelled image
    set of ``datasets`` and the first caption set of ``text_datasets`` evaluated by the same
    model (:func:`isoclip.training.embedded.model_for_set`).

    Returns:
        ``(model key, image set, text set)``.

    Raises:
        ValueError: no class-labelled image set (revisited Oxford / Paris have no classes
            for the sweep), or no text set of that image set's model.
    """
    from isoclip.data import suites
    from isoclip.data.registry import dataset_info, datasets_list
    from isoclip.training.embedded import model_for_set

    def labelled(name: str) -> bool:
        return suites.is_embedded(name) or dataset_info(name).layout != "revisited"

    images = [n for n in datasets_list(
        datasets if isinstance(datasets, str) else list(datasets), "image") if labelled(n)]
    if not images:
        raise ValueError(f"datasets: expected at least one class-labelled image set for the "
                         f"band sweep (revisited Oxford / Paris have none), got {datasets!r}")
    key = model_for_set(images[0], model)
    texts = [n for n in datasets_list(
        text_datasets if isinstance(text_datasets, str) else list(text_datasets), "text")
        if model_for_set(n, model) == key]
    if not texts:
        raise ValueError(f"text_datasets: expected a text set evaluated by the model of "
                         f"{images[0]!r} ({key}), got {text_datasets!r}")
    return key, images[0], texts[0]


def ordering_tables(study: BandOrdering) -> dict[str, dict[str, pd.DataFrame]]:
    """Task title (``"image→image"``, ``"text→text"``) -> weights label -> :func:`ordering_table`."""
    return {_TITLES[mod]: {w: ordering_table(study.task(mod, w)) for w in study.results}
            for mod in ("image", "text") if study.task(mod)}


def ordering_verdict_table(study: BandOrdering, model: str = "embedded",
                           pretrained: str | None = None, *, n_boot: int = 2000
                           ) -> pd.DataFrame:
    """:func:`ordering_verdicts` for every task and weights, one row per family.

    Columns ``task, weights, family, n_sets, vs_top, vs_bottom, holds, verdict``; each
    verdict scoped to the model that
    evaluated the family (the tiny default or emoji model; the open_clip model and its
    weights)."""
    from isoclip.studies.verdicts import scope

    family_scope = {"synthetic": "on the tiny default model trained here",
                    "emoji": "on the emoji model trained here"}
    parts = []
    for mod in ("image", "text"):
        for w in study.results:
            res = study.task(mod, w)
            if not res:
                continue
            v = ordering_verdicts(res, "", n_boot=n_boot)
            if v.empty:
                continue
            scopes = [family_scope.get(f, scope(model, pretrained)) if model == "embedded" else
                      f"on {model} ({w})" for f in v["family"]]
            v["verdict"] = [f"{s.strip()} {sc}" for s, sc in zip(v["verdict"], scopes)]
            v.insert(0, "weights", w)
            v.insert(0, "task", _TITLES[mod])
            parts.append(v)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def ordering_glue(verdicts: pd.DataFrame) -> dict[str, Any]:
    """Glue values of the model's own verdicts (:func:`ordering_verdict_table`, first weights),
    per task (``image``, ``text``) and family: ``ord_<task>_<family>_verdict``
    (``"reproduced"`` / ``"not reproduced"``), ``..._vs_top`` and ``..._vs_bottom`` (middle −
    end with its interval) and ``..._n`` (sets averaged)."""
    if verdicts.empty:
        return {}
    main = verdicts["weights"].iloc[0]
    tasks = {v: k for k, v in _TITLES.items()}
    out: dict[str, Any] = {}
    for row in verdicts[verdicts["weights"] == main].itertuples(index=False):
        key = f"ord_{tasks[str(row.task)]}_{row.family}"
        out[f"{key}_verdict"] = "reproduced" if row.holds else "not reproduced"
        out[f"{key}_vs_top"] = row.vs_top
        out[f"{key}_vs_bottom"] = row.vs_bottom
        out[f"{key}_n"] = int(row.n_sets)
    return out


def ordering_reading(verdicts: pd.DataFrame) -> str:
    """One sentence per task and family from :func:`ordering_verdict_table`; where a random-init
    control was run, whether the pretrained model's verdict separates from it (a claim counts
    only where it does)."""
    from isoclip.studies.controls import RANDOM_INIT
    from isoclip.studies.suite import FAMILY_LABELS

    if verdicts.empty:
        return ""
    out = []
    weights = list(dict.fromkeys(verdicts["weights"]))
    main = weights[0]
    for (task, fam), part in verdicts.groupby(["task", "family"], sort=False):
        row = part.set_index("weights")
        m = row.loc[main]
        text = (f"{task}, {FAMILY_LABELS.get(fam, fam)} ({int(m['n_sets'])} sets averaged): "
                f"{m['verdict']} (middle − top {m['vs_top']}, middle − bottom "
                f"{m['vs_bottom']} mAP).")
        if RANDOM_INIT in row.index and main != RANDOM_INIT:
            c = row.loc[RANDOM_INIT]
            text += (" The random-init control gives the same verdict, so it does not count "
                     "for pretraining." if bool(c["holds"]) == bool(m["holds"]) else
                     " The random-init control gives the opposite verdict: the pretrained "
                     "model separates from it.")
        out.append(text)
    return " ".join(out)

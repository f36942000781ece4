"""Modality inversion, evaluated: cached OTI/OVI runs and the Cross the Gap study (chapter 3).

Cross the Gap (Mistretta et al., ICLR 2025; book notation page, eq-oti, eq-ovi) argues that CLIP's
intra-modal similarities are *misaligned*: image→image retrieval with image embeddings does worse
than first turning each query image into a text-encoder feature by OTI and then retrieving images
with it (an **inter-modal** comparison), and likewise text→text through OVI. This module runs those
inversions on a batch of targets with on-disk caching (:func:`invert`), picks seeded class-balanced
query subsets (:func:`balanced_subset`) so that a CPU budget can be met, and assembles the study of
chapter 3 (:func:`inversion_study`):

* retrieval, same query subset for every method: CLIP image→image (intra-modal), OTI
  image→image (OTI feature against gallery *image* features, inter-modal, CTG
  ``retrieval.py`` l.140-155), IsoCLIP image→image; CLIP text→text, OVI text→text (OVI
  feature against gallery *text* features), IsoCLIP text→text;
* mAP against inversion step, from the snapshots of the optimisation;
* zero-shot classification done intra-modally through OTI (CTG ``ZeroShotOTI``): each
  query image's OTI feature (a text feature) is classified by text-text cosine against the
  class prompt embeddings, beside CLIP's usual image-text zero-shot on the same images.

Batches: the targets are inverted in consecutive chunks of ``batch_size`` (official: 64),
jointly within a chunk with independent pseudo-tokens. Chunk k is initialised with seed
``seed + k`` (the official scripts seed once and draw each batch's initialisation from the
running global generator, so batches get different initialisations there too).

Threads: the inversions are many small forward/backward passes; on a shared 2-core machine
PyTorch's intra-op threads oversubscribe the cores and slow them down by an order of magnitude,
so :func:`invert` runs with ``num_threads`` (default 1) threads and restores the setting.
Results depend on the thread count only at float round-off.

Cache (:mod:`isoclip.baselines.inversion_runner`: kind ``"inversions"`` for a finished run,
``"inversion_batches"`` for the chunks of a run in progress, so an interrupted run resumes at
the chunk it was computing; under ``torchrun`` the chunks are shared out over the ranks): the
key (:func:`inversion_key_material`) holds the model
fingerprint, the sha256 of the target features (which fixes the data), every inversion
hyper-parameter (method, steps, lr, weight decay, init std, seed, R or P, template,
placeholder, batch size, snapshot steps), :data:`INVERSION_EVAL_VERSION` (the version of the
chunked driver), the sha256 of the
code of :mod:`isoclip.baselines.inversion` without docstrings and comments
(:func:`isoclip.common.cache.source_fingerprint`: any change to the optimisation invalidates
the entries)
and the torch version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from isoclip.baselines import inversion
from isoclip.baselines.inversion_runner import run_inversion
from isoclip.common.cache import source_fingerprint
from isoclip.data.world.synthetic import SyntheticWorld
from isoclip.evaluate.classification import evaluate_zero_shot
from isoclip.evaluate.retrieval import evaluate, query_metrics
from isoclip.evaluate.stats import balanced_subset, integer_labels, paired_bootstrap
from isoclip.method.bands import Band, iso_projectors, paper_scaled_band
from isoclip.method.projectors import get_projectors
from isoclip.models.features import zero_shot_weights
from isoclip.models.loading import ModelBundle
from isoclip.studies.world import world_features

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "INVERSION_EVAL_VERSION",
    "OTI_SNAPSHOTS",
    "OVI_SNAPSHOTS",
    "InversionStudy",
    "Inverted",
    "balanced_subset",
    "inversion_glue",
    "inversion_key_material",
    "inversion_study",
    "invert",
    "paired_bootstrap",
    "snapshot_curve",
    "summary_table",
]

#: Version of this module's inversion driver; bump when a change alters cached results.
INVERSION_EVAL_VERSION = 1
#: Targets inverted jointly per optimisation (the official ``batch_size: 64``).
DEFAULT_BATCH_SIZE = 64
#: Default OTI snapshot steps: dense early (the CTG poster's mAP peaks near step 17).
OTI_SNAPSHOTS: tuple[int, ...] = (0, 1, 2, 5, 10, 17, 25, 50, 75, 100, 150)
#: Default OVI snapshot steps.
OVI_SNAPSHOTS: tuple[int, ...] = (0, 5, 10, 17, 25, 50, 100, 250, 500, 750, 1000)

Method = Literal["OTI", "OVI"]


@dataclass(frozen=True, eq=False)
class Inverted:
    """The inversion of N targets (OTI: image features -> text features; OVI: the reverse).

    Attributes:
        method: ``"OTI"`` or ``"OVI"``.
        features: [N, d] float32 inverted features (projected, unnormalised), after the last
            step.
        snapshots: step k -> [N, d] features after k updates (the requested snapshot steps).
        losses: [steps] float64 mean over the N targets of ``1 - cos`` before each update.
        final_cos: [N] cosine between each inverted feature and its target.
        hparams: every hyper-parameter of the run (part of the cache key).
        build_seconds: wall time of the optimisation when the cache entry was made.
        from_cache: whether this call loaded the result from the cache.
    """

    method: str
    features: Tensor
    snapshots: dict[int, Tensor]
    losses: Tensor
    final_cos: Tensor
    hparams: dict[str, Any]
    build_seconds: float
    from_cache: bool = field(default=False)


# ---------------------------------------------------------------------------------------------
# cached inversion

def _tensor_sha256(x: Tensor) -> str:
    x = x.detach().to("cpu", torch.float32).contiguous()
    h = hashlib.sha256(str(tuple(x.shape)).encode())
    h.update(x.numpy().tobytes())
    return h.hexdigest()


def _inversion_code_hash() -> str:
    return source_fingerprint(inversion)


def _hparams(method: Method, steps: int | None, num_pseudo: int | None, lr: float,
             weight_decay: float, init_std: float, seed: int, template: str, placeholder: str,
             batch_size: int, snapshot_steps: Sequence[int]) -> dict[str, Any]:
    if method not in ("OTI", "OVI"):
        raise ValueError(f"method: expected 'OTI' or 'OVI', got {method!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
    if steps is None:
        steps = inversion.OTI_STEPS if method == "OTI" else inversion.OVI_STEPS
    if num_pseudo is None:
        num_pseudo = (inversion.OTI_NUM_PSEUDO_TOKENS if method == "OTI"
                      else inversion.OVI_NUM_PSEUDO_PATCHES)
    snaps = sorted({int(k) for k in snapshot_steps})
    hp: dict[str, Any] = {"method": method, "steps": steps, "num_pseudo": num_pseudo, "lr": lr,
                          "weight_decay": weight_decay, "init_std": init_std, "seed": seed,
                          "batch_size": batch_size, "snapshot_steps": snaps}
    if method == "OTI":
        hp.update(template=template, placeholder=placeholder)
    return hp


def inversion_key_material(bundle: ModelBundle, targets: Tensor,
                           hparams: dict[str, Any]) -> dict[str, Any]:
    """Cache key material of one inversion run (see the module docstring)."""
    return {
        "what": "inversion",
        "version": INVERSION_EVAL_VERSION,
        "inversion_code": _inversion_code_hash(),
        "model": bundle.fingerprint,
        "model_name": bundle.name,
        "pretrained": bundle.pretrained,
        "targets": _tensor_sha256(targets),
        "n_targets": int(targets.shape[0]),
        "hparams": hparams,
        "torch": torch.__version__.split("+")[0],
    }


def invert(
    bundle: ModelBundle,
    targets: Tensor,
    method: Method,
    *,
    steps: int | None = None,
    snapshot_steps: Sequence[int] = (),
    num_pseudo: int | None = None,
    lr: float = inversion.LEARNING_RATE,
    weight_decay: float = inversion.WEIGHT_DECAY,
    init_std: float = inversion.INIT_STD,
    seed: int = inversion.SEED,
    template: str = inversion.OTI_TEMPLATE,
    placeholder: str = inversion.PLACEHOLDER,
    batch_size: int = DEFAULT_BATCH_SIZE,
    num_threads: int | None = 1,
    cache: bool = True,
    progress: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> Inverted:
    """OTI or OVI of every row of ``targets``, in chunks, cached on disk, resumable.

    The run goes through :func:`isoclip.baselines.inversion_runner.run_inversion`: every
    finished chunk is cached on its own, so an interrupted call resumes where it stopped; the
    merged result is cached under :func:`inversion_key_material`; under ``torchrun`` the
    chunks are shared out over the ranks (a collective: call it on every rank) and the
    result equals the one-process run.

    Args:
        bundle: the model (its ``model`` is put in eval mode for the run, then restored).
        targets: [N, d] target features: projected image features for OTI
            (``encode_image``), projected text features for OVI (``encode_text``).
        method: ``"OTI"`` or ``"OVI"``.
        steps: AdamW steps (None: the paper's, 150 for OTI and 1000 for OVI).
        snapshot_steps: steps k at which to keep the features after k updates (each in
            ``[0, steps]``).
        num_pseudo: R pseudo-tokens (OTI) or P pseudo-patches (OVI); None: the official
            value for CLIP B/32 (1 and 1).
        lr, weight_decay, init_std, seed: as in :func:`isoclip.baselines.inversion.oti`; chunk k uses
            seed ``seed + k``.
        template, placeholder: OTI's template and placeholder (ignored by OVI).
        batch_size: targets optimised jointly per chunk.
        num_threads: torch intra-op threads during the run (None: leave as is).
        cache: read/write the on-disk cache (merged result and finished chunks).
        progress: a tqdm bar over the queries with the ETA.
        on_batch: called with the chunk index after each chunk computed (and cached).

    Returns:
        :class:`Inverted`.

    Raises:
        ValueError: bad arguments (named in the message).
    """
    hp = _hparams(method, steps, num_pseudo, lr, weight_decay, init_std, seed, template,
                  placeholder, batch_size, snapshot_steps)
    if not isinstance(targets, Tensor) or targets.ndim != 2 or targets.shape[0] == 0:
        shape = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
        raise ValueError(f"targets: expected a non-empty tensor [N, d], got {shape}")
    bad = [k for k in hp["snapshot_steps"] if not 0 <= k <= hp["steps"]]
    if bad:
        raise ValueError(f"snapshot_steps: {bad} outside [0, steps={hp['steps']}]")
    run = run_inversion(bundle.model, bundle.tokenizer,
                        targets.detach().to(bundle.device, torch.float32), hp,
                        inversion_key_material(bundle, targets, hp), num_threads=num_threads,
                        cache=cache, progress=progress, on_batch=on_batch)
    payload = run.payload
    return Inverted(method=method, features=payload["features"], snapshots=payload["snapshots"],
                    losses=payload["losses"], final_cos=payload["final_cos"], hparams=hp,
                    build_seconds=float(payload["seconds"]), from_cache=run.from_cache)


def snapshot_curve(inv: Inverted, targets: Tensor, gallery: Tensor, query_labels: Any,
                   gallery_labels: Any) -> pd.DataFrame:
    """Retrieval quality of the inverted queries at every snapshot step.

    Args:
        inv: an :class:`Inverted` with snapshots.
        targets: [N, d] the targets it was inverted from (for the cosine to the target).
        gallery: [G, d] gallery features the inverted queries are ranked against.
        query_labels: [N]; gallery_labels: [G].

    Returns:
        One row per snapshot step, in increasing order: ``method, step, mAP, R@1, cos``
        (``cos``: mean cosine between the snapshot and its target; ``1 - cos`` is the loss).
    """
    t = targets.detach().float().cpu()
    rows = []
    for step in sorted(inv.snapshots):
        q = inv.snapshots[step]
        m = evaluate(q, gallery, query_labels, gallery_labels)
        rows.append({"method": inv.method, "step": step, "mAP": m["mAP"], "R@1": m["R@1"],
                     "cos": float(F.cosine_similarity(q, t, dim=-1).mean())})
    return pd.DataFrame(rows)




# ---------------------------------------------------------------------------------------------
# the chapter-3 study

@dataclass
class InversionStudy:
    """Everything chapter 3 reports.

    Attributes:
        retrieval: one row per (task, method) on the query subsets: ``task, method,
            comparison, queries, gallery, mAP, mAP@R, R@1``; tasks ``"image→image"`` (CLIP,
            OTI, IsoCLIP) and ``"text→text"`` (CLIP, OVI, IsoCLIP).
        full_queries: the CLIP and IsoCLIP rows again on every query (no subset), for
            reference.
        curves: :func:`snapshot_curve` of OTI and OVI, concatenated.
        zero_shot: ``{"clip_top1", "oti_top1", "n_images"}`` (percent): CLIP zero-shot
            (image-text cosine) and intra-modal zero-shot through OTI (text-text cosine) on
            the OTI query subset, with the same class weights.
        deltas: paired differences against CLIP on the same items, with 95 % bootstrap
            intervals (:func:`paired_bootstrap`, per-query AP or per-image correctness, in
            points): one row per ``key`` ``img_OTI, img_IsoCLIP, txt_OVI, txt_IsoCLIP,
            zero_shot_OTI`` with ``delta, lo, hi, n``.
        oti, ovi: the :class:`Inverted` runs.
        image_subset, text_subset: indices of the inverted query images / texts.
        image_band, text_band: the IsoCLIP bands used.
    """

    retrieval: pd.DataFrame
    full_queries: pd.DataFrame
    curves: pd.DataFrame
    zero_shot: dict[str, float]
    deltas: pd.DataFrame
    oti: Inverted
    ovi: Inverted
    image_subset: Tensor
    text_subset: Tensor
    image_band: Band
    text_band: Band


def _row(task: str, method: str, comparison: str, q: Tensor, g: Tensor, ql: Any,
         gl: Any) -> dict[str, Any]:
    m = evaluate(q, g, ql, gl)
    return {"task": task, "method": method, "comparison": comparison,
            "queries": int(m["n_queries"]), "gallery": int(g.shape[0]),
            "mAP": m["mAP"], "mAP@R": m["mAP@R"], "R@1": m["R@1"]}


def inversion_study(
    bundle: ModelBundle,
    world: SyntheticWorld | Any,
    *,
    oti_per_class: int | None = None,
    ovi_per_class: int | None = None,
    subset_seed: int = 0,
    oti_steps: int = inversion.OTI_STEPS,
    ovi_steps: int = inversion.OVI_STEPS,
    oti_snapshots: Sequence[int] = OTI_SNAPSHOTS,
    ovi_snapshots: Sequence[int] = OVI_SNAPSHOTS,
    num_pseudo_tokens: int = inversion.OTI_NUM_PSEUDO_TOKENS,
    num_pseudo_patches: int = inversion.OVI_NUM_PSEUDO_PATCHES,
    seed: int = inversion.SEED,
    batch_size: int = DEFAULT_BATCH_SIZE,
    image_band: Band | None = None,
    text_band: Band | None = None,
    num_threads: int | None = 1,
    n_boot: int = 2000,
    cache: bool = True,
    progress: bool = False,
    template: str = inversion.OTI_TEMPLATE,
) -> InversionStudy:
    """Intra-modal vs inversion-based retrieval and zero-shot on a synthetic world or any
    collection with its splits (:mod:`isoclip.studies.world`).

    Args:
        bundle, world: the model and the world (e.g. ``embedded.embedded_default()``), or
            any collection (:class:`isoclip.data.base.Collection`, the emoji data); without
            ``prompts`` the zero-shot part is skipped, ``zero_shot_labels`` (if present) are
            the zero-shot classes of the query images.
        template: OTI's prompt template around the pseudo-token (Cross the Gap: "a photo of
            {}"; a model trained on other captions may want its own, e.g. "an emoji of {}").
        oti_per_class: query images per class inverted by OTI (:func:`balanced_subset`;
            None: all query images).
        ovi_per_class: held-out-template query captions per class inverted by OVI (None: all).
        subset_seed: seed of both subsets.
        oti_steps, ovi_steps: optimisation steps (paper: 150, 1000).
        oti_snapshots, ovi_snapshots: snapshot steps of the mAP-vs-step curves (entries
            beyond the number of steps are dropped; the last step is always added).
        num_pseudo_tokens, num_pseudo_patches: R and P.
        seed, batch_size, num_threads, cache, progress: as in :func:`invert`.
        n_boot: bootstrap resamples of the paired intervals (seeded with ``subset_seed``).
        image_band, text_band: IsoCLIP bands (None: the paper's ViT-B/32 image-image and
            text-text bands scaled to the rank of Psi, :func:`isoclip.method.bands.paper_scaled_band`).

    Returns:
        :class:`InversionStudy`.
    """
    f = world_features(bundle, world, "projected")
    pre = world_features(bundle, world, "preproj")
    f_tq, f_tg = f.text_task()
    pre_tq, pre_tg = pre.text_task()
    P = get_projectors(bundle.model)
    r = min(P.d_i, P.d_t)
    image_band = image_band or paper_scaled_band(r, task="image")
    text_band = text_band or paper_scaled_band(r, task="text")
    iso_i, iso_t = iso_projectors(P, image_band), iso_projectors(P, text_band)

    qi_lab, gi_lab = integer_labels(world.query.labels), integer_labels(world.gallery.labels)
    qt_lab, gt_lab = integer_labels(world.text_query.labels), integer_labels(world.text_gallery.labels)
    si = balanced_subset(qi_lab, oti_per_class, subset_seed)
    st = balanced_subset(qt_lab, ovi_per_class, subset_seed)

    def snaps(wanted: Sequence[int], steps: int) -> list[int]:
        return sorted({int(k) for k in wanted if 0 <= int(k) <= steps} | {steps})

    oti_targets = f.query_images[si]
    ovi_targets = f_tq[st]
    oti_run = invert(bundle, oti_targets, "OTI", steps=oti_steps,
                     snapshot_steps=snaps(oti_snapshots, oti_steps), num_pseudo=num_pseudo_tokens,
                     seed=seed, batch_size=batch_size, num_threads=num_threads, cache=cache,
                     progress=progress, template=template)
    ovi_run = invert(bundle, ovi_targets, "OVI", steps=ovi_steps,
                     snapshot_steps=snaps(ovi_snapshots, ovi_steps),
                     num_pseudo=num_pseudo_patches, seed=seed, batch_size=batch_size,
                     num_threads=num_threads, cache=cache, progress=progress)

    with torch.no_grad():
        iso_qi = iso_i.project_image(pre.query_images.to(P.dtype)).float()
        iso_gi = iso_i.project_image(pre.gallery_images.to(P.dtype)).float()
        iso_qt = iso_t.project_text(pre_tq.to(P.dtype)).float()
        iso_gt = iso_t.project_text(pre_tg.to(P.dtype)).float()

    ii, tt = "image→image", "text→text"
    rows = [
        _row(ii, "CLIP", "intra-modal", f.query_images[si], f.gallery_images, qi_lab[si], gi_lab),
        _row(ii, "OTI", "inter-modal (OTI text feature vs images)", oti_run.features,
             f.gallery_images, qi_lab[si], gi_lab),
        _row(ii, "IsoCLIP", "intra-modal, band-filtered", iso_qi[si], iso_gi, qi_lab[si], gi_lab),
        _row(tt, "CLIP", "intra-modal", f_tq[st], f_tg, qt_lab[st], gt_lab),
        _row(tt, "OVI", "inter-modal (OVI image feature vs texts)", ovi_run.features,
             f_tg, qt_lab[st], gt_lab),
        _row(tt, "IsoCLIP", "intra-modal, band-filtered", iso_qt[st], iso_gt, qt_lab[st], gt_lab),
    ]
    full = [
        _row(ii, "CLIP", "intra-modal", f.query_images, f.gallery_images, qi_lab, gi_lab),
        _row(ii, "IsoCLIP", "intra-modal, band-filtered", iso_qi, iso_gi, qi_lab, gi_lab),
        _row(tt, "CLIP", "intra-modal", f_tq, f_tg, qt_lab, gt_lab),
        _row(tt, "IsoCLIP", "intra-modal, band-filtered", iso_qt, iso_gt, qt_lab, gt_lab),
    ]
    curves = pd.concat([
        snapshot_curve(oti_run, oti_targets, f.gallery_images, qi_lab[si], gi_lab),
        snapshot_curve(ovi_run, ovi_targets, f_tg, qt_lab[st], gt_lab),
    ], ignore_index=True)

    prompts = getattr(world, "prompts", None)
    zl = getattr(world, "zero_shot_labels", None)
    z_lab = (qi_lab if zl is None else integer_labels(zl))[si]
    weights = None if prompts is None else zero_shot_weights(bundle, prompts, progress=False)
    zero_shot = {} if weights is None else {
        "clip_top1": evaluate_zero_shot(oti_targets, weights, z_lab)["top1"],
        "oti_top1": evaluate_zero_shot(oti_run.features, weights, z_lab)["top1"],
        "n_images": len(si),
    }

    def ap(q: Tensor, g: Tensor, ql: Tensor, gl: Tensor) -> Tensor:
        return 100.0 * query_metrics(q, g, ql, gl)["mAP"]

    def correct(x: Tensor, w: Tensor) -> Tensor:
        logits = F.normalize(x.float(), dim=-1) @ F.normalize(w.float(), dim=-1).T
        return 100.0 * (logits.argmax(1) == z_lab).double()

    base_i = ap(f.query_images[si], f.gallery_images, qi_lab[si], gi_lab)
    base_t = ap(f_tq[st], f_tg, qt_lab[st], gt_lab)
    pairs = {
        "img_OTI": (base_i, ap(oti_run.features, f.gallery_images, qi_lab[si], gi_lab)),
        "img_IsoCLIP": (base_i, ap(iso_qi[si], iso_gi, qi_lab[si], gi_lab)),
        "txt_OVI": (base_t, ap(ovi_run.features, f_tg, qt_lab[st], gt_lab)),
        "txt_IsoCLIP": (base_t, ap(iso_qt[st], iso_gt, qt_lab[st], gt_lab)),
    }
    if weights is not None:
        pairs["zero_shot_OTI"] = (correct(oti_targets, weights),
                                 correct(oti_run.features, weights))
    deltas = pd.DataFrame([{"key": k, **paired_bootstrap(a, b, n_boot=n_boot, seed=subset_seed)}
                           for k, (a, b) in pairs.items()])
    return InversionStudy(retrieval=pd.DataFrame(rows), full_queries=pd.DataFrame(full),
                          curves=curves, zero_shot=zero_shot, deltas=deltas, oti=oti_run,
                          ovi=ovi_run, image_subset=si, text_subset=st,
                          image_band=image_band, text_band=text_band)


# ---------------------------------------------------------------------------------------------
# chapter 3's numbers in its prose

def inversion_glue(study: InversionStudy, bundle: ModelBundle, world: SyntheticWorld | Any,
                   *, subset_seed: int = 0) -> dict[str, Any]:
    """Every value chapter 3's prose quotes about one :func:`inversion_study` (glue name ->
    value): sizes and settings of the run, the retrieval of CLIP / OTI / OVI / IsoCLIP on the
    inverted subsets with their paired intervals and verdicts (read off the intervals,
    :mod:`isoclip.studies.verdicts`, scoped to the tiny model), the inverted features' cosine
    to their targets against a real image-caption pair's, the mAP-vs-step curves and the
    zero-shot classification through OTI.

    Args:
        study, bundle, world: the study and what it was run on.
        subset_seed: the seed of the query subsets (reported).
    """
    from isoclip.studies import verdicts

    n_cls = len(world.class_names)
    g: dict[str, Any] = {
        "n_classes": n_cls, "n_query": len(world.query), "n_gallery": len(world.gallery),
        "n_text_query": len(world.text_query), "n_text_gallery": len(world.text_gallery),
        "n_oti": len(study.image_subset), "n_ovi": len(study.text_subset),
        "oti_per_class": len(study.image_subset) // n_cls,
        "ovi_per_class": len(study.text_subset) // n_cls, "subset_seed": subset_seed,
        "oti_steps": study.oti.hparams["steps"], "ovi_steps": study.ovi.hparams["steps"],
        "R": study.oti.hparams["num_pseudo"], "P_patches": study.ovi.hparams["num_pseudo"],
        "batch_size": study.oti.hparams["batch_size"],
        "oti_seconds": study.oti.build_seconds, "ovi_seconds": study.ovi.build_seconds,
        "oti_ms_per_query": 1e3 * study.oti.build_seconds / len(study.image_subset),
        "ovi_ms_per_query": 1e3 * study.ovi.build_seconds / len(study.text_subset)}
    for tag, subset, full in (("oti", study.image_subset, world.query),
                              ("ovi", study.text_subset, world.text_query)):
        g[f"subset_{tag}"] = ("a seeded class-balanced subset of" if len(subset) < len(full)
                              else "all")
    ret = study.retrieval.set_index(["task", "method"])
    deltas = study.deltas.set_index("key")

    def verdict(key: str) -> str:  # from the 95 % paired interval, not the point estimate
        return verdicts.change(float(deltas.loc[key, "lo"]), float(deltas.loc[key, "hi"]))

    ii, tt = "image→image", "text→text"
    for task, tag, inv in ((ii, "img", "OTI"), (tt, "txt", "OVI")):
        clip, inverted, iso = (float(ret.loc[(task, m), "mAP"]) for m in ("CLIP", inv, "IsoCLIP"))
        g.update({f"{tag}_clip": clip, f"{tag}_inv": inverted, f"{tag}_iso": iso})
        for which, key in (("inv", f"{tag}_{inv}"), ("iso", f"{tag}_IsoCLIP")):
            for col in ("delta", "lo", "hi"):
                g[f"{tag}_{which}_{col}"] = float(deltas.loc[key, col])
            g[f"{tag}_{which}_verdict"] = verdict(key)
        g[f"{tag}_inv_reproduced"] = verdicts.reproduces(verdict(f"{tag}_{inv}") == "raises")
        g[f"{tag}_iso_vs_inv"] = "above" if iso > inverted else "below"
        g[f"{tag}_headroom"] = 100.0 - clip
    full_q = study.full_queries.set_index(["task", "method"])
    g["img_clip_full"] = float(full_q.loc[(ii, "CLIP"), "mAP"])
    g["txt_clip_full"] = float(full_q.loc[(tt, "CLIP"), "mAP"])
    g["img_band"] = f"({study.image_band.k_top}, {study.image_band.k_bottom})"
    g["txt_band"] = f"({study.text_band.k_top}, {study.text_band.k_bottom})"
    g["verdict_scope"] = verdicts.scope()
    g["txt_ceiling_note"] = (
        ": the held-out captions name their class, so text→text retrieval in this world is close "
        "to solved and no method can show much of a gain"
        if verdicts.near_ceiling(float(ret.loc[(tt, "CLIP"), "mAP"])) else " for the methods below")
    oti_cos, ovi_cos = float(study.oti.final_cos.mean()), float(study.ovi.final_cos.mean())
    feats = world_features(bundle, world)
    pair_cos = float(F.cosine_similarity(feats.query_images, feats.query_captions, dim=-1).mean())
    above = min(oti_cos, ovi_cos) > pair_cos
    g.update({"oti_final_cos": oti_cos, "ovi_final_cos": ovi_cos, "pair_cos": pair_cos,
              "inv_vs_pair": "both higher than" if above else (
                  "both lower than" if max(oti_cos, ovi_cos) < pair_cos else "on either side of"),
              "inv_vs_pair_reading": (
                  "Although produced by the other encoder, the inverted feature sits closer to "
                  "its target than a real caption does: inversion crosses the modality gap "
                  "instead of stopping on the other modality's side of it." if above else
                  "The inversions do not get closer to their targets than real image-caption "
                  "pairs are.")})
    curves = study.curves
    for inv, tag in (("OTI", "oti"), ("OVI", "ovi")):
        c = curves[curves["method"] == inv].reset_index(drop=True)
        curve = verdicts.inversion_curve(c["step"], c["mAP"])  # best, last, early peak
        g.update({f"{tag}_best_step": curve.best_step, f"{tag}_best_map": curve.best_map,
                  f"{tag}_last_step": curve.last_step, f"{tag}_last_map": curve.last_map,
                  f"{tag}_step0_map": float(c.iloc[0]["mAP"]), f"{tag}_shape": curve.shape})
        base = float(ret.loc[(ii if inv == "OTI" else tt, "CLIP"), "mAP"])
        crossed = c[c["mAP"] > base]
        g[f"{tag}_cross"] = (f"first exceeds CLIP's intra-modal mAP at step "
                             f"{int(crossed['step'].iloc[0])}" if len(crossed)
                             else "never exceeds CLIP's intra-modal mAP")
        g[f"{tag}_early"] = verdicts.reproduces(curve.early_peak)
    g["peak_min_drop"] = verdicts.PEAK_MIN_DROP
    zs = study.zero_shot
    if zs:
        lo, hi = float(deltas.loc["zero_shot_OTI", "lo"]), float(deltas.loc["zero_shot_OTI", "hi"])
        word = verdicts.change_of_accuracy(lo, hi)
        g.update({"zs_n": zs["n_images"], "zs_clip": zs["clip_top1"], "zs_oti": zs["oti_top1"],
                  "zs_delta": float(deltas.loc["zero_shot_OTI", "delta"]), "zs_lo": lo,
                  "zs_hi": hi, "zs_verdict": word,
                  "zs_reproduced": verdicts.reproduces(word == "drops"),
                  "zs_chance": 100.0 / n_cls})
    return g


def summary_table(study: InversionStudy) -> pd.DataFrame:
    """Chapter 3's summary: image→image mAP through OTI, text→text mAP through OVI and
    zero-shot top-1 through OTI, for CLIP (intra-modal), the inversion and IsoCLIP (which
    does not apply to zero-shot: NaN), on the inverted subsets."""
    ret = study.retrieval.set_index(["task", "method"])
    zs = study.zero_shot
    ii, tt = "image→image", "text→text"
    nan = float("nan")
    return pd.DataFrame({
        "CLIP (intra-modal)": [ret.loc[(ii, "CLIP"), "mAP"], ret.loc[(tt, "CLIP"), "mAP"],
                               zs.get("clip_top1", nan)],
        "OTI / OVI (inverted)": [ret.loc[(ii, "OTI"), "mAP"], ret.loc[(tt, "OVI"), "mAP"],
                                 zs.get("oti_top1", nan)],
        "IsoCLIP": [ret.loc[(ii, "IsoCLIP"), "mAP"], ret.loc[(tt, "IsoCLIP"), "mAP"], nan],
    }, index=pd.Index(["image→image mAP (OTI)", "text→text mAP (OVI)",
                       "zero-shot top-1 % (through OTI)"], name="on the inverted subsets"))


"""Intra-modal retrieval: CLIP, OTI, OVI and IsoCLIP on the same queries, with paired
intervals (IsoCLIP's image-image and text-text tables).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from isoclip.data.world.synthetic import SyntheticWorld
from isoclip.evaluate.stats import compare_retrieval
from isoclip.models.loading import ModelBundle
from isoclip.studies.world import world_features

__all__ = ["intra_modal_retrieval_study"]


def intra_modal_retrieval_study(bundle: ModelBundle, world: SyntheticWorld | Any, study: Any,
                                image_bands: dict[str, Any], text_bands: dict[str, Any], *,
                                n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Image→image and text→text retrieval of CLIP, the inversion (OTI / OVI, from chapter 3's
    :class:`isoclip.studies.inversion.InversionStudy`) and IsoCLIP with several bands.

    Args:
        bundle, world: the model and the world (or any collection with its splits,
            :mod:`isoclip.studies.world`) the study was run on.
        study: :func:`isoclip.studies.inversion.inversion_study` output (its inverted features and
            query subsets are reused, nothing is re-inverted).
        image_bands, text_bands: label -> :class:`isoclip.method.bands.Band` of an IsoCLIP row each,
            e.g. ``{"automatic": ..., "oracle": ..., "paper-scaled": ...}``.
        n_boot, seed: paired bootstrap of the differences with CLIP.

    Returns:
        :func:`compare_retrieval` rows with ``task`` (``"image→image"``/``"text→text"``),
        ``scope`` (``"inverted subset"``: the queries OTI/OVI inverted, every method;
        ``"all queries"``: every query, no inversion row) and ``band`` (``"(k_top, k_bottom)"``
        for IsoCLIP rows, empty otherwise) prepended.
    """
    from isoclip.method.bands import iso_projectors
    from isoclip.method.projectors import get_projectors

    f = world_features(bundle, world, "projected")
    pre = world_features(bundle, world, "preproj")
    P = get_projectors(bundle.model)
    specs = (
        ("image→image", "OTI", study.oti.features, study.image_subset, f.query_images,
         f.gallery_images, pre.query_images, pre.gallery_images, world.query.labels,
         world.gallery.labels, image_bands, "image"),
        ("text→text", "OVI", study.ovi.features, study.text_subset, *f.text_task(),
         *pre.text_task(), world.text_query.labels,
         world.text_gallery.labels, text_bands, "text"),
    )
    out = []
    for task, inv, inv_feats, sub, q, g, pq, pg, ql, gl, bands, mod in specs:
        ql, gl, sub = np.array(ql), np.array(gl), sub.numpy()
        iso = {}
        for label, band in bands.items():
            Pb = iso_projectors(P, band).to(pq.dtype)
            proj = Pb.project_image if mod == "image" else Pb.project_text
            iso[f"IsoCLIP ({label})"] = (proj(pq).detach(), proj(pg).detach(), band)
        band_text = {name: f"({b.k_top}, {b.k_bottom})" for name, (_, _, b) in iso.items()}
        for scope in ("inverted subset", "all queries"):
            rows = sub if scope == "inverted subset" else np.arange(len(ql))
            methods = {"CLIP": (q[rows], g)}
            if scope == "inverted subset":
                methods[inv] = (inv_feats, g)
            methods.update({name: (iq[rows], ig) for name, (iq, ig, _) in iso.items()})
            t = compare_retrieval(methods, ql[rows], gl, n_boot=n_boot, seed=seed)
            t.insert(0, "band", t["method"].map(band_text).fillna(""))
            t.insert(0, "scope", scope)
            t.insert(0, "task", task)
            out.append(t)
    return pd.concat(out, ignore_index=True)

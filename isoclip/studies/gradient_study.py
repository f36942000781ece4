"""The projector-decomposition chapter's study (IsoCLIP RQ1, Sec. 3; book notation page,
``eq-grad-features``): the two terms of the CLIP-loss gradient and the spectra of the
operators at every checkpoint saved during training, and how radial the normalisation term is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from isoclip.method.gradients import gradient_term_norms
from isoclip.method.operator import effective_rank, psi_image, psi_text, svd
from isoclip.method.projectors import (
    Projectors,
    encode_image_preproj,
    encode_text_preproj,
    get_projectors,
)

__all__ = ["TERM_COLUMNS", "radial_residual", "training_trajectory"]

#: Columns of :func:`training_trajectory`'s table: the four gradient-term norms.
TERM_COLUMNS = ("‖Ψ term‖ (image)", "‖Ψᵢ term‖ (image)", "‖Ψ term‖ (text)", "‖Ψₜ term‖ (text)")


def radial_residual(P: Projectors, f: Tensor, term: Tensor) -> Tensor:
    """How far the image normalisation term is from the pull-back ``W_iᵀ`` of a vector
    parallel to the embedding ``u = W_i f``: per row, fit ``term ≈ λ · (u W_i)`` by least
    squares and return the relative residual ``‖term − λ u W_i‖ / ‖term‖``.

    Args:
        P: projectors (float64). f: [N, d_i] pre-projection image features.
        term: [N, d_i] the normalisation term (``feature_gradients(...).image_normalization``).

    Returns:
        [N] relative residuals (0: exactly radial).
    """
    u = f @ P.W_i.T
    pulled = u @ P.W_i
    lam = (term * pulled).sum(1, keepdim=True) / (pulled * pulled).sum(1, keepdim=True)
    out: Tensor = (term - lam * pulled).norm(dim=1) / term.norm(dim=1)
    return out


def training_trajectory(trained: Any, images: Tensor, tokens: Tensor
                        ) -> tuple[pd.DataFrame, dict[int, dict[str, np.ndarray]]]:
    """The gradient terms and the operator spectra at every checkpoint of a training run, on
    one fixed batch.

    Args:
        trained: a :class:`isoclip.training.trainer.TrainedModel` (its ``checkpoints``,
            ``model_at(step)`` and training ``log`` with the temperature of each step).
        images: [N, 3, H, W] the batch's images; tokens: [N, L] its tokenised captions.

    Returns:
        A table with one row per checkpoint (``step``, ``τ``, the :data:`TERM_COLUMNS` norms
        and the effective ranks of Ψ, Ψᵢ, Ψₜ), and step → {"Ψ", "Ψ_i", "Ψ_t"} → singular
        values.
    """
    temp_at = trained.log.set_index("step")["temperature"]
    rows: list[dict[str, float]] = []
    spectra: dict[int, dict[str, np.ndarray]] = {}
    for step in sorted(trained.checkpoints):
        m = trained.model_at(step)
        with torch.no_grad():
            fs = encode_image_preproj(m, images).double()
            gs = encode_text_preproj(m, tokens).double()
        Ps = get_projectors(m).double()
        t = float(temp_at[temp_at.index <= step].iloc[-1]) if step > 0 else float(temp_at.iloc[0])
        n = gradient_term_norms(Ps, fs, gs, t)
        S = {"Ψ": svd(Ps).S, "Ψ_i": svd(psi_image(Ps)).S, "Ψ_t": svd(psi_text(Ps)).S}
        rows.append({"step": step, "τ": t,
                     TERM_COLUMNS[0]: n["image_feature_alignment"],
                     TERM_COLUMNS[1]: n["image_feature_normalization"],
                     TERM_COLUMNS[2]: n["text_feature_alignment"],
                     TERM_COLUMNS[3]: n["text_feature_normalization"],
                     "eff. rank Ψ": effective_rank(S["Ψ"]),
                     "eff. rank Ψᵢ": effective_rank(S["Ψ_i"]),
                     "eff. rank Ψₜ": effective_rank(S["Ψ_t"])})
        spectra[step] = {k: v.numpy() for k, v in S.items()}
    return pd.DataFrame(rows), spectra

"""isoclip: the reference companion of IsoCLIP (CVPR 2026) and the work around it.

The public API, by stage of the data flow (see the book's introduction):

- models: :func:`load_model` (any open_clip name/tag or an isoclip tiny config),
  :class:`ModelBundle`, :class:`MissingWeightsError`.
- projectors: :func:`get_projectors` -> :class:`Projectors` (W_i [d, d_i], W_t [d, d_t]),
  :func:`encode_image_preproj`, :func:`encode_text_preproj`.
- operator: :func:`psi`, :func:`psi_image`, :func:`psi_text`, :func:`svd`, :func:`spectrum_stats`.
- bands: :class:`Band`, :func:`iso_projectors` (IsoCLIP's Ŵ_i = W_i U_S U_Sᵀ, Ŵ_t = W_t V_S V_Sᵀ),
  :func:`sweep_bands` (all (k_top, k_bottom) at once), :func:`select_band` (label-free).
- gradients: :func:`cosine_decomposition`, :func:`feature_gradients`, :func:`weight_gradients`.
- features / evaluate: :func:`image_features`, :func:`text_features`, ``isoclip.evaluate``.
- drop-in: :func:`apply` (IsoCLIP ``encode_image`` / ``encode_text`` for any open_clip model),
  :func:`export_projectors` / :func:`load_projectors` (the filtered projectors as a file).
- the embedded default: ``isoclip.data.world.synthetic``, ``isoclip.training.trainer``, ``isoclip.training.embedded``.
- bring your own data: the containers :class:`ImageDataset`, :class:`TextDataset`,
  :class:`Collection`, :class:`RetrievalData`; any registered set or suite by name
  (:func:`load_dataset`, :func:`load_collection`, :func:`datasets_list`); the trainer
  (:class:`TrainConfig`, :func:`load_or_train`); the evaluators (:func:`evaluate`,
  :func:`evaluate_zero_shot`); modality inversion (:func:`invert`: OTI / OVI).
"""

from isoclip.data.base import Collection, ImageDataset, TextDataset
from isoclip.data.registry import RetrievalData, datasets_list, load_collection, load_dataset
from isoclip.dropin import IsoCLIP, apply, export_projectors, load_projectors
from isoclip.evaluate.classification import evaluate_zero_shot
from isoclip.evaluate.retrieval import evaluate
from isoclip.method.bands import Band, iso_projectors, paper_scaled_band
from isoclip.method.gradients import cosine_decomposition, feature_gradients, weight_gradients
from isoclip.method.operator import psi, psi_image, psi_text, spectrum_stats, svd
from isoclip.method.projectors import (
    Projectors,
    encode_image_preproj,
    encode_text_preproj,
    get_projectors,
)
from isoclip.models.features import image_features, text_features
from isoclip.models.loading import MissingWeightsError, ModelBundle, load_model
from isoclip.selection.rules import select_band
from isoclip.selection.sweep import sweep_bands
from isoclip.studies.inversion import invert
from isoclip.training.trainer import TrainConfig, load_or_train

__version__ = "0.1.0"

__all__ = [
    "Band",
    "Collection",
    "ImageDataset",
    "IsoCLIP",
    "MissingWeightsError",
    "ModelBundle",
    "Projectors",
    "RetrievalData",
    "TextDataset",
    "TrainConfig",
    "apply",
    "cosine_decomposition",
    "datasets_list",
    "encode_image_preproj",
    "encode_text_preproj",
    "evaluate",
    "evaluate_zero_shot",
    "export_projectors",
    "feature_gradients",
    "get_projectors",
    "image_features",
    "invert",
    "iso_projectors",
    "load_collection",
    "load_dataset",
    "load_model",
    "load_or_train",
    "load_projectors",
    "paper_scaled_band",
    "psi",
    "psi_image",
    "psi_text",
    "select_band",
    "spectrum_stats",
    "svd",
    "sweep_bands",
    "text_features",
    "weight_gradients",
]

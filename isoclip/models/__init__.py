"""Models and their features: loading any open_clip name + pretrained tag or one of our tiny
configs (:mod:`.loading`, configs in ``configs/``), and cached image / text features, projected
or pre-projection (:mod:`.features`).

May import: :mod:`isoclip.common`, :mod:`isoclip.method`, :mod:`isoclip.data`.
"""

from isoclip.models.features import image_features, text_features, zero_shot_weights
from isoclip.models.loading import MissingWeightsError, ModelBundle, load_model

__all__ = ["MissingWeightsError", "ModelBundle", "image_features", "load_model", "text_features",
           "zero_shot_weights"]

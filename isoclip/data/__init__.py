"""Datasets: shared containers and the synthetic world of the embedded default."""

from .base import ImageDataset, TextDataset
from .synthetic import (
                        COLOURS,
                        SHAPES,
                        ColourSpec,
                        ShapeSpec,
                        SyntheticWorld,
                        WorldConfig,
                        make_world,
                        zero_shot_prompts,
)

__all__ = ["COLOURS", "SHAPES", "ColourSpec", "ImageDataset", "ShapeSpec", "SyntheticWorld",
           "TextDataset", "WorldConfig", "make_world", "zero_shot_prompts"]

from .registry import (
                        DatasetFormatError,
                        DatasetInfo,
                        DatasetNotFoundError,
                        RetrievalData,
                        available_datasets,
                        dataset_info,
                        load_retrieval_dataset,
)

__all__ += ["DatasetFormatError", "DatasetInfo", "DatasetNotFoundError", "RetrievalData",
            "available_datasets", "dataset_info", "load_retrieval_dataset"]

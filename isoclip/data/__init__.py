"""Datasets: the containers every evaluator and trainer takes (:mod:`.base`), the registry of
the paper's datasets under a ``data_root`` with their official layouts (:mod:`.registry`,
:mod:`.paper_datasets`), generated miniatures of those layouts for tests (:mod:`.fakes`), and
the procedurally generated world of the embedded default (:mod:`.world`), and the embedded
models' evaluation sets and suites registered beside the paper's (:mod:`.suites`).

May import: :mod:`isoclip.common`.
"""

from isoclip.data.base import ImageDataset, ImageReadError, TextDataset
from isoclip.data.world.config import WorldConfig
from isoclip.data.world.primitives import COLOURS, SHAPES, ColourSpec, ShapeSpec
from isoclip.data.world.synthetic import SyntheticWorld, make_world, zero_shot_prompts

__all__ = ["COLOURS", "SHAPES", "ColourSpec", "ImageDataset", "ImageReadError", "ShapeSpec",
           "SyntheticWorld", "TextDataset", "WorldConfig", "make_world", "zero_shot_prompts"]

from isoclip.data.registry import (
                        DatasetFormatError,
                        DatasetInfo,
                        DatasetNotFoundError,
                        RetrievalData,
                        available_datasets,
                        dataset_info,
                        datasets_list,
                        is_registered,
                        load_dataset,
                        load_retrieval_dataset,
)

__all__ += ["DatasetFormatError", "DatasetInfo", "DatasetNotFoundError", "RetrievalData",
            "available_datasets", "dataset_info", "datasets_list", "is_registered",
            "load_dataset", "load_retrieval_dataset"]

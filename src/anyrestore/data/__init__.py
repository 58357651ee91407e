"""Training and validation data: paired folders, on-the-fly synthesis, task mixtures, a seeded stream.

Every sample is ``{"lq", "gt", "task", "path"}`` (plus ``"labels"`` for region-mixed degradations); its
randomness is a pure function of the run's seed and its position in the stream (see
:mod:`anyrestore.data.stream`), which is what makes resumed and multi-process runs exact.
"""

from anyrestore.data.base import ConcatDataset, RestorationDataset, Sample
from anyrestore.data.files import DataError, image_size, list_folder
from anyrestore.data.layouts import LAYOUTS, PairLayout, find_layout_pairs, find_pairs
from anyrestore.data.paired import PairedImageDataset
from anyrestore.data.seeding import derive_seed, make_generator
from anyrestore.data.spec import (
    DATASET_KINDS,
    DatasetSpec,
    PairedSetSpec,
    SyntheticSetSpec,
    build_dataset,
    build_source,
)
from anyrestore.data.stream import (
    RoundRobin,
    SampleStream,
    Shuffled,
    Source,
    StreamSampler,
    Weighted,
    collate,
    micro_batch_size,
)
from anyrestore.data.synthetic import SyntheticDataset, parse_steps
from anyrestore.data.transforms import augment, center_crop, random_crop

__all__ = [
    "DATASET_KINDS",
    "ConcatDataset",
    "LAYOUTS",
    "DataError",
    "DatasetSpec",
    "PairLayout",
    "PairedImageDataset",
    "PairedSetSpec",
    "RestorationDataset",
    "RoundRobin",
    "Sample",
    "SampleStream",
    "Shuffled",
    "Source",
    "StreamSampler",
    "SyntheticDataset",
    "SyntheticSetSpec",
    "Weighted",
    "augment",
    "build_dataset",
    "build_source",
    "center_crop",
    "collate",
    "derive_seed",
    "find_layout_pairs",
    "find_pairs",
    "image_size",
    "list_folder",
    "make_generator",
    "micro_batch_size",
    "parse_steps",
    "random_crop",
]

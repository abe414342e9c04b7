"""Tasks backed by a :class:`~asyncfl_bench.data.Corpus`: the shared path from a data set
on disk to :class:`TaskData` (fixed subsets, partition, tensors) and to image models.

Images stay uint8 on the device (4× smaller than floats); the model's first layer
scales them (:class:`~asyncfl_bench.tasks.models.Standardize`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from asyncfl_bench.data.corpus import Corpus, Split
from asyncfl_bench.errors import UserError
from asyncfl_bench.tasks.augment import CropFlip
from asyncfl_bench.contract.task import Task, TaskData
from asyncfl_bench.tasks.models import FemnistCNN, ImageCNN, ResNet18, NORMS
from asyncfl_bench.tasks.partition import PARTITION_DEFAULTS, make_partition

# Keys every corpus task accepts (`--set KEY=VALUE`); presets override them.
CORPUS_DEFAULTS = {
    **PARTITION_DEFAULTS,
    "train_subset": 0,      # > 0: a fixed random subset of the training set (the same for every seed)
    "test_subset": 0,       # > 0: the same for the test set (faster evaluation)
}
IMAGE_DEFAULTS = {**CORPUS_DEFAULTS, "norm": "none", "augment": False, "image_size": 0}


def subset(split: Split, n: int, salt: int) -> Split:
    if n <= 0 or n >= len(split):
        return split
    keep = np.sort(np.random.default_rng([salt, n]).choice(len(split), n, replace=False))
    x = [split.x[i] for i in keep] if isinstance(split.x, list) else split.x[keep]
    return Split(x, split.y[keep], None if split.group is None else split.group[keep])


def channel_stats(x: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images, in [0, 1] units (from at most 10,000 images)."""
    sample = x[:: max(1, len(x) // 10000)].astype(np.float32) / 255
    return sample.mean(axis=(0, 2, 3)).tolist(), np.maximum(sample.std(axis=(0, 2, 3)), 1e-3).tolist()


def tensor(a: np.ndarray) -> torch.Tensor:
    """A tensor that owns its memory (cached arrays are read-only memory maps)."""
    a = np.ascontiguousarray(a)
    return torch.from_numpy(a if a.flags.writeable else a.copy())


def split_for_task(corpus: Corpus, setup: dict) -> tuple[Split, Split]:
    return subset(corpus.train, setup["train_subset"], 1), subset(corpus.test, setup["test_subset"], 2)


def image_task_data(corpus: Corpus, setup: dict, seed: int) -> TaskData:
    train, test = split_for_task(corpus, setup)
    parts = make_partition(setup, train.y, seed, train.group)
    mean, std = channel_stats(train.x)
    extras = {"input_shape": tuple(train.x.shape[1:]), "mean": mean, "std": std}
    if setup["augment"]:
        extras["augment"] = CropFlip(pad=4, flip=True)
    return TaskData(tensor(train.x), tensor(train.y), tensor(test.x), tensor(test.y),
                    corpus.num_classes, [torch.from_numpy(p) for p in parts], list(corpus.class_names), extras)


def image_model_builder(setup: dict, data: TaskData, task_name: str):
    c, h, _ = data.extras.input_shape
    n, mean, std = data.num_classes, data.extras.mean, data.extras.std
    kind = setup["model"]
    if setup["norm"] not in NORMS:
        raise UserError(f"unknown norm '{setup['norm']}'; valid: {', '.join(NORMS)}")
    if kind == "cnn":
        return lambda: ImageCNN(c, h, n, mean, std)
    if kind == "resnet18":
        return lambda: ResNet18(n, mean, std, setup["norm"], in_channels=c)
    if kind == "femnist_cnn":
        if (c, h) != (1, 28):
            raise UserError(f"model femnist_cnn needs 1×28×28 images, {task_name} has {c}×{h}×{h}; "
                            f"fix: --set model=cnn or resnet18")
        return lambda: FemnistCNN(n, c)
    raise UserError(f"unknown model '{kind}' for {task_name}; valid: cnn, resnet18, femnist_cnn")


class CorpusImageTask(Task):
    """An image task on one of the known data sets (``data_name`` in ``asyncfl_bench.data.KNOWN``)."""

    data_name = ""
    setup_defaults = IMAGE_DEFAULTS

    def corpus(self, setup: dict, data_dir: Path | None) -> Corpus:
        from asyncfl_bench.data import load_corpus
        return load_corpus(self.data_name, data_dir)

    def load(self, setup, seed, data_dir=None) -> TaskData:
        return image_task_data(self.corpus(setup, data_dir), setup, seed)

    def model_builder(self, setup, data):
        return image_model_builder(setup, data, self.name)

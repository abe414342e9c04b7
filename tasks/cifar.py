"""``cifar10`` and ``cifar100``: CIFAR (Krizhevsky 2009), 32×32 colour images,
50,000 train / 10,000 test.

Sources: a prepared cache; under ``--data-dir`` an image folder (``{train,test}/<class>/*``),
the official binary version (numpy) or python version (checksum-verified); the hub
(``uoft-cs/cifar10``, ``uoft-cs/cifar100``) through ``asyncfl-bench data prepare``.
Training batches get a random crop (padding 4) and a horizontal flip, on the device.
"""
from __future__ import annotations

import copy

from asyncfl_bench.tasks.image import CorpusImageTask
from asyncfl_bench.tasks.presets import (CI_FEDBUFF, CI_LOCAL, FEDREVIVE, FEDREVIVE_CI_CUT, PAPER, paper_local,
                                         paper_methods)


def _presets(target_ci: float, target_small: float, target_paper: float, task: str) -> dict:
    return {
        "ci": {"num_clients": 20, "concurrency": 8, "total_arrivals": 160, "eval_every": 20,
               "partition": "dirichlet", "alpha": 0.5, "train_subset": 10000, "test_subset": 2000,
               "model": "cnn", "augment": True, "target_accuracy": target_ci,
               "local": dict(CI_LOCAL),
               # FedRevive: the authors' per-dataset values (CIFAR-100's) at the ci cut (tasks/presets.py)
               "methods": {**copy.deepcopy(CI_FEDBUFF),
                           "fedrevive": {**FEDREVIVE.get(task, {}), **FEDREVIVE_CI_CUT}}},
        "small": {"num_clients": 100, "concurrency": 20, "total_arrivals": 2000, "eval_every": 50,
                  "partition": "dirichlet_fixed", "alpha": 0.5, "samples_per_client": 350,
                  "model": "cnn", "augment": True, "target_accuracy": target_small,
                  "local": {"optimizer": "adam", "lr": 1e-3, "batch_size": 32, "iterations": 25},
                  "methods": {"fedbuff": {"buffer_size": 10, "server_lr": 1.0, "server_momentum": 0.0},
                              "fedrevive": dict(FEDREVIVE.get(task, {}))}},
        # the authors' setup, with their per-task FedBuff baseline, FedRevive settings and
        # client rate (tasks/presets.py: FEDBUFF_PAPER, FEDREVIVE, PAPER_LOCAL_LR)
        "paper": {**copy.deepcopy(PAPER), "model": "resnet18", "norm": "none", "augment": True,
                  "target_accuracy": target_paper, "local": paper_local(task), "methods": paper_methods(task)},
    }


class Cifar10(CorpusImageTask):
    name = "cifar10"
    data_name = "cifar10"
    description = "CIFAR-10, 32×32 colour, 10 classes (data prepare cifar10, or --data-dir)"
    presets = _presets(0.3, 0.45, 0.6, "cifar10")


class Cifar100(CorpusImageTask):
    name = "cifar100"
    data_name = "cifar100"
    description = "CIFAR-100, 32×32 colour, 100 classes (data prepare cifar100, or --data-dir)"
    presets = _presets(0.08, 0.15, 0.3, "cifar100")

"""``femnist``: FEMNIST from LEAF (Caldas et al. 2018), 28×28 greyscale handwritten
digits and letters, 62 classes, each sample tagged with its writer.

Sources: a prepared cache; under ``--data-dir`` LEAF's JSON layout
(``{train,test}/*.json`` with ``users``, ``num_samples``, ``user_data``), as a folder or
tarball; the hub (``flwrlabs/femnist``, with ``writer_id``) through ``data prepare``.
The natural partition gives each client one writer's samples.
"""
from __future__ import annotations

import copy

from asyncfl_bench.tasks.image import CorpusImageTask
from asyncfl_bench.tasks.presets import (CI_FEDBUFF, CI_LOCAL, FEDREVIVE, FEDREVIVE_CI_CUT, GI_CPU_BUDGET,
                                         INTERTWINED_METHODS, PAPER, afl_dw_of, paper_methods)


# FedRevive's FEMNIST reference values (generator rates, w_bn, η_g, the gates as shares of the
# run's versions: 2 % and 2.5 %, 4 and 5 of ci's 200) at the ci cut (tasks/presets.py), s_max
# from the run (auto) and the authors' cadence; handwriting: 2-pixel crop, no flip.
FEDREVIVE_CI = {**FEDREVIVE["femnist"], **FEDREVIVE_CI_CUT, "aug_pad": 2, "aug_flip": False}


class Femnist(CorpusImageTask):
    name = "femnist"
    data_name = "femnist"
    description = "FEMNIST (LEAF), 28×28, 62 classes, writers as clients (data prepare femnist, or --data-dir)"
    presets = {
        "ci": {"num_clients": 40, "concurrency": 10, "total_arrivals": 200, "eval_every": 20,
               "partition": "natural", "model": "cnn", "target_accuracy": 0.5, "proxy_fraction": 0.1,
               "local": dict(CI_LOCAL),
               "methods": {**copy.deepcopy(CI_FEDBUFF), "fedrevive": FEDREVIVE_CI,
                           "afl-dw": afl_dw_of(FEDREVIVE_CI),
                           # a synthetic U (fedecho.proxy=synthetic) from the same ci synthesiser,
                           # frozen at version 20 of the 40 this run has (the synthesiser's gates and
                           # β do not apply: FedEcho synthesises its U at once)
                           "fedecho": {"buffer_size": 5, "synthetic_after": 20, "synthesiser": "fedrevive:" + ",".join(
                               f"{k}={v}" for k, v in FEDREVIVE_CI.items() if k != "beta")}}},
        # "Tackling the Unlimited Staleness…": the 4 clients holding most of one class (digit 0)
        # train from the model 5–10 rounds of 10 arrivals old and report at the normal rate (the
        # paper's delayed clients; its 10–40 rounds would be most of this 30-round run). Label
        # skew by Dirichlet, since whole writers each hold every class. One aggregation rule for
        # every method, with gi-switch's inversion cut to a CPU budget (INTERTWINED_METHODS).
        "intertwined": {"num_clients": 40, "concurrency": 10, "total_arrivals": 300, "eval_every": 20,
                        "partition": "dirichlet", "alpha": 0.3, "model": "cnn", "target_accuracy": 0.5,
                        "trace": "intertwined:classes=0,slow=4,delay_min=5,delay_max=10,mode=lag,"
                                 "base=exponential",
                        "local": dict(CI_LOCAL),
                        "methods": {**copy.deepcopy(CI_FEDBUFF), **copy.deepcopy(INTERTWINED_METHODS)}},
        # the earlier setting: the same clients are slow instead (10–40 mean job durations on
        # every job); buffered methods K = 5 as at ci, gi-switch's CPU budget as above
        "intertwined-slow": {"num_clients": 40, "concurrency": 10, "total_arrivals": 300, "eval_every": 20,
                             "partition": "dirichlet", "alpha": 0.3, "model": "cnn", "target_accuracy": 0.5,
                             "trace": "intertwined:classes=0,slow=4,delay_min=10,delay_max=40,base=exponential",
                             "local": dict(CI_LOCAL),
                             "methods": {**copy.deepcopy(CI_FEDBUFF),
                                         "gi-switch": {"buffer_size": 5, **GI_CPU_BUDGET}}},
        "small": {"num_clients": 100, "concurrency": 20, "total_arrivals": 2000, "eval_every": 50,
                  "partition": "natural", "model": "femnist_cnn", "target_accuracy": 0.7,
                  "local": {"optimizer": "adam", "lr": 1e-3, "batch_size": 32, "iterations": 25},
                  "methods": {"fedbuff": {"buffer_size": 10, "server_lr": 1.0, "server_momentum": 0.0},
                              "fedrevive": dict(FEDREVIVE["femnist"]),
                              "afl-dw": afl_dw_of(FEDREVIVE["femnist"])}},
        "paper": {**copy.deepcopy(PAPER), "model": "femnist_cnn", "target_accuracy": 0.75,
                  "methods": paper_methods("femnist")},
    }

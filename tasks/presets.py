"""Preset building blocks shared by the real tasks (plain dicts: `--set` overrides any key)."""
from __future__ import annotations

# FedRevive's setup (METHODS.md, from the authors' code): 1000 clients, 100 in flight,
# 350 samples each by a per-client Dirichlet(0.5), local Adam, batch 32 × 25 iterations,
# evaluation every 10 versions. The local learning rate is not on the card: 1e-3 is
# Adam's usual default (an assumption; override with --set local.lr=...).
PAPER = {
    "num_clients": 1000, "concurrency": 100, "total_arrivals": 20000, "eval_every": 10,
    "partition": "dirichlet_fixed", "alpha": 0.5, "samples_per_client": 350,
    "trace": "fedrevive",
    "local": {"optimizer": "adam", "lr": 1e-3, "batch_size": 32, "iterations": 25},
    # FedRevive's reference FedBuff baseline: K = 2, η_g = 0.05, no staleness scaling
    "methods": {"fedbuff": {"buffer_size": 2, "server_lr": 0.05, "server_momentum": 0.0,
                            "staleness": "constant"}},
}

# ci presets run every method in minutes on 2 CPU cores: few clients and arrivals,
# a small model, 10 local Adam steps. FLSim's K = 10 would equal the whole concurrency
# here and its server momentum overshoots on a few hundred arrivals: K = 5, plain step.
CI_LOCAL = {"optimizer": "adam", "lr": 1e-3, "batch_size": 32, "iterations": 10}
# Every buffered method gets the same K, so the comparison is of the methods, not of K.
CI_FEDBUFF = {"fedbuff": {"buffer_size": 5, "server_lr": 1.0, "server_momentum": 0.0},
              "ca2fl": {"buffer_size": 5}, "fedecho": {"buffer_size": 5},
              "fedgen": {"buffer_size": 5, "server_lr": 1.0, "server_momentum": 0.0}}

# FedRevive's per-dataset changes to its CIFAR-10 defaults, from the reference configs
FEDREVIVE = {
    # reference SampleConfigFiles/femnist/fedrevive.json
    "femnist": {"lr_g": 1e-2, "lr_z": 3e-3, "w_bn": 0.3, "freeze_versions": 400,
                "warmup_versions": 500, "server_lr": 0.05},
    # the reference's text path: snippet embeddings at lr 0.1, w_bn 1e-4
    "20newsgroups": {"lr_z": 0.1, "w_bn": 1e-4},
}


def afl_dw_of(fedrevive: dict) -> dict:
    """AFL-DW's settings for a preset: FedRevive's aggregation there (B, η_g, β), so the
    pair differs only by the distillation. The authors' afl_dw.json is CIFAR-10's
    (B = 1, η_g = 0.1, the method's defaults); other tasks take FedRevive's values."""
    return {k: v for k, v in fedrevive.items() if k in ("buffer_size", "server_lr", "beta")}

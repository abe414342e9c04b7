"""Teachers for multi-teacher distillation: a bounded buffer of recent client
models, each with class proportions q_k, and the per-class weights w_k(y).

FedRevive (arXiv 2511.00655) takes q_k from one of two sources: the client's true
label histogram, normalised (the authors' code: ``client.class_proportions``, read by
``perform_dfkd_with_buffer``), or, in the paper's label-private variant, an estimate
from probing the client's uploaded model with Gaussian noise, q = mean softmax(f(noise)/T),
averaged over the client's first two uploads and then frozen. w_k(y) = q_k(y) / Σ_j q_j(y)
tells how much teacher k knows class y.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def probe_class_proportions(model: nn.Module, noise: torch.Tensor, temperature: float = 0.8,
                            forward=None) -> torch.Tensor:
    """q = mean over noise inputs (N(0, I) images; Gaussian embeddings for text) of
    softmax(logits / T): a label-free proxy of which classes a model was trained on."""
    was_training = model.training
    model.eval()
    logits = model(noise) if forward is None else forward(model, noise)
    q = F.softmax(logits.float() / temperature, dim=1).mean(0)
    model.train(was_training)
    return q / q.sum().clamp_min(1e-12)


def histogram_proportions(counts: torch.Tensor) -> torch.Tensor:
    """A client's label counts as proportions: counts / Σ counts (float32)."""
    counts = counts.detach().float().cpu()
    return counts / counts.sum().clamp_min(1.0)


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    """½ Σ_y |p(y) − q(y)|, in [0, 1] for two distributions."""
    return 0.5 * float((p.float() - q.float()).abs().sum())


class ProxyEstimator:
    """Running mean of a client's probes over its first ``uploads`` uploads, then frozen."""

    def __init__(self, uploads: int = 2):
        self.uploads = uploads
        self.sums: dict[int, torch.Tensor] = {}
        self.counts: dict[int, int] = {}

    def needs_probe(self, client: int) -> bool:
        return self.counts.get(client, 0) < self.uploads

    def add(self, client: int, q: torch.Tensor) -> torch.Tensor:
        self.sums[client] = self.sums.get(client, 0) + q
        self.counts[client] = self.counts.get(client, 0) + 1
        return self.get(client)

    def get(self, client: int) -> torch.Tensor:
        q = self.sums[client] / self.counts[client]
        return q / q.sum().clamp_min(1e-12)

    def state(self) -> dict:
        return {"sums": dict(self.sums), "counts": dict(self.counts)}

    def load(self, state: dict) -> None:
        self.sums = {int(k): v for k, v in state["sums"].items()}
        self.counts = {int(k): int(v) for k, v in state["counts"].items()}


def teacher_weights(q: torch.Tensor) -> torch.Tensor:
    """w_k(y) = q_k(y) / Σ_j q_j(y) for q of shape (teachers, classes)."""
    return q / q.sum(0, keepdim=True).clamp_min(1e-8)


@dataclass
class Teacher:
    client: int
    params: torch.Tensor          # flat model x_i
    stats: list                   # [(running_mean, running_var), ...] recorded while it trained
    q: torch.Tensor               # proxy class proportions


class TeacherBuffer:
    """The c most recent client models, newest first (FIFO)."""

    def __init__(self, size: int):
        self.items: deque[Teacher] = deque(maxlen=size)

    def add(self, teacher: Teacher) -> None:
        self.items.appendleft(teacher)

    def set_q(self, client: int, q: torch.Tensor) -> None:
        """A client's proxy is client state: refresh it on its buffered models too."""
        for t in self.items:
            if t.client == client:
                t.q = q

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def q_matrix(self) -> torch.Tensor:
        return torch.stack([t.q for t in self.items])

    def state(self) -> dict:
        return {"size": self.items.maxlen,
                "items": [{"client": t.client, "params": t.params, "stats": t.stats, "q": t.q} for t in self.items]}

    def load(self, state: dict) -> None:
        self.items = deque((Teacher(d["client"], d["params"], [tuple(s) for s in d["stats"]], d["q"])
                            for d in state["items"]), maxlen=state["size"])

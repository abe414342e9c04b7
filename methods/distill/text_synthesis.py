"""FedRevive's text synthesis: LM-written snippets, embedded through the classifier's
frozen table, optimised as ``inputs_embeds`` behind meta-learned prompt vectors.

FedRevive (arXiv 2511.00655), reference ``FastTextMetaSynthesizer``: text has no
generator network. For a batch of target labels y the source
1. draws, for each y_i, a snippet of class y_i from the LM corpus
   (``asyncfl_bench.data.lm_corpus``) and looks its tokens up in the classifier's
   frozen embedding table: e_i ∈ R^{L−P×D}, a synthesis variable (Adam, lr_z = 0.1);
2. prepends P = 4 prompt vectors shared by the batch, x_i = [p; e_i], cut to L tokens;
   the prompts are the meta-learned part: a fast copy trains with lr_g during the
   K_synth steps, and Reptile moves the slow prompts toward it (meta Adam with
   lr_g·K_synth, betas 0.5/0.999, as the reference);
3. masks each sample to P + a tokens, a ~ U{⌈f_min·(L−P)⌉ … ⌊f_max·(L−P)⌋} (the
   reference's 64–128 active tokens at L = 128: f = 0.5 … 1).

A synthetic sample travels as one tensor, ``pack(embeds, mask)`` of shape (L, D + 1),
the mask in the last channel, so the pool, the distillation and the probes handle it
like an image; ``text_forward`` unpacks it into ``inputs_embeds``/``attention_mask``.

Departures, each for a reason:
* the reference re-clones the prompts and rebuilds Adam at every inner step, so only
  the last step reaches Reptile; here, as on its image path, one fast copy and one
  Adam run through the K_synth steps;
* the prompts start at N(0, σ²) with σ the embedding table's own standard deviation
  (the reference draws N(0, 1) in T5's table); the noise probes of the proxy class
  proportions use the same σ, so they look like token embeddings to the classifier.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from asyncfl_bench.methods.distill.synthesis import items_with_labels, reptile_step
from asyncfl_bench.training.adam import Adam


def pack(embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N, L, D) embeddings and an (N, L) mask → one (N, L, D + 1) tensor."""
    return torch.cat([embeds, mask.unsqueeze(-1).to(embeds.dtype)], dim=-1)


def text_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(inputs_embeds=x[..., :-1], attention_mask=x[..., -1] > 0.5)


class SnippetSource:
    """Synthesis variables and meta-learned prompts for text (see the module doc)."""

    def __init__(self, embed, snippet_ids: torch.Tensor, snippet_labels: torch.Tensor, max_len: int, width: int,
                 scale: float, rng: torch.Generator, *, prompt_len: int = 4,
                 active: tuple[float, float] = (0.5, 1.0), lr_g: float = 3e-3, lr_z: float = 0.1,
                 steps: int = 2, device=None):
        if not 0 < prompt_len < max_len:
            raise ValueError(f"prompt_len must be in 1 … {max_len - 1}, got {prompt_len}")
        self.embed, self.ids, self.labels = embed, snippet_ids, snippet_labels
        self.max_len, self.width, self.scale, self.rng = max_len, width, scale, rng
        self.prompt_len, self.lr_g, self.lr_z = prompt_len, lr_g, lr_z
        text = max_len - prompt_len
        lo = max(1, math.ceil(active[0] * text))
        self.active = (lo, max(lo, math.floor(active[1] * text)))
        self.prompt = (scale * torch.randn(prompt_len, width, generator=rng)).to(device).requires_grad_()
        self.meta_opt = Adam([self.prompt], lr=lr_g * steps, betas=(0.5, 0.999), eps=1e-8)
        self.fast: torch.Tensor | None = None

    def draw(self, y: torch.Tensor) -> torch.Tensor:
        """A snippet of class y_i for each i (any snippet for a class the corpus lacks)."""
        return self.ids[items_with_labels(self.labels, y.cpu(), self.rng), :self.max_len - self.prompt_len]

    def begin(self, y: torch.Tensor):
        device, n = y.device, len(y)
        with torch.no_grad():
            e = self.embed(self.draw(y).to(device)).detach().clone()
        e.requires_grad_()
        lengths = torch.randint(self.active[0], self.active[1] + 1, (n,), generator=self.rng) + self.prompt_len
        mask = (torch.arange(self.max_len)[None, :] < lengths[:, None]).to(device)
        fast = self.fast = self.prompt.detach().clone().requires_grad_()
        groups = [{"params": [fast], "lr": self.lr_g}, {"params": [e], "lr": self.lr_z}]

        def make() -> torch.Tensor:
            return pack(torch.cat([fast.expand(n, -1, -1), e], dim=1)[:, :self.max_len], mask)
        return groups, make

    def end(self) -> None:
        reptile_step(self.meta_opt, [self.prompt], [self.fast])
        self.fast = None

    def probe_inputs(self, n: int) -> torch.Tensor:
        """Gaussian noise in embedding space, every token active."""
        noise = self.scale * torch.randn(n, self.max_len, self.width, generator=self.rng)
        return pack(noise, torch.ones(n, self.max_len)).to(self.prompt.device)

    def state(self) -> dict:
        return {"prompt": self.prompt.detach().clone(), "meta_opt": self.meta_opt.state_dict()}

    def load(self, state: dict) -> None:
        with torch.no_grad():
            self.prompt.copy_(state["prompt"])
        self.meta_opt.load_state_dict(state["meta_opt"])

"""Local training of several clients' jobs in one vectorised pass.

A job's result depends only on (base, client data, job seed, payload), so the
jobs in flight can be trained together: their parameters are stacked into one
``(K, P)`` matrix and every step runs one ``vmap`` of ``torch.func.functional_call``
of one module (the per-job losses), autograd through their sum, then the local optimiser
over the whole stack (SGD elementwise, Adam through LocalTrainer's fused kernel). Each job sees exactly the mini-batches
:class:`~asyncfl_bench.training.local.LocalTrainer` would draw from its seed (same
generator, same ``batch_order``); a job with a short last batch is padded and
masked, and jobs are sorted by step count so that step ``s`` only runs the
prefix of jobs that still train (no wasted steps).

The result is the same arithmetic as sequential training (float64: equal to 1e-13),
in another float32 summation order (the stacked convolutions): within
``TOLERANCE``, see ``tests/test_batched.py``.

Only layers that treat samples independently and hold no running state can be
stacked this way; :func:`unsupported_reason` names the first one that cannot
(BatchNorm's batch statistics and running buffers, Dropout's random masks) and
the run then trains sequentially and records why.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap
from torch.optim.adam import adam as adam_step   # torch.optim.Adam's functional form

from asyncfl_bench.errors import UserError
from asyncfl_bench.training.feature_stats import fold_running_stats, stacked_batch_stats, tracked_layers
from asyncfl_bench.training.flat import Layout
from asyncfl_bench.training.local import ADAM_BETAS, ADAM_EPS, batch_order, num_steps

# Batched vs sequential in float32, per job and local optimiser: relative error of the
# update Δ = params − base, ‖Δ_batched − Δ_sequential‖₂ ≤ update·‖Δ_sequential‖₂, and of
# the mean local loss. SGD: measured ≤ 1.3e-6. Adam's bound is wider because Adam, not
# the stacking, amplifies float32 rounding: a ReLU unit that was dead for a few steps has
# v ≈ 1e-13 (weight decay only), so when one of its pre-activations lies within rounding
# of 0 (FEMNIST CNN, conv3 channel 23, step 5 of job 0: −2.7e-7 in float64) the gate
# flips with the summation order, and the ~1e-5 gradient it adds is divided by √v ≈ 8e-6
# into lr-sized steps on that unit's weights. Two sequential runs that differ only in the
# convolution kernel (oneDNN vs torch's native) differ as much as batched vs sequential:
# 1.3e-3 on that job; FEMNIST CNN over 24 init seeds median 7e-5, worst 2.8e-2 both ways
# (same job); ResNet GroupNorm 4.0e-3 vs 4.3e-3 worst of 8; loss ≤ 1.2e-5 vs ≤ 3.7e-5.
# In float64 batched equals sequential to 1e-13 (tests/test_batched.py checks 1e-10).
# The same gate flip happens under SGD, more rarely and with a smaller effect: one job of 27
# in the digits run of tests/test_batched.py moved 4.5e-4 at 2 threads (the others ≤ 4e-7),
# on an Intel Xeon and an AMD EPYC alike, while in float64 the same job agrees within 1e-10. So
# ``update`` bounds nearly every job and ``worst`` every job; the float64 check is the
# guarantee that both paths compute the same thing.
TOLERANCE = {"sgd": {"update": 1e-4, "loss": 1e-5, "worst": 1e-2},
             "adam": {"update": 5e-2, "loss": 1e-4, "worst": 2e-1}}

# Layers whose forward is per sample and stateless (besides their parameters).
STACKABLE = (nn.Linear, nn.Bilinear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d,
             nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Tanh, nn.Sigmoid, nn.Softplus,
             nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
             nn.AdaptiveAvgPool2d, nn.Flatten, nn.Identity, nn.GroupNorm, nn.LayerNorm, nn.Embedding,
             nn.Upsample)
CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def unsupported_reason(model: nn.Module, layout: Layout) -> str | None:
    """Why ``model`` cannot be trained stacked, or None when it can."""
    for name, mod in model.named_modules():
        label = f"layer {name or 'model'} ({type(mod).__name__})"
        if isinstance(mod, nn.modules.dropout._DropoutNd):
            if mod.p > 0:
                return f"{label} draws random masks from the global generator"
            continue
        if isinstance(mod, nn.modules.batchnorm._NormBase):
            return f"{label} mixes the samples of a batch"
        if isinstance(mod, STACKABLE) or isinstance(mod, CONTAINERS):
            continue
        # anything else must be wiring of stackable children plus constants
        if any(True for _ in mod.named_parameters(recurse=False)):
            return f"{label} is not a known per-sample layer"
    params = dict(model.named_parameters())
    state = [k for k in layout.names if k not in params]
    if state:
        return f"float buffer {state[0]} is state updated by training"
    return None


def supports(model: nn.Module) -> bool:
    return unsupported_reason(model, Layout.of(model)) is None


class BatchedTrainer:
    """Trains K jobs at once; same local optimiser, batch order and augmentation draws
    as LocalTrainer. ``group``: how many jobs a caller should stack per pass (the
    training path's choice; ``train_many`` itself takes any number)."""

    def __init__(self, build_model, layout: Layout, local: dict, device: torch.device, augment=None,
                 group: int = 0):
        self.group = group
        self.model = build_model().to(device)
        why_not = unsupported_reason(self.model, layout)
        if why_not is not None:
            raise ValueError(f"cannot stack this model: {why_not}")
        if local["optimizer"] not in ("sgd", "adam"):
            raise UserError(f"unknown local optimizer '{local['optimizer']}'; valid: sgd, adam")
        self.layout, self.local, self.device, self.augment = layout, local, device, augment
        self.model.train()
        model = self.model

        # the loss term of the jobs being trained (``train_many``'s ``terms``): one
        # ``LossTerm.loss`` for the whole group, its per-job inputs in ``drawn``
        self._term_loss = None

        def loss_fn(params: dict, xb, yb, mask, drawn):
            logits = functional_call(model, params, (xb,))
            # −log softmax at the label, as F.cross_entropy computes it; under vmap, cross_entropy
            # runs a Python decomposition of nll_loss (and imports sympy machinery on first use)
            ce = -F.log_softmax(logits, dim=1).gather(1, yb[:, None]).squeeze(1)
            # the mean over the job's real samples, as LocalTrainer's mean-reduced loss
            loss = torch.where(mask, ce, 0.0).sum() / mask.sum()
            if drawn is not None:   # + the regulariser, as LocalTrainer adds it
                loss = loss + self._term_loss(params, logits, yb, mask, drawn)
            return loss

        # feature statistics of the tracked layers, for the jobs that record them
        # (``train_many``'s ``records``): forward hooks collect the layers' outputs while
        # ``_captured`` is a list, the vmapped function returns them stacked, and their
        # statistics are taken on the stack (stacked_batch_stats)
        self._captured: list | None = None

        def capture(module, args, output):
            if self._captured is not None:
                self._captured.append(output.detach())
        for layer in tracked_layers(model):
            layer.register_forward_hook(capture)

        def loss_and_outputs(params: dict, xb, yb, mask, drawn):
            self._captured = []
            try:
                return loss_fn(params, xb, yb, mask, drawn), tuple(self._captured)
            finally:
                self._captured = None

        # the jobs' drawn loss-term inputs, when there are any, are mapped like their batches
        vmapped = {(fn, drawn): vmap(fn, in_dims=(0, 0, 0, 0, 0 if drawn else None))
                   for fn in (loss_fn, loss_and_outputs) for drawn in (False, True)}

        def grads_and_losses(params: dict, xb, yb, mask, drawn=None, record: bool = False):
            """Every job's gradient and loss (and, with ``record``, its layers' statistics
            [(mean, var), ...] as (jobs, channels) rows): one vmapped forward gives the
            per-job losses, and autograd differentiates their sum (job j's loss depends
            only on row j of the stacked parameters, so row j of the gradient is job j's).
            ``vmap(grad(loss))`` gives the same numbers up to float summation order, but
            torch.func's grad imports torch._dynamo on first use, 0.6 s of a run's start-up."""
            leaves = {n: t.detach().requires_grad_() for n, t in params.items()}
            if record:
                per_job, outputs = vmapped[loss_and_outputs, drawn is not None](leaves, xb, yb, mask, drawn)
                real = None if bool(mask.all()) else mask   # masked only in a step with a short batch
                with torch.no_grad():
                    stats = [stacked_batch_stats(out, real) for out in outputs]
            else:
                per_job, stats = vmapped[loss_fn, drawn is not None](leaves, xb, yb, mask, drawn), None
            grads = torch.autograd.grad(per_job.sum(), list(leaves.values()))
            return dict(zip(leaves, grads)), per_job.detach(), stats

        self._grad = grads_and_losses

    def _plan(self, clients: list[torch.Tensor], seeds: list[int], steps: list[int]):
        """(S, K, B) sample indices into the data set (−1 where a batch is short), each
        job's batch sizes, and its generator, positioned where LocalTrainer's would be
        after drawing the batches (augmentation draws continue from there)."""
        bs = self.local["batch_size"]
        width = max(min(bs, len(c)) for c in clients)
        out = torch.full((max(steps), len(clients), width), -1, dtype=torch.long, device=self.device)
        gens, sizes = [], []
        for j, (c, seed, n_steps) in enumerate(zip(clients, seeds, steps)):
            gen = torch.Generator(device=self.device).manual_seed(seed)
            batches = batch_order(len(c), n_steps, bs, gen, self.device)
            local = torch.nn.utils.rnn.pad_sequence(batches, batch_first=True, padding_value=-1)
            out[:n_steps, j, :local.shape[1]] = torch.where(local >= 0, c[local.clamp_min(0)], -1)
            gens.append(gen)
            sizes.append([len(b) for b in batches])
        return out, sizes, gens

    def _inputs(self, x: torch.Tensor, rows: torch.Tensor, step: int, sizes, gens) -> torch.Tensor:
        xb = x[rows]
        if self.augment is None:
            return xb
        # per job, on its real samples only: the draws LocalTrainer makes from that job's generator
        for j, gen in enumerate(gens):
            n = sizes[j][step]
            xb[j, :n] = self.augment(xb[j, :n], gen)
        return xb

    def train_many(self, bases: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                   clients: list[torch.Tensor], seeds: list[int],
                   records: list | None = None, terms: list | None = None) -> list[tuple[torch.Tensor, float]]:
        """Train job j from ``bases[j]`` on ``x[clients[j]]``; results in input order.
        ``records[j]``: None, or (payload, momentum) for a job whose client records its
        layers' feature statistics into ``payload`` at every step, as
        ``Method.client_statistics`` declares (the sequential path's recorder, in the
        vectorised step). ``terms``: None, or every job's ``LossTerm`` (one ``loss`` for
        all), added to its loss as LocalTrainer adds the term's regulariser."""
        local, k_all = self.local, len(bases)
        records = records or [None] * k_all
        if terms is not None:
            if any(t is None or t.loss != terms[0].loss for t in terms):
                raise ValueError("a batched group needs one loss term shared by all its jobs")
            self._term_loss = terms[0].loss
        for rec in records:
            if rec is not None:   # a job's recording starts with its training (a retrained job: afresh)
                rec[0]["stats"], rec[0]["steps"] = [], 0
        steps = [num_steps(len(c), local) for c in clients]
        order = sorted(range(k_all), key=lambda j: -steps[j])   # longest first: active jobs are a prefix
        steps_sorted = [steps[j] for j in order]
        idx, sizes, gens = self._plan([clients[j] for j in order], [seeds[j] for j in order], steps_sorted)
        flat = torch.stack([bases[j] for j in order])
        losses = torch.zeros(k_all, device=self.device)
        opt_state = [torch.zeros_like(flat) for _ in range(2 if local["optimizer"] == "adam" else 1)]
        names, numels, shapes = self.layout.names, self.layout.numels, self.layout.shapes
        for step in range(steps_sorted[0]):
            k = sum(1 for s in steps_sorted if s > step)
            rows = idx[step, :k]
            mask = rows >= 0
            rows = rows.clamp_min(0)
            p = flat[:k]
            params = {n: t.view(k, *s) for n, t, s in zip(names, p.split(numels, dim=1), shapes)}
            recording = [records[j] for j in order[:k]]
            drawn = None if terms is None else stack_drawn(
                [terms[j].draw(y[rows[pos, :sizes[pos][step]]]) for pos, j in enumerate(order[:k])],
                terms[0].per_sample, rows.shape[1])
            grads, loss, stats = self._grad(params, self._inputs(x, rows, step, sizes, gens[:k]), y[rows], mask,
                                            drawn, record=any(r is not None for r in recording))
            for pos, rec in enumerate(recording):
                if rec is not None:
                    fold_running_stats(rec[0], [(m[pos], v[pos]) for m, v in stats], rec[1])
            g = torch.cat([grads[n].reshape(k, -1) for n in names], dim=1)
            self._update(p, g, [t[:k] for t in opt_state], step)
            losses[:k] += loss.detach()
        means = (losses / torch.tensor(steps_sorted, device=self.device)).tolist()
        out: list = [None] * k_all
        for pos, j in enumerate(order):
            out[j] = (flat[pos].clone(), means[pos])
        return out

    def _update(self, p: torch.Tensor, g: torch.Tensor, state: list[torch.Tensor], step: int) -> None:
        """One optimiser step on the stacked rows ``p`` in place, as LocalTrainer's
        optimiser does it: torch.optim's SGD formula (momentum, weight decay) elementwise,
        and Adam through the same fused kernel, on the whole stack at once (every row is
        at step ``step + 1``, so one bias correction serves all)."""
        local = self.local
        if local["optimizer"] == "adam":
            m, v = state
            count = torch.tensor(float(step), device=p.device)   # the kernel counts it up to step + 1
            adam_step([p], [g], [m], [v], [], [count], fused=True, amsgrad=False,
                      beta1=ADAM_BETAS[0], beta2=ADAM_BETAS[1], lr=local["lr"],
                      weight_decay=local["weight_decay"], eps=ADAM_EPS, maximize=False)
            return
        if local["weight_decay"]:
            g = g.add(p, alpha=local["weight_decay"])
        if local["momentum"]:
            buf = state[0]
            if step == 0:
                buf.copy_(g)
            else:
                buf.mul_(local["momentum"]).add_(g)
            g = buf
        p.add_(g, alpha=-local["lr"])


def stack_drawn(drawn: list[dict], per_sample: tuple[str, ...], width: int) -> dict:
    """The jobs' drawn tensors (``LossTerm.draw``) stacked per key; the ``per_sample`` ones
    zero-padded to ``width`` rows first (the padded batch's rows, which the loss masks)."""
    out = {}
    for key in drawn[0]:
        parts = [d[key] for d in drawn]
        if key in per_sample:
            parts = [torch.cat([t, t.new_zeros(width - len(t), *t.shape[1:])]) for t in parts]
        out[key] = torch.stack(parts)
    return out

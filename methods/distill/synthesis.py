"""FedRevive's meta-learned synthesiser and the bounded pool of synthetic samples.

One synthesis (reference ``FastMetaSynthesizer.synthesize``):
1. targets y ~ mean_k q_k;
2. the *source* starts a fast copy of its meta-learned part plus per-batch synthesis
   variables; K_synth Adam steps (betas 0.5/0.999) on them minimise
       L = w_bn·L_BN + w_ce·L_CE + w_adv·L_adv,
   each term weighted per sample by w_k(y):
       L_BN  = Σ_k (Σ_i w_k(y_i)/B) · Σ_l ‖μ_l,k(x) − μ̂_l,k‖ + ‖σ²_l,k(x) − σ̂²_l,k‖  (recorded stats)
       L_CE  = (1/B) Σ_i Σ_k w_k(y_i) · CE(T_k(x_i), y_i)
       L_adv = −(1/B) Σ_i Σ_k w_k(y_i) · KL(T_k(x_i) ‖ S(x_i)) · [argmax T_k = argmax S]
   (L_adv only once ``adversarial`` is on: after the warm-up);
3. keep the lowest-loss batch of the K_synth steps in the pool;
4. Reptile: the slow part's Adam gets θ − θ_fast as its gradient.

Sources: ``GeneratorSource`` (images: the class-conditional generator is the slow
part, noise z and class embeddings the variables) and, in ``text_synthesis``,
``SnippetSource`` (text: meta-learned prompt vectors; LM-written snippets' embeddings
the variables). The synthesiser itself only needs ``forward(model, x)``.
"""
from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F
from torch import nn

from asyncfl_bench.methods.distill.feature_stats import BatchStats, stats_matching_loss
from asyncfl_bench.methods.distill.teachers import teacher_weights
from asyncfl_bench.training.adam import Adam


def augment(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Differentiable random crop (reflect padding ``pad``) and horizontal flip, per sample."""
    if pad <= 0 and not flip:
        return x
    n, c, h, w = x.shape
    if pad > 0:
        mode = "reflect" if pad < min(h, w) else "replicate"
        padded = F.pad(x, (pad, pad, pad, pad), mode=mode)
        oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
        ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
        rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        x = padded[torch.arange(n, device=x.device)[:, None, None, None],
                   torch.arange(c, device=x.device)[None, :, None, None], rows, cols]
    if flip:
        mask = (torch.rand(n, generator=generator) < 0.5).to(x.device)[:, None, None, None]
        x = torch.where(mask, x.flip(-1), x)
    return x


def items_by_label(item_labels: torch.Tensor) -> dict[int, torch.Tensor]:
    """Label → indices of the items with that label, ascending."""
    return {int(c): (item_labels == c).nonzero().flatten() for c in item_labels.unique()}


def items_with_labels(item_labels: torch.Tensor, wanted: torch.Tensor, generator: torch.Generator,
                      by_label: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
    """For each wanted label, the index of a random item with that label (of any item
    when none has it), drawn class by class in ascending order. ``by_label``:
    ``items_by_label(item_labels)``, computed once for many draws."""
    idx = torch.empty(len(wanted), dtype=torch.long)
    for c in wanted.unique().tolist():
        slots = (wanted == c).nonzero().flatten()
        have = (by_label.get(c) if by_label is not None else (item_labels == c).nonzero().flatten())
        if have is None or len(have) == 0:
            have = torch.arange(len(item_labels))
        idx[slots] = have[torch.randint(len(have), (len(slots),), generator=generator)]
    return idx


class SyntheticPool:
    """FIFO pool of (input, label) pairs, at most ``size`` of them."""

    def __init__(self, size: int):
        self.size = size
        self.x: torch.Tensor | None = None
        self.y: torch.Tensor | None = None
        self._by_label: dict[int, torch.Tensor] | None = None   # for the pool's current y

    def __len__(self) -> int:
        return 0 if self.y is None else len(self.y)

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        x, y = x.detach(), y.detach()
        if self.y is not None:
            x, y = torch.cat([self.x, x]), torch.cat([self.y, y])
        self.x, self.y = x[-self.size:], y[-self.size:]   # drop the oldest
        self._by_label = None

    def sample(self, dist: torch.Tensor, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """n samples whose labels follow ``dist``: draw a label per slot from dist, then a
        pool item of that label (any item if the pool has none of it)."""
        labels = torch.multinomial(dist.float().cpu() / dist.sum(), n, replacement=True, generator=generator)
        # KD samples every teacher's batch from the same pool: index its labels once per change
        if self._by_label is None:
            self._by_label = items_by_label(self.y.cpu())
        idx = items_with_labels(self.y.cpu(), labels, generator, self._by_label).to(self.y.device)
        return self.x[idx], self.y[idx]

    def state(self) -> dict:
        return {"size": self.size, "x": self.x, "y": self.y}

    def load(self, state: dict) -> None:
        self.size, self.x, self.y = state["size"], state["x"], state["y"]
        self._by_label = None


class LossGuard:
    """The reference's loss stabiliser: a non-finite loss, or one above 3× the mean of
    the last (≤ 20, at least 10) accepted values, contributes nothing to this step."""

    def __init__(self, window: int = 20):
        self.window, self.values = window, {}

    def __call__(self, name: str, loss: torch.Tensor) -> torch.Tensor:
        if not torch.isfinite(loss):
            return torch.nan_to_num(loss, nan=0.0, posinf=0.0, neginf=0.0) * 0.0
        seen = self.values.setdefault(name, [])
        v = loss.detach().item()
        if len(seen) >= 10 and (mean := sum(seen) / len(seen)) > 0 and v > 3 * mean:
            return loss * 0.0
        seen.append(v)
        del seen[:-self.window]
        return loss


def kl_per_sample(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(softmax(t/T) ‖ softmax(s/T)) · T² for each row."""
    t = F.log_softmax(teacher_logits / temperature, dim=1)
    s = F.log_softmax(student_logits / temperature, dim=1)
    return (t.exp() * (t - s)).sum(1) * temperature ** 2


def default_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


def reptile_step(meta_opt: Adam, slow: list[torch.Tensor], fast: list[torch.Tensor]) -> None:
    """Reptile: the slow parameters' optimiser gets θ − θ_fast as their gradient."""
    meta_opt.zero_grad()
    for p, fp in zip(slow, fast):
        p.grad = (p.detach() - fp.detach()).clone()
    meta_opt.step()
    meta_opt.zero_grad()


class GeneratorSource:
    """Images from FedRevive's meta-learned generator: per synthesis a fast copy of the
    generator (lr_g), fresh noise z and class embeddings e (lr_z).

    ``input_mean``/``input_std``: the per-channel standardisation the classifier applies
    to its raw inputs (the task's ``extras.mean``/``std``; None: none), so that noise
    probes can be drawn in the classifier's normalised input space."""

    def __init__(self, generator: nn.Module, num_classes: int, rng: torch.Generator, *, lr_g: float = 3e-3,
                 lr_z: float = 1e-3, emb_weight: float = 0.2, input_mean=None, input_std=None):
        self.generator, self.num_classes, self.rng = generator, num_classes, rng
        self.lr_g, self.lr_z, self.emb_weight = lr_g, lr_z, emb_weight
        self.input_mean, self.input_std = input_mean, input_std
        # eps 1e-8 (the reference uses 0): a parameter the inner steps leave unchanged would give 0/0
        self.meta_opt = Adam(generator.parameters(), lr=lr_g, betas=(0.5, 0.999), eps=1e-8)
        self.fast: nn.Module | None = None
        # one fast copy for the whole run, reset from the slow generator at every synthesis
        # (its weights, BatchNorm statistics and mode): the state a fresh deep copy has
        self._fast_copy: nn.Module | None = None

    def begin(self, y: torch.Tensor):
        """(Adam parameter groups, a function making the batch) for targets y."""
        nz, device = self.generator.nz, y.device
        z = torch.randn(len(y), nz, generator=self.rng).to(device).requires_grad_()
        emb = torch.randn(self.num_classes, nz, generator=self.rng).to(device).requires_grad_()
        if self._fast_copy is None:
            self._fast_copy = copy.deepcopy(self.generator)
        else:
            with torch.no_grad():
                for dst, src in zip(self._fast_copy.state_dict().values(), self.generator.state_dict().values()):
                    dst.copy_(src)
            self._fast_copy.train(self.generator.training)
        fast = self.fast = self._fast_copy
        groups = [{"params": list(fast.parameters()), "lr": self.lr_g}, {"params": [z, emb], "lr": self.lr_z}]
        return groups, lambda: fast(z, y, emb, self.emb_weight)

    def end(self) -> None:
        reptile_step(self.meta_opt, list(self.generator.parameters()), list(self.fast.parameters()))
        self.fast = None

    def probe_inputs(self, n: int) -> torch.Tensor:
        """Raw images x = mean + std·ε, ε ~ N(0, I), for the proxy class proportions: the
        classifier's standardisation (x − mean)/std turns them back into ε, so the probes
        are N(0, I) where the model computes, as the reference feeds N(0, 1) to a model
        without input scaling (NVIDIA/NVFlare research/fedrevive dfkd.py
        ``ClassProportionProxyEstimator``). Without a standardisation, x = ε."""
        device = next(self.generator.parameters()).device
        eps = torch.randn(n, *self.generator.input_shape, generator=self.rng)
        if self.input_mean is None or self.input_std is None:
            return eps.to(device)
        shape = (1, -1) + (1,) * (eps.dim() - 2)   # per channel
        mean = torch.as_tensor(self.input_mean, dtype=eps.dtype).view(shape)
        std = torch.as_tensor(self.input_std, dtype=eps.dtype).view(shape)
        return (mean + std * eps).to(device)

    def state(self) -> dict:
        return {"generator": self.generator.state_dict(), "meta_opt": self.meta_opt.state_dict()}

    def load(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        self.meta_opt.load_state_dict(state["meta_opt"])


class Synthesiser:
    def __init__(self, source, pool: SyntheticPool, rng: torch.Generator, *,
                 steps: int = 2, batch: int = 64, w_bn: float = 0.003, w_ce: float = 1.0,
                 w_adv: float = 0.1, aug_pad: int = 4, aug_flip: bool = True, forward=default_forward,
                 match_variance: bool = True):
        self.source, self.pool, self.rng = source, pool, rng
        self.steps, self.batch = steps, batch
        self.w_bn, self.w_ce, self.w_adv = w_bn, w_ce, w_adv
        self.aug_pad, self.aug_flip, self.forward, self.match_variance = aug_pad, aug_flip, forward, match_variance
        self.guard = LossGuard()
        self.seconds, self.count = 0.0, 0

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        return augment(x, self.aug_pad, self.aug_flip, self.rng)

    def synthesize(self, teachers: list[nn.Module], stats: list[list], q: torch.Tensor,
                   student: nn.Module, adversarial: bool) -> dict:
        """One synthesis round; adds the best batch to the pool and returns loss parts."""
        t0 = time.perf_counter()
        device = q.device
        w = teacher_weights(q)                                        # (K, C)
        y = torch.multinomial(q.mean(0).cpu(), self.batch, replacement=True, generator=self.rng).to(device)
        sw = w[:, y].T                                                # (B, K): w_k(y_i)
        groups, make = self.source.begin(y)
        opt = Adam(groups, betas=(0.5, 0.999))   # every group sets its own lr
        student.eval()
        best, best_x, parts = float("inf"), None, {}
        for _ in range(self.steps):
            x = make()
            xa = self.augment(x)
            logits, l_bn = [], x.new_zeros(())
            for k, t in enumerate(teachers):
                with BatchStats(t) as bs:
                    logits.append(self.forward(t, xa))
                if self.w_bn and stats[k]:
                    l_bn = l_bn + sw[:, k].sum() * stats_matching_loss(bs.stats, stats[k], self.match_variance)
            l_bn = self.guard("bn", l_bn / self.batch)
            ce = torch.stack([F.cross_entropy(lg, y, reduction="none") for lg in logits], 1)   # (B, K)
            l_ce = self.guard("ce", (sw * ce).sum() / self.batch)
            l_adv = x.new_zeros(())
            if adversarial and self.w_adv:
                s_logits = self.forward(student, xa)
                adv = torch.stack([-kl_per_sample(s_logits, lg) * (s_logits.argmax(1) == lg.argmax(1)).float()
                                   for lg in logits], 1)
                l_adv = self.guard("adv", (sw * adv).sum() / self.batch)
            loss = self.w_bn * l_bn + self.w_ce * l_ce + self.w_adv * l_adv
            value = loss.detach().item()
            if value < best:
                best, best_x = value, x.detach().clone()
            parts = {"bn": l_bn.detach().item(), "ce": l_ce.detach().item(), "adv": l_adv.detach().item()}
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.source.end()
        self.pool.add(best_x if best_x is not None else x.detach(), y)
        self.seconds += time.perf_counter() - t0
        self.count += 1
        return {"loss": best, **parts}

    def state(self) -> dict:
        return {"source": self.source.state(), "guard": {k: list(v) for k, v in self.guard.values.items()},
                "seconds": self.seconds, "count": self.count}

    def load(self, state: dict) -> None:
        self.source.load(state["source"])
        self.guard.values = {k: list(v) for k, v in state["guard"].items()}
        self.seconds, self.count = state["seconds"], state["count"]

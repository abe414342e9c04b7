"""Server-side aggregation shared by the methods.

* ``weighted_mean``: Σ w_i·v_i / Σ w_i over a buffer of flat vectors;
* ``ServerOptimizer``: server SGD with momentum on the pseudo-gradient −Δ (FedOpt's form);
* ``AdaptiveServerOptimizer``: FedOpt's server Adam / Yogi / Adagrad (Reddi et al.,
  ICLR 2021, Alg. 2), with AMSGrad's running maximum and bias correction as options
  (FADAS);
* ``LatestPerClient``: each client's latest tensor and their running sum (FedEcho's
  ensemble of predictions, CA2FL's cache of updates);
* ``BufferedMethod``: FedBuff's server loop (Nguyen et al., AISTATS 2022, Alg. 1):
  buffer K contributions, s(τ)·Δ by default, then x ← x + η_g·mean through the server
  optimiser. Variants override small hooks (what an arrival contributes and weighs,
  when the buffer is full, how it is aggregated, which optimiser applies it and at
  what share of its rate, what the server makes of the stepped model, what follows
  a step);
* ``CorrectedDeltaMethod``: methods that turn a stale delta into an estimate Δ̃ of the
  fresh one (DC-ASGD, gi-switch) rebase it on the current model, x_t + Δ̃, and
  aggregate it like an ordinary arrival, by the rule ``aggregation`` picks:

  - ``fedasync``: x ← (1 − a)·x + a·(x + Δ̃) = x + a·Δ̃, a = α·s(τ) (Xie et al. 2019, Alg. 1);
  - ``fedbuff``: buffer s(τ)·Δ̃; every K arrivals x ← x + η_g·mean (Nguyen et al. 2022, Alg. 1).

  s(τ) defaults to ``constant`` there: a compensated delta stands for a fresh one,
  and both papers apply it undiscounted.

Step-size convention (every method's defaults are audited against it in its docstring):

* a buffered server step multiplies the weighted MEAN of the buffer:
  ``UpdateBuffer.mean`` = Σ w_i·c_i / Σ w_i with w_i = 1 (per update) or n_i
  (``weight_by_samples``, per sample), c_i = ``contribution`` (s(τ_i)·Δ_i by default);
  ``ServerOptimizer`` then takes m ← μ·m + mean, x ← x + η_g·m (heavy-ball, the same
  form as ``torch.optim.SGD`` on the pseudo-gradient −mean). One arrival therefore
  moves the model by η_g·(w_i/Σw)·s(τ_i)·Δ_i, i.e. η_g·s(τ)/K with uniform weights,
  and by up to 1/(1 − μ) times that in the long run with momentum;
* a source whose server learning rate multiplies the SUM of the K buffered deltas
  (FLSim's FedBuff aggregators: ``flsim/optimizers/async_aggregators.py``, a
  ``RoundReducer`` with ``ReductionType.WEIGHTED_SUM``) converts as
  η_g(here) = K·η_g(source); momentum μ carries over unchanged;
* ``CorrectedDeltaMethod`` with ``aggregation=fedasync`` has no buffer: α·s(τ)·Δ̃ per
  arrival. Its ``fedbuff`` defaults (K = 10, η_g = 1, μ = 0) are 0.1 of each Δ̃ per arrival.
"""
from __future__ import annotations

import torch

from asyncfl_bench.contract.method import ClientUpdate, Method
from asyncfl_bench.errors import UserError
from asyncfl_bench.staleness import make_staleness


def weighted_mean(vectors: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    """Σ w_i·v_i / Σ w_i, accumulated in order (the digits the baselines record depend on it)."""
    total = sum(weights)
    out = torch.zeros_like(vectors[0])
    for v, w in zip(vectors, weights):
        out.add_(v, alpha=w / total)
    return out


class ServerOptimizer:
    """Server SGD with momentum on the pseudo-gradient −Δ (FedOpt's form):
    m ← μ·m + Δ; x ← x + η·m. With μ = 0 this is x ← x + η·Δ."""

    def __init__(self, lr: float, momentum: float = 0.0):
        self.lr, self.momentum, self.buf = lr, momentum, None

    def apply(self, params: torch.Tensor, delta: torch.Tensor, lr_scale: float = 1.0) -> torch.Tensor:
        if self.momentum:
            self.buf = delta.clone() if self.buf is None else self.buf.mul_(self.momentum).add_(delta)
            delta = self.buf
        return params + (self.lr * lr_scale) * delta

    def state(self) -> dict:
        return {"buf": self.buf}

    def load(self, state: dict) -> None:
        self.buf = state.get("buf")


class AdaptiveServerOptimizer:
    """FedOpt's adaptive server step on the round's pseudo-update Δ (Reddi, Charles, Zaheer,
    Garrett, Rush, Konečný, Kumar, McMahan, "Adaptive Federated Optimization", ICLR 2021,
    Algorithm 2, with −Δ as the gradient):

        m ← β1·m + (1 − β1)·Δ
        v ← v + Δ²                                   (adagrad)
        v ← v − (1 − β2)·Δ²·sign(v − Δ²)             (yogi)
        v ← β2·v + (1 − β2)·Δ²                       (adam)
        x ← x + η·m / (√v + ε)                       (ε is the paper's τ, the adaptivity)

    Options beyond Alg. 2, off by default:

    * ``amsgrad``: the denominator is √v̂ with v̂ ← max(v̂, v), never decreasing (FADAS,
      Wang et al., ICML 2024, Alg. 1; yujiaw98/FADAS ``update.py``, optimizer ``fedams``);
    * ``bias_correction``: Adam's, with t the number of steps taken so far plus one:
      η·√(1 − β2^t)/(1 − β1^t) on m/(√v + ε·√(1 − β2^t)), i.e. m̂/(√v̂ + ε) with
      m̂ = m/(1 − β1^t), v̂ = v/(1 − β2^t). Alg. 2 has none; the FedOpt authors' runs
      (Keras Adam), Flower's FedAdam and FADAS's official code correct.

    m, v and v̂ start at 0 (Alg. 2 asks v₋₁ ≥ τ²; the authors' Keras optimisers start
    Adagrad's and Yogi's accumulators at 0, as does FADAS's ``max_init``). Moments
    advance once per call, i.e. once per server step, never per arrival.
    """

    KINDS = ("adam", "yogi", "adagrad")

    def __init__(self, lr: float, kind: str = "adam", beta1: float = 0.9, beta2: float = 0.99,
                 eps: float = 1e-3, amsgrad: bool = False, bias_correction: bool = False):
        if kind not in self.KINDS:
            raise UserError(f"unknown server optimiser '{kind}'; valid: {', '.join(self.KINDS)}")
        self.lr, self.kind, self.beta1, self.beta2, self.eps = lr, kind, beta1, beta2, eps
        self.amsgrad, self.bias_correction = amsgrad, bias_correction
        self.m = self.v = self.vmax = None
        self.t = 0

    def apply(self, params: torch.Tensor, delta: torch.Tensor, lr_scale: float = 1.0) -> torch.Tensor:
        """x + η·m/(√v + ε) after the moment updates above, η times ``lr_scale`` for this
        step only (FADAS's delay-adaptive rate)."""
        if self.m is None:
            self.m, self.v = torch.zeros_like(delta), torch.zeros_like(delta)
            self.vmax = torch.zeros_like(delta) if self.amsgrad else None
        b1, b2 = self.beta1, self.beta2
        self.t += 1
        self.m.mul_(b1).add_(delta, alpha=1 - b1)
        sq = delta * delta
        if self.kind == "adagrad":
            self.v.add_(sq)
        elif self.kind == "yogi":
            self.v.sub_((1 - b2) * sq * torch.sign(self.v - sq))
        else:
            self.v.mul_(b2).add_(sq, alpha=1 - b2)
        v = self.v
        if self.amsgrad:
            torch.maximum(self.vmax, v, out=self.vmax)
            v = self.vmax
        lr, eps = self.lr * lr_scale, self.eps
        if self.bias_correction:
            c1, c2 = 1 - b1 ** self.t, 1 - b2 ** self.t
            lr, eps = lr * c2 ** 0.5 / c1, eps * c2 ** 0.5
        return params + lr * self.m / (v.sqrt() + eps)

    def state(self) -> dict:
        return {"m": self.m, "v": self.v, "vmax": self.vmax, "t": self.t}

    def load(self, state: dict) -> None:
        self.m, self.v, self.vmax, self.t = state.get("m"), state.get("v"), state.get("vmax"), state.get("t", 0)


class LatestPerClient:
    """Each client's latest tensor, stored in ``dtype`` on ``device``, and their sum.

    The sum is kept in float64 and updated on every replacement (add the new tensor,
    subtract the one it replaces), so it stays the sum of what is stored without
    re-adding N tensors.
    """

    def __init__(self, shape, dtype: torch.dtype = torch.float32, device="cpu"):
        self.dtype, self.device = dtype, torch.device(device)
        self.latest: dict[int, torch.Tensor] = {}
        self.total = torch.zeros(shape, dtype=torch.float64, device=self.device)

    def update(self, client: int, value: torch.Tensor) -> torch.Tensor | None:
        """Store ``value`` as the client's latest; return the tensor it replaces (None the first time)."""
        new = value.detach().to(self.device, self.dtype)
        old = self.latest.get(client)
        self.total += new.double() - (0 if old is None else old.double())
        self.latest[client] = new
        return old

    def __len__(self) -> int:
        return len(self.latest)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.latest.values())

    def state(self) -> dict:
        return {"latest": dict(self.latest), "total": self.total}

    def load(self, state: dict) -> None:
        self.latest, self.total = {int(k): v for k, v in state["latest"].items()}, state["total"]


class UpdateBuffer:
    """What awaits the next server step: the contributions, their weights and staleness,
    and the server optimiser that applies their aggregate."""

    def __init__(self, opt: ServerOptimizer | AdaptiveServerOptimizer):
        self.opt = opt
        self.buffer: list[torch.Tensor] = []
        self.counts: list[float] = []
        self.staleness: list[int] = []

    def add(self, contribution: torch.Tensor, weight: float, staleness: int = 0) -> None:
        self.buffer.append(contribution)
        self.counts.append(weight)
        self.staleness.append(staleness)

    def __len__(self) -> int:
        return len(self.buffer)

    def mean(self) -> torch.Tensor:
        return weighted_mean(self.buffer, self.counts)

    def clear(self) -> None:
        self.buffer, self.counts, self.staleness = [], [], []

    def state(self) -> dict:
        return {"buffer": list(self.buffer), "counts": list(self.counts),
                "staleness": list(self.staleness), "opt": self.opt.state()}

    def load(self, state: dict) -> None:
        self.buffer, self.counts = list(state["buffer"]), list(state["counts"])
        # checkpoints written before the buffer kept staleness: only FADAS reads it
        self.staleness = list(state.get("staleness", [0] * len(self.buffer)))
        self.opt.load(state["opt"])


class BufferedMethod(Method):
    """FedBuff's server loop (Nguyen et al., AISTATS 2022, Alg. 1) with hooks for its variants.

    Every arrival adds ``contribution(update)`` with weight ``weight(update)`` to the
    buffer ``self.agg``; when ``round_ends(update)`` the server takes
    x̂ = ``server_optimizer()``(x, ``aggregate()``) at η·``lr_scale()``, empties the buffer, commits
    ``refine(x̂)`` as the new model and calls ``after_step()``.

    Hyperparameters read: ``server_lr`` (η_g), and where a variant has them
    ``buffer_size`` (K), ``server_momentum`` (default 0), ``staleness`` (s(τ),
    default constant) and ``weight_by_samples`` (default False).
    """

    def __init__(self, ctx, params, **hparams):
        super().__init__(ctx, params, **hparams)
        hp = self.hp
        if hasattr(hp, "buffer_size") and hp.buffer_size < 1:
            raise UserError(f"{self.name}.buffer_size must be ≥ 1, got {hp.buffer_size}; "
                            f"fix: --set {self.name}.buffer_size=10")
        # variants without staleness scaling or server momentum leave those keys out
        self.s = make_staleness(getattr(hp, "staleness", "constant"))
        self.agg = UpdateBuffer(self.server_optimizer())

    # -- hooks ---------------------------------------------------------------------
    def server_optimizer(self) -> ServerOptimizer | AdaptiveServerOptimizer:
        """What applies the aggregate: server SGD with η_g and momentum μ (FedOpt adapts it)."""
        return ServerOptimizer(self.hp.server_lr, getattr(self.hp, "server_momentum", 0.0))

    def contribution(self, update: ClientUpdate) -> torch.Tensor:
        """What the arrival puts in the buffer: s(τ)·Δ."""
        return self.s(update.staleness) * update.delta

    def weight(self, update: ClientUpdate) -> float:
        """Its weight in the mean: 1, or its sample count n_i with ``weight_by_samples``."""
        return float(update.num_samples) if getattr(self.hp, "weight_by_samples", False) else 1.0

    def round_ends(self, update: ClientUpdate) -> bool:
        """Whether this arrival triggers the server step: the buffer holds K."""
        return len(self.agg) >= self.hp.buffer_size

    def aggregate(self) -> torch.Tensor:
        """The server's pseudo-update from the buffer: the weighted mean."""
        return self.agg.mean()

    def lr_scale(self) -> float:
        """A factor on η for the step about to be taken, read from the full buffer (FADAS)."""
        return 1.0

    def refine(self, stepped: torch.Tensor) -> torch.Tensor:
        """The model the server commits, given the stepped one x̂ (FedEcho distils from it)."""
        return stepped

    def after_step(self) -> None:
        """Server work after a step (FedGen's generator round)."""

    # -- the loop ------------------------------------------------------------------
    def receive(self, update: ClientUpdate) -> None:
        self.agg.add(self.contribution(update), self.weight(update), update.staleness)
        if self.round_ends(update):
            stepped = self.agg.opt.apply(self.params, self.aggregate(), self.lr_scale())
            self.agg.clear()
            self.step(self.refine(stepped))
            self.after_step()

    def server_state(self) -> dict:
        return {"agg": self.agg.state()}

    def load_server_state(self, state: dict) -> None:
        self.agg.load(state["agg"])


class CorrectedDeltaMethod(BufferedMethod):
    """Aggregates ``corrected_delta(update)``, an estimate Δ̃ of the fresh delta,
    FedAsync- or FedBuff-style (see the module docstring)."""

    defaults = {
        "aggregation": "fedasync",  # fedasync | fedbuff
        "alpha": 0.6,               # fedasync: α, FedAsync's default
        "staleness": "constant",    # s(τ), see asyncfl_bench/staleness.py
        "buffer_size": 10,          # fedbuff: K
        "server_lr": 1.0,           # fedbuff: η_g
        "server_momentum": 0.0,     # fedbuff: server SGD momentum
    }
    KINDS = ("fedasync", "fedbuff")

    def __init__(self, ctx, params, **hparams):
        super().__init__(ctx, params, **hparams)
        if self.hp.aggregation not in self.KINDS:
            raise UserError(f"unknown aggregation '{self.hp.aggregation}'; valid: {', '.join(self.KINDS)}")

    def corrected_delta(self, update: ClientUpdate) -> torch.Tensor:
        """Δ̃, the estimate of the delta the client would send from x_t."""
        raise NotImplementedError

    def contribution(self, update: ClientUpdate) -> torch.Tensor:
        return self.s(update.staleness) * self.corrected_delta(update)

    def receive(self, update: ClientUpdate) -> None:
        if self.hp.aggregation == "fedbuff":
            super().receive(update)
            return
        delta = self.corrected_delta(update)
        self.step(self.params + (self.hp.alpha * self.s(update.staleness)) * delta)

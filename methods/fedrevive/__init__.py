"""FedRevive: revive stale updates with data-free multi-teacher distillation.

"FedRevive" (arXiv 2511.00655); reference code: the authors' ``research/fed-revive``
(NVFlare fork) and NVIDIA/NVFlare ``research/fedrevive``.

On each arrival (client i, staleness τ):
1. its model x_i joins the teacher buffer (the c most recent client models), with
   class proportions q_i (``class_proportions``):
   * ``histogram`` (default, the authors' code path): the client's true label counts,
     normalised. They travel with the update (``ClientUpdate.label_counts``), so the
     server learns every client's label histogram: this mode is not label-private;
   * ``probe`` (the paper's privacy-preserving estimate): softmax(f(ε)/0.8) averaged
     over 64 probes ε ~ N(0, I) drawn in the model's normalised input space (raw
     x = mean + std·ε, with the task's ``extras.mean``/``std``, so the model's
     standardisation sees ε), on the client's first two uploads, then frozen;
2. if β(τ) > 0 and version ≥ ``freeze_versions``: the meta-learned generator
   synthesises a batch into the pool (``distill.synthesis``) on every such arrival
   (``synth_every`` = 1, the authors' code: NVIDIA ``DFKDConfig.generation_interval`` = 1,
   README "synthesizes on every eligible update"; n > 1: at most once every n versions,
   the paper's T_gen = 10); after ``warmup_versions`` the student x_S, started at x_t,
   is distilled from the teachers on the pool (``distill.kd``) and Δ^KD = x_S − x_t
   (Δ^KD = 0 before). L_adv joins the synthesis loss from the ``adv_start``-th synthesis
   on (the authors' ``FastMetaSynthesizer``: ``self.ep_start = dfkd_config["warmup_rounds"]``,
   ``ep`` counts syntheses with the current one, L_adv while ``self.ep >= self.ep_start``;
   ``adv_start=warmup``, the default, takes the warm-up gate's number). Syntheses begin
   at the freeze gate, so L_adv starts after the KD gate (the authors' CIFAR-10 run: the
   100th synthesis falls near version 150). A run whose last version does not pass both
   gates synthesises nothing: its pool could never be used;
3. hybrid update u_i = (1 − β(τ))·Δ_i + β(τ)·Δ^KD, with
   β(τ) = 1 − ½(1 + cos(π τ / (2 s_max))) for τ ≤ 2 s_max, else 1;
4. buffered aggregation x ← x + η_g · mean(u) every B arrivals (B = 1, η_g = 0.1;
   ``aggregation.BufferedMethod``).

``distillation=False`` turns steps 1–2 off and takes AFL-DW's update u_i = (1 − β(τ))·Δ_i
on every arrival, with no freeze gate (``fedrevive/afl_dw.py``, the authors' control).

Diagnostics (``metrics()["diagnostics"]``, one flat dict):
* ``kd_to_raw_norm_ratio``: mean over distilled arrivals with β < 1 of
  ‖β·Δ^KD‖ / ‖(1 − β)·Δ_i‖, how much of the arrival's step the revival is;
* ``kd_to_delta_norm_ratio``: mean over distilled arrivals of ‖Δ^KD‖ / ‖Δ_i‖, the size
  of the distilled update against the client's (≈ 13 % in the authors' CIFAR-10 setting
  by Adam's steps × lr bound);
* ``mean_beta``: mean β(τ) over every arrival;
* ``distilled_share``: share of arrivals whose Δ^KD came from a distillation;
* ``q_tv_distance``: mean over arrivals of ½·Σ_y |q_i(y) − h_i(y)|, the total-variation
  distance between the q used for the arriving client and its true normalised label
  histogram h_i (0 with ``histogram``; absent when no histogram travels).

Defaults are the reference CIFAR-10 configuration, with s_max and the gates relative to
the run (``fedrevive/scale.py``): the gates as shares of the run's versions (0.25 % and
0.5 %: the authors' 50 and 100 at the paper preset's 20,000 versions; an int is a
version, as in the authors' configs) and ``cosine:s_max=auto``, the median staleness of
the run's schedule (73 at paper scale, where the paper presets set the authors' 75).
The task presets hold the reference's per-dataset changes (``tasks/presets.py``,
``FEDREVIVE``, each value with its config file and key). ``metrics()["resolved"]``
records the values a run took; a run that never distilled says so (``engagement``).
``beta`` takes any ``asyncfl_bench.beta`` schedule for
ablations (``fixed:0.5``, ``linear:gamma=…``, ``exponential:lam=…``, ``step:base=…``).

Step size, audited against the reference code (NVIDIA/NVFlare ``research/fedrevive``):

* Server step: ``fedrevive.py`` ``process_update`` adds server_lr·average_delta, the
  uniform MEAN of the B processed updates (one weight per update); its
  ``FIGURE_2_METHOD_CONFIGS``: FedRevive B = 1, η_g = 0.10; FedBuff K = 2, η_g = 0.05;
  FedAvg K = B = 100, η = 1.4. Same convention as here (``aggregation.UpdateBuffer``):
  factor 1. One arrival moves the model by η_g·(1 − β(τ))·Δ_i + η_g·β(τ)·Δ^KD.
* ``kd_lr`` = 1e-4 is the student's Adam rate over K_KD = 10 steps, ``lr_g``/``lr_z``
  the generator's and latents' Adam rates: they shape Δ^KD, which then gets the same
  η_g·β(τ). Taken over unchanged (reference README, CIFAR-10 table).
* Presets: FEMNIST (small, paper, ci) η_g = 0.05 from the authors' FEMNIST config
  (``tasks/presets.py``); other tasks keep 0.1 and B = 1. The paper presets' FedBuff
  baselines are the authors' per task (``presets.FEDBUFF_PAPER``). ``s_max=auto`` keeps
  τ/s_max, which sets β(τ) and with it the share η_g·(1 − β(τ)) of Δ_i that reaches
  the model, near the reference's at any concurrency (β = ½ at the median τ: 73 of the
  reference's ≈ 100 in flight, 6 of digits ci's 10).
* Local lr in the paper presets: CIFAR-10 3e-4 as the reference (README: "Client
  learning rate 3×10⁻⁴"; ``tasks/presets.py`` ``PAPER_LOCAL_LR``), so Δ^KD/Δ ≈
  (10·1e-4)/(25·3e-4) ≈ 13 % as there; the other tasks keep the assumed 1e-3, with
  20NG's KD rate from the authors' config (KD 10 × 3e-4 against 25 × 1e-3, ≈ 12 %)
  and CIFAR-100's (3e-5: ≈ 1 %).

Feature statistics: the reference replaces BatchNorm by trackers of per-channel
conv-output mean/variance, updated with momentum 0.1 during local training. Here a
client regulariser (which adds no loss) folds forward-hook statistics into the
job's payload, which comes back with the update (``distill.feature_stats``).
Inputs: ``ctx.extras.input_shape`` (C, H, W); synthetic images lie in [0, 1].

Text (tasks whose ``extras.input_kind`` is ``"tokens"``): no generator network.
Synthesis starts from an LM-written corpus (``asyncfl-bench data lm-corpus``; the
``corpus`` parameter picks it, ``auto`` = the newest for the task), optimises the
snippets' embeddings (lr_z) behind ``prompt_vectors`` meta-learned prompt vectors
(``distill.text_synthesis``); teachers and student read ``inputs_embeds``; L_BN
matches the encoder layers' token means only, as the reference's text trackers do;
no augmentation.
"""
from __future__ import annotations

import time

import torch

from asyncfl_bench.errors import UserError
from asyncfl_bench.contract.method import ClientUpdate
from asyncfl_bench.methods.fedrevive.afl_dw import AFLDW
from asyncfl_bench.methods.fedrevive.scale import last_version, resolve_gate, run_versions
from asyncfl_bench.methods.distill.feature_stats import record_running_stats
from asyncfl_bench.methods.distill.generator import ImageGenerator
from asyncfl_bench.methods.distill.kd import distill
from asyncfl_bench.methods.distill.synthesis import GeneratorSource, SyntheticPool, Synthesiser
from asyncfl_bench.methods.distill.text_synthesis import SnippetSource, text_forward
from asyncfl_bench.methods.distill.teachers import (ProxyEstimator, Teacher, TeacherBuffer, histogram_proportions,
                                                    probe_class_proportions, total_variation)

CLASS_PROPORTIONS = ("histogram", "probe")


def input_shape(ctx) -> tuple[int, ...]:
    shape = ctx.extras.input_shape
    if shape is None:
        raise UserError("this method synthesises inputs and needs the task's input shape; "
                        "fix: the task should set TaskExtras.input_shape = (C, H, W)")
    return tuple(int(s) for s in shape)


def frozen_models(ctx, n: int, seed: int) -> list[torch.nn.Module]:
    """n scratch copies of the task model (weights are loaded before every use)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)   # initial weights are overwritten; keep the global RNG untouched
        models = [ctx.build_model().to(ctx.device) for _ in range(n)]
    for m in models:
        m.requires_grad_(False)
    return models


class FedRevive(AFLDW):
    """AFL-DW's aggregation (``fedrevive/afl_dw.py``) plus the revival of stale updates."""
    name = "fedrevive"
    source = "FedRevive, arXiv 2511.00655 (2025)"
    # the reference CIFAR-10 values (NVIDIA/NVFlare research/fedrevive: fedrevive.py
    # FIGURE_2_METHOD_CONFIGS, dfkd.py DFKDConfig; the authors' dfkd_settings keys alongside)
    defaults = {
        "buffer_size": 1,              # B: FIGURE_2_METHOD_CONFIGS[FEDREVIVE].buffer_size
        "server_lr": 0.1,              # η_g: FIGURE_2_METHOD_CONFIGS[FEDREVIVE].server_lr
        # β(τ): cosine_staleness_beta(staleness, 75) (dfkd_settings.adaptive_beta_factor);
        # auto: the run's median staleness, 73 on the paper preset's schedule (scale.py)
        "beta": "cosine:s_max=auto",
        "distillation": True,          # False: AFL-DW's (1 − β)·Δ (the authors' async_downweighting)
        "class_proportions": "histogram",  # q_k: histogram (authors' client.class_proportions) | probe
        "teachers": 8,                 # c: DFKDConfig.teacher_buffer_size
        # no synthesis or distillation before: DFKDConfig.freeze_versions = 50
        # (dfkd_settings.freeze_rounds), as a share of the run's versions: 50 of the paper
        # preset's 20,000 (scale.py); an int is a version
        "freeze_versions": "0.25%",
        # Δ^KD = 0 until this version: DFKDConfig.warmup_versions = 100 (dfkd_settings.warmup_rounds),
        # 100 of the paper preset's 20,000 versions
        "warmup_versions": "0.5%",
        # L_adv from this synthesis on: FastMetaSynthesizer ep_start = dfkd_settings.warmup_rounds,
        # counted in syntheses (ep >= ep_start); "warmup": the warm-up gate's number
        "adv_start": "warmup",
        # syntheses at most every n versions: 1 = every revived arrival (DFKDConfig.generation_interval
        # = 1, the authors' code); the paper's T_gen is 10
        "synth_every": 1,
        "synth_steps": 2,              # K_synth: DFKDConfig.generator_steps (dfkd_settings.g_steps)
        "synth_batch": 64,             # DFKDConfig.synth_batch_size (dfkd_settings.synth_batch_size)
        "pool_size": 16000,            # DFKDConfig.max_images (dfkd_settings.max_images)
        "lr_g": 3e-3,                  # DFKDConfig.generator_lr (dfkd_settings.lr_g)
        "lr_z": 1e-3,                  # DFKDConfig.latent_lr (dfkd_settings.lr_z)
        "nz": 256,                     # DFKDConfig.latent_size (dfkd_settings.nz)
        "ngf": 128,                    # DFKDConfig.generator_features
        "emb_weight": 0.2,             # class embedding added to z: DFKDConfig.class_embedding_weight
        "w_bn": 0.003,                 # DFKDConfig.feature_weight (dfkd_settings.bn); per task: presets.FEDREVIVE
        "w_ce": 1.0,                   # DFKDConfig.one_hot_weight (dfkd_settings.oh)
        "w_adv": 0.1,                  # DFKDConfig.adversarial_weight (dfkd_settings.adv)
        "kd_steps": 10,                # K_KD: DFKDConfig.kd_iterations (dfkd_settings.kd_nb_of_iters)
        "kd_batch": 32,                # per teacher: DFKDConfig.kd_batch_size (dfkd_settings.kd_batch_size)
        "kd_lr": 1e-4,                 # DFKDConfig.kd_lr (dfkd_settings.lr); per task: presets.FEDREVIVE
        "kd_weight_decay": 1e-5,       # DFKDReviver.revive: Adam(weight_decay=1e-5)
        "temperature": 1.0,            # DFKDConfig.temperature (dfkd_settings.T)
        "proxy_probes": 64,            # probe mode: DFKDConfig.proxy_batch_size
        "proxy_uploads": 2,            # probe mode: DFKDConfig.proxy_num_uploads
        "proxy_temperature": 0.8,      # probe mode: DFKDConfig.proxy_temperature
        "stats_momentum": 0.1,         # feature trackers' momentum (reference model.StatTracker)
        "aug_pad": 4,                  # random crop with this padding: dfkd.py K.RandomCrop(padding=4)
        "aug_flip": True,              # dfkd.py K.RandomHorizontalFlip
        # text tasks only
        "corpus": "auto",              # LM corpus folder, or the newest for the task
        "prompt_vectors": 4,           # P, meta-learned prompt vectors
        "active_min": 0.5,             # active snippet tokens: a fraction of L − P, from …
        "active_max": 1.0,             # … to (the reference: 64–128 of 128)
    }
    search_space = {"server_lr": "log:low=0.01,high=1.0", "kd_lr": "log:low=1e-5,high=1e-3"}

    def __init__(self, ctx, params, **hparams):
        super().__init__(ctx, params, **hparams)
        hp = self.hp
        for key in ("teachers", "synth_every", "synth_steps", "synth_batch", "pool_size",
                    "kd_steps", "kd_batch", "proxy_probes", "proxy_uploads"):
            if getattr(hp, key) < 1:
                raise UserError(f"fedrevive.{key} must be ≥ 1, got {getattr(hp, key)}")
        # the gates and L_adv's start as versions and a synthesis count of this run (scale.py)
        versions = run_versions(ctx, hp.buffer_size)
        self.freeze = resolve_gate(hp.freeze_versions, versions, "freeze_versions")
        self.warmup = resolve_gate(hp.warmup_versions, versions, "warmup_versions")
        if str(hp.adv_start).strip().lower() == "warmup":
            self.adv_start = self.warmup
        else:
            try:
                self.adv_start = int(str(hp.adv_start).strip())
            except ValueError:
                self.adv_start = -1
            if self.adv_start < 0:
                raise UserError(f"fedrevive.adv_start must be a synthesis count ≥ 0 or 'warmup', "
                                f"got {hp.adv_start!r}")
        # the version at the run's last arrival: distillation needs one past both gates, and
        # without it synthesis would only cost time (a pool nothing distils from)
        self.last_version = last_version(ctx, hp.buffer_size)
        self.distillable = self.last_version is None or max(self.freeze, self.warmup + 1) <= self.last_version
        self.run_versions = None if getattr(ctx, "plan", None) is None else versions
        if hp.class_proportions not in CLASS_PROPORTIONS:
            raise UserError(f"fedrevive.class_proportions '{hp.class_proportions}' unknown; valid: "
                            f"{', '.join(CLASS_PROPORTIONS)}")
        self.rng = torch.Generator().manual_seed(int(ctx.seed) * 1_000_003 + 0xFED)
        self.teachers = TeacherBuffer(hp.teachers)
        self.proxy = ProxyEstimator(hp.proxy_uploads)
        self.pool = SyntheticPool(hp.pool_size)
        *self.teacher_models, self.student = frozen_models(ctx, hp.teachers + 1, ctx.seed)
        self.corpus: dict = {}
        if ctx.extras.input_kind == "tokens":
            self.synthesis_source = self._snippet_source()
            self.synth = Synthesiser(self.synthesis_source, self.pool, self.rng, steps=hp.synth_steps,
                                     batch=hp.synth_batch, w_bn=hp.w_bn, w_ce=hp.w_ce, w_adv=hp.w_adv, aug_pad=0,
                                     aug_flip=False, forward=text_forward, match_variance=False)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(ctx.seed)
                generator = ImageGenerator(input_shape(ctx), hp.nz, hp.ngf).to(ctx.device)
            self.synthesis_source = GeneratorSource(generator, ctx.num_classes, self.rng, lr_g=hp.lr_g,
                                                    lr_z=hp.lr_z, emb_weight=hp.emb_weight,
                                                    input_mean=ctx.extras.mean, input_std=ctx.extras.std)
            self.synth = Synthesiser(self.synthesis_source, self.pool, self.rng, steps=hp.synth_steps,
                                     batch=hp.synth_batch, w_bn=hp.w_bn, w_ce=hp.w_ce, w_adv=hp.w_adv,
                                     aug_pad=hp.aug_pad, aug_flip=hp.aug_flip)
        self.last_synth: int | None = None
        self.log = {"probe_seconds": 0.0, "distill_seconds": 0.0, "distillations": 0, "revivals": 0,
                    "kd_loss_last": None, "ratio_sum": 0.0, "ratio_count": 0, "size_sum": 0.0, "size_count": 0,
                    "tv_sum": 0.0, "tv_count": 0}

    def _snippet_source(self) -> SnippetSource:
        """The text source: the task's LM corpus, tokenised as the task tokenises."""
        from asyncfl_bench.data.lm_corpus import find_corpus, read_corpus
        ctx, hp = self.ctx, self.hp
        extras = ctx.extras
        if not hasattr(self.student, "embed") or extras.encode is None or not extras.task:
            raise UserError("fedrevive on text needs a classifier with a frozen embedding table (embed) and the "
                            "task's tokenizer (extras.encode, extras.task); fix: use a text task such as "
                            "20newsgroups")
        max_len = int(extras.max_len)
        if not 1 <= hp.prompt_vectors < max_len:
            raise UserError(f"fedrevive.prompt_vectors must be in 1 … {max_len - 1}, got {hp.prompt_vectors}")
        if not 0 < hp.active_min <= hp.active_max <= 1:
            raise UserError(f"fedrevive.active_min/active_max must satisfy 0 < min ≤ max ≤ 1, got "
                            f"{hp.active_min}/{hp.active_max}")
        folder = find_corpus(extras.task, hp.corpus)
        texts, labels, prov = read_corpus(folder)
        if len(prov["topics"]) != ctx.num_classes:
            raise UserError(f"the LM corpus in {folder} has {len(prov['topics'])} topics but the task has "
                            f"{ctx.num_classes} classes; fix: asyncfl-bench data lm-corpus --task {extras.task}")
        ids = torch.as_tensor(extras.encode(texts, max_len - hp.prompt_vectors))
        table = self.student.embeddings
        self.corpus = {"corpus": folder.name, "corpus_lm": prov["lm"], "corpus_size": len(texts)}
        return SnippetSource(self.student.embed, ids, torch.as_tensor(labels), max_len,
                             table.shape[1], float(table.std()), self.rng, prompt_len=hp.prompt_vectors,
                             active=(hp.active_min, hp.active_max), lr_g=hp.lr_g, lr_z=hp.lr_z,
                             steps=hp.synth_steps, device=ctx.device)

    # -- client side: record feature statistics while training ----------------
    def payload(self, client: int) -> dict | None:
        return {"stats": [], "steps": 0} if self.hp.distillation else None

    def client_statistics(self, payload):
        return self.hp.stats_momentum if self.hp.distillation else None

    def client_regularizer(self, payload):
        if not self.hp.distillation:   # no teachers: clients train as AFL-DW's do
            return None
        momentum = self.hp.stats_momentum

        def record(model, x, y, logits):
            record_running_stats(payload, model, momentum, x=x)
            return logits.new_zeros(())
        return record

    # -- server side -------------------------------------------------------------
    def _proxy(self, update: ClientUpdate) -> torch.Tensor:
        """q for the arriving client: its label histogram, or the probe estimate."""
        if self.hp.class_proportions == "histogram":
            if update.label_counts is None:
                raise UserError("fedrevive.class_proportions=histogram needs the client's label counts with its "
                                "update (ClientUpdate.label_counts); fix: --set fedrevive.class_proportions=probe")
            return histogram_proportions(update.label_counts).to(self.ctx.device)
        c = update.client
        if self.proxy.needs_probe(c):
            t0 = time.perf_counter()
            probe = self.teacher_models[0]
            self.ctx.layout.load(probe, update.params)
            q = probe_class_proportions(probe, self.synthesis_source.probe_inputs(self.hp.proxy_probes),
                                        self.hp.proxy_temperature, self.synth.forward)
            self.proxy.add(c, q)
            self.teachers.set_q(c, self.proxy.get(c))
            self.log["probe_seconds"] += time.perf_counter() - t0
        return self.proxy.get(c)

    def _load_teachers(self) -> tuple[list, list[torch.nn.Module], torch.Tensor]:
        teachers = list(self.teachers)
        models = self.teacher_models[:len(teachers)]
        for m, t in zip(models, teachers):
            self.ctx.layout.load(m, t.params)
            m.eval()
        return teachers, models, self.teachers.q_matrix().to(self.ctx.device)

    # -- the data-free source, also used by FedEcho's synthetic proxy set ---------
    def observe(self, update: ClientUpdate) -> None:
        """Add the arriving model to the teacher buffer, with its feature statistics and q."""
        stats = (update.payload or {}).get("stats") or []
        q = self._proxy(update)
        self.teachers.add(Teacher(update.client, update.params, list(stats), q))
        if update.label_counts is not None:
            self.log["tv_sum"] += total_variation(q.cpu(), histogram_proportions(update.label_counts))
            self.log["tv_count"] += 1

    def synthesize(self, student_params: torch.Tensor, adversarial: bool) -> None:
        """One synthesis from the current teachers into the pool (L_adv against the student)."""
        teachers, models, q = self._load_teachers()
        self.ctx.layout.load(self.student, student_params)
        self.student.requires_grad_(False)
        self.synth.synthesize(models, [t.stats for t in teachers], q, self.student, adversarial=adversarial)

    def _distilled_delta(self) -> torch.Tensor:
        """Δ^KD = x_S − x_t, after a synthesis on this arrival when one is due (none in a
        run that can never distil: its pool would go unused)."""
        hp, layout = self.hp, self.ctx.layout
        if not self.distillable:
            return torch.zeros_like(self.params)
        if hp.synth_every == 1 or self.last_synth is None or self.version - self.last_synth >= hp.synth_every:
            # the authors' ep counts syntheses, this one included: L_adv from the adv_start-th on
            self.synthesize(self.params, adversarial=self.synth.count + 1 >= self.adv_start)
            self.last_synth = self.version
        _, models, q = self._load_teachers()
        layout.load(self.student, self.params)
        if self.version <= self.warmup or len(self.pool) == 0:
            return torch.zeros_like(self.params)
        t0 = time.perf_counter()
        self.student.requires_grad_(True)
        losses = distill(self.student, models, q, self.pool, self.rng, steps=hp.kd_steps, batch=hp.kd_batch,
                         lr=hp.kd_lr, weight_decay=hp.kd_weight_decay, temperature=hp.temperature,
                         augment=self.synth.augment, guard=self.synth.guard, forward=self.synth.forward)
        self.student.requires_grad_(False)
        self.log["distill_seconds"] += time.perf_counter() - t0
        self.log["distillations"] += 1
        self.log["kd_loss_last"] = losses[-1] if losses else None
        return layout.flatten(self.student) - self.params

    def receive(self, update: ClientUpdate) -> None:
        if self.hp.distillation:
            self.observe(update)
        super().receive(update)

    def contribution(self, update: ClientUpdate) -> torch.Tensor:
        """Step 3's hybrid update u_i (the raw Δ_i while β(τ) = 0 or before the freeze gate);
        AFL-DW's (1 − β)·Δ_i with ``distillation=False``."""
        if not self.hp.distillation:
            return super().contribution(update)
        beta = self.beta(update.staleness)
        self.beta_log["beta_sum"] += beta
        self.beta_log["arrivals"] += 1
        u = update.delta
        if beta > 0 and self.version >= self.freeze:
            before = self.log["distillations"]
            kd = self._distilled_delta()
            delta_norm = float(torch.linalg.vector_norm(u))
            if self.log["distillations"] > before and delta_norm > 0:
                kd_norm = float(torch.linalg.vector_norm(kd))
                self.log["size_sum"] += kd_norm / delta_norm
                self.log["size_count"] += 1
                if beta < 1:
                    self.log["ratio_sum"] += beta * kd_norm / ((1 - beta) * delta_norm)
                    self.log["ratio_count"] += 1
            u = (1 - beta) * u + beta * kd
            self.log["revivals"] += 1
        return u

    def diagnostics(self) -> dict:
        """The revival's size and reach (module docstring); None where nothing was measured."""
        log, arrivals = self.log, self.beta_log["arrivals"]
        return {"kd_to_raw_norm_ratio": log["ratio_sum"] / log["ratio_count"] if log["ratio_count"] else None,
                "kd_to_delta_norm_ratio": log["size_sum"] / log["size_count"] if log["size_count"] else None,
                "mean_beta": self.beta_log["beta_sum"] / arrivals if arrivals else None,
                "distilled_share": log["distillations"] / arrivals if arrivals else None,
                "q_tv_distance": log["tv_sum"] / log["tv_count"] if log["tv_count"] else None}

    def metrics(self) -> dict:
        n = max(self.beta_log["arrivals"], 1)
        return {"synthesis_seconds": self.synth.seconds, "syntheses": self.synth.count,
                "distill_seconds": self.log["distill_seconds"], "distillations": self.log["distillations"],
                "probe_seconds": self.log["probe_seconds"], "revived_updates": self.log["revivals"],
                "mean_beta": self.beta_log["beta_sum"] / n, "pool_size": len(self.pool), **self.corpus,
                "resolved": self.resolved(), "diagnostics": self.diagnostics()}

    def resolved(self) -> dict:
        """The run-relative settings as this run took them (scale.py)."""
        return {"beta": self.beta_spec, "freeze_version": self.freeze, "warmup_version": self.warmup,
                "adv_start_synthesis": self.adv_start, "run_versions": self.run_versions,
                "last_version": self.last_version}

    def engagement(self) -> dict | None:
        """Did any arrival get a distilled Δ^KD? (None with distillation=False: AFL-DW's update.)"""
        if not self.hp.distillation:
            return None
        n, arrivals = self.log["distillations"], self.beta_log["arrivals"]
        out = {"engaged": n > 0, "mechanism": "distilled an arrival",
               "detail": f"{n} of {arrivals} arrivals distilled, {self.synth.count} syntheses"}
        if n > 0:
            return out
        if not self.distillable:
            reason = (f"its gates (synthesis from version {self.freeze}, distillation after version "
                      f"{self.warmup}) are not both passed by the run's last version {self.last_version}")
            fix = ("give the gates as shares of the run's versions, e.g. --set fedrevive.freeze_versions=0.25% "
                   "--set fedrevive.warmup_versions=0.5% (the defaults), or versions below "
                   f"{self.last_version}")
        elif self.log["revivals"] == 0:
            reason = (f"β(τ) was 0 for every arrival from version {self.freeze} on ({self.beta_spec}, "
                      f"mean β {self.diagnostics()['mean_beta'] or 0:.3g})")
            fix = "--set fedrevive.beta=cosine:s_max=auto (s_max = the run's median staleness)"
        else:
            reason = (f"{self.log['revivals']} arrivals had β(τ) > 0 from version {self.freeze} on, but none "
                      f"after the warm-up (version {self.warmup}) with a synthetic pool")
            fix = "a lower fedrevive.warmup_versions, e.g. --set fedrevive.warmup_versions=0.5%"
        return {**out, "reason": reason, "fix": fix}

    def server_state(self) -> dict:
        return {**super().server_state(), "teachers": self.teachers.state(),
                "proxy": self.proxy.state(), "pool": self.pool.state(), "synth": self.synth.state(),
                "rng": self.rng.get_state(), "last_synth": self.last_synth, "log": dict(self.log)}

    def load_server_state(self, state: dict) -> None:
        super().load_server_state(state)
        self.teachers.load(state["teachers"])
        self.proxy.load(state["proxy"])
        self.pool.load(state["pool"])
        self.synth.load(state["synth"])
        self.rng.set_state(state["rng"])
        self.last_synth, self.log = state["last_synth"], dict(state["log"])

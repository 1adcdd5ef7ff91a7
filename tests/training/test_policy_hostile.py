"""Hostile model folders (issue 23, cases 3, 10, 12, 13): an adapter on a base it was not trained on,
a chat template that runs away or that the sandbox refuses, a damaged converted GGUF folder, damaged or
foreign adapters and tokenizers. Each is one line naming the file and the fix (exit 2 from the CLI); a
bug keeps its traceback. Real tiny models throughout (built here in about a second)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from relsum.core.errors import InputError
from relsum.policy.load import check_policy, load_policy, load_tokenizer

CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
DIMS = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "max_position_embeddings": 256}


def _tokenizer(texts: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainer=trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIALS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>")
    fast.chat_template = CHATML
    return fast


def _model(vocab: int, seed: int = 0, **dims):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, **{**DIMS, **dims}))


def _adapter(model, out: Path) -> Path:
    from peft import LoraConfig, get_peft_model

    get_peft_model(model, LoraConfig(r=4, lora_alpha=4, target_modules="all-linear",
                                     task_type="CAUSAL_LM")).save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def bases(tmp_path_factory, catalog):
    """(A, B, adapter trained on A with relsum's record): B has A's shapes and weights, another tokenizer."""
    from transformers import AutoModelForCausalLM

    from relsum.training.grpo import write_policy_info

    root = tmp_path_factory.mktemp("hostile")
    texts = (catalog["title"] + " " + catalog["text"]).tolist()
    tok_a = _tokenizer(texts[:100])
    model = _model(len(tok_a))
    model.save_pretrained(root / "A")
    tok_a.save_pretrained(root / "A")
    shutil.copytree(root / "A", root / "B")
    data = json.loads((root / "B" / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    first, second = sorted(vocab, key=vocab.get)[300:302]  # same size, two tokens swapped: another tokenizer
    vocab[first], vocab[second] = vocab[second], vocab[first]
    (root / "B" / "tokenizer.json").write_text(json.dumps(data))
    adapter = _adapter(AutoModelForCausalLM.from_pretrained(root / "A"), root / "adapter_A")
    write_policy_info(adapter, {"prompt": "paper", "chat_template": True, "dtype": "fp32"})
    return root / "A", root / "B", adapter


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# case 3: an adapter merged into a base it was not trained on


def test_training_records_the_base_fingerprint(bases):
    from relsum.policy.files import base_fingerprint
    from relsum.policy.load import recorded_base

    a, b, adapter = bases
    record = recorded_base(adapter)
    assert record["path"] == str(a.resolve()) and record["fingerprint"] == base_fingerprint(a)
    differ = {k for k, v in base_fingerprint(b).items() if record["fingerprint"][k] != v}
    assert differ == {"tokenizer"}  # same shapes and weights: only the tokenizer tells them apart


def test_adapter_on_another_base_is_refused_unless_allowed(bases, caplog):
    a, b, adapter = bases
    with pytest.raises(InputError, match=r"trained on .*\bA, not on policy .*\bB: their tokenizer differ.*"
                                         r"allow_base_mismatch=true"):
        load_policy(b, adapter, merge=True)
    with pytest.raises(InputError, match="tokenizer differ"):
        check_policy(b, adapter)
    model, _ = load_policy(b, adapter, merge=True, allow_base_mismatch=True)  # the user said so: a warning
    assert "allow_base_mismatch=true" in caplog.text and not hasattr(model, "peft_config")
    load_policy(a, adapter, merge=True)  # its own base
    moved = _copy(a, a.parent / "A_moved")  # the same base copied elsewhere is the same base
    load_policy(moved, adapter, merge=True)


def test_adapter_without_relsum_record_is_compared_by_its_peft_base(bases, tmp_path):
    a, b, adapter = bases
    bare = _copy(adapter, tmp_path / "peft_only")
    (bare / "relsum_prompt.json").unlink()
    assert json.loads((bare / "adapter_config.json").read_text())["base_model_name_or_path"] == str(a)
    with pytest.raises(InputError, match="tokenizer differ"):
        load_policy(b, bare)
    load_policy(a, bare)


def test_summarize_refuses_the_mismatch_up_front_in_one_line(bases, tmp_path, capsys):
    from relsum.cli import main

    _, b, adapter = bases
    products = _products(tmp_path)
    out = tmp_path / "out"
    assert main(["summarize", "--catalog", str(products), "--model", str(b), "--adapter", str(adapter),
                 f"out_dir={out}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tokenizer differ" in err[0] and "allow_base_mismatch=true" in err[0]
    assert not out.exists()  # refused before any work


def _products(tmp_path: Path) -> Path:
    import pandas as pd

    from relsum.core.paths import SAMPLE_DIR

    df = pd.read_json(SAMPLE_DIR / "products.jsonl", lines=True).head(3)
    path = tmp_path / "catalog.jsonl"
    df[["product_id", "title", "description", "attributes"]].to_json(path, orient="records", lines=True)
    return path


def test_summarize_merges_another_base_when_the_user_allows_it(bases, tmp_path):
    from relsum.summarize.config import SummarizeConfig
    from relsum.summarize.job import run_summarize

    _, b, adapter = bases
    manifest = run_summarize(SummarizeConfig(
        catalog=str(_products(tmp_path)), model_dir=str(b), adapter_dir=str(adapter),
        out_dir=str(tmp_path / "o"), allow_base_mismatch=True, max_new_tokens=4, show_progress=False,
        threads=1, dtype="fp32"))
    assert manifest["counts"]["in_output"] == 3


# case 10: a chat template that renders forever; case 13: templates the sandbox refuses


@pytest.mark.parametrize(("template", "expected"), [
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "does not finish"),
    ("{% for i in range(100000) %}{{ range(100000)|join }}{% endfor %}", "characters of output"),
    ("{{ messages.__class__.__mro__ }}", "SecurityError"),
    ("{% include 'other.jinja' %}", "includes or imports another template"),
    ("{% for m in messages %}", "TemplateSyntaxError"),
])
def test_hostile_chat_template_is_one_line_naming_the_file(bases, tmp_path, template, expected):
    folder = _copy(bases[0], tmp_path / "policy")
    (folder / "chat_template.jinja").write_text(template)
    start = time.perf_counter()
    with pytest.raises(InputError, match=expected) as err:
        load_tokenizer(folder)
    assert str(folder / "chat_template.jinja") in str(err.value) and "\n" not in str(err.value)
    assert time.perf_counter() - start < 30  # bounded (about 1 s for the nested loops on an idle core)


def test_bounded_render_is_the_plain_render_and_cheap(bases):
    from relsum.policy.chat_render import render_chat
    from relsum.policy.prompt import SYSTEM_LINE, as_messages

    tok = load_tokenizer(bases[0])
    messages = as_messages("Product title: mug\nProduct details: " + "red ceramic " * 200, SYSTEM_LINE)
    plain = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert render_chat(tok, messages, add_generation_prompt=True) == plain
    start = time.perf_counter()
    for _ in range(50):
        render_chat(tok, messages, add_generation_prompt=True)
    assert (time.perf_counter() - start) / 50 < 0.05  # ~0.8 ms measured; far from a budget refusal


def test_a_bug_in_rendering_keeps_its_traceback(bases, monkeypatch):
    from relsum.policy.prompt import policy_text

    tok = load_tokenizer(bases[0])

    def broken(*args, **kwargs):
        raise KeyError("a bug, not the template")

    monkeypatch.setattr(tok, "apply_chat_template", broken)
    with pytest.raises(KeyError):
        policy_text(tok, "prompt", True)


# case 13: foreign or damaged adapters and tokenizers


def test_adapter_for_another_architecture_names_the_file(bases, tmp_path):
    a, _, _ = bases
    other = _adapter(_model(400, hidden_size=32, intermediate_size=64), tmp_path / "other")
    with pytest.raises(InputError, match=r"adapter_model\.safetensors does not fit policy .*mlp\.down_proj "
                                         r"has inputs 128, the adapter 64.*another architecture"):
        load_policy(a, other, merge=True)
    with pytest.raises(InputError, match="does not fit"):
        check_policy(a, other)  # up front, on a weightless copy of the model


@pytest.mark.parametrize(("damage", "expected"), [
    ("truncate_weights", r"adapter weights .*adapter_model\.safetensors is damaged \(truncated"),
    ("not_json", r"adapter config .*adapter_config\.json is not valid JSON"),
    ("bad_values", r"adapter_config\.json has invalid values \(r 'x'"),
    ("not_peft", r"adapter_config\.json is not a PEFT adapter config"),
])
def test_damaged_adapter_is_one_line_naming_the_file(bases, tmp_path, damage, expected):
    a, _, adapter = bases
    bad = _copy(adapter, tmp_path / "adapter")
    conf = bad / "adapter_config.json"
    if damage == "truncate_weights":
        _truncate(bad / "adapter_model.safetensors")
    elif damage == "not_json":
        _truncate(conf)
    elif damage == "bad_values":
        conf.write_text(json.dumps({**json.loads(conf.read_text()), "r": "x"}))
    else:
        conf.write_text("[1, 2]")
    with pytest.raises(InputError, match=expected):
        load_policy(a, bad, merge=True)


@pytest.mark.parametrize(("name", "expected"), [
    ("tokenizer.json", r"tokenizer file .*tokenizer\.json is not valid JSON"),
    ("model.safetensors", r"policy weights .*model\.safetensors is damaged \(truncated"),
    ("config.json", r"has no config\.json"),
    ("tokenizer.json:{}", r"tokenizer file .*tokenizer\.json is not a tokenizer"),
])
def test_damaged_policy_folder_is_one_line_naming_the_file(bases, tmp_path, name, expected):
    folder = _copy(bases[0], tmp_path / "policy")
    if name == "config.json":
        (folder / name).unlink()
    elif ":" in name:
        name, text = name.split(":", 1)
        (folder / name).write_text(text)
    else:
        _truncate(folder / name)
    with pytest.raises(InputError, match=expected):
        load_policy(folder)


# case 12: a converted GGUF folder damaged after conversion


@pytest.mark.parametrize("damage", ["truncate", "no_config", "marker_only"])
def test_damaged_converted_folder_is_refused_then_converted_again(tmp_path, catalog, damage, caplog):
    from relsum.policy.gguf import MARKER_FILE, converted_dir, converted_problem

    from .test_gguf_policy import write_tiny_llama_gguf

    gguf = tmp_path / "tiny.F32.gguf"
    write_tiny_llama_gguf(gguf, catalog)
    folder = converted_dir(gguf, "tinyllama", home=tmp_path / "home")
    files = json.loads((folder / MARKER_FILE).read_text())["files"]
    assert files["model.safetensors"]["bytes"] == (folder / "model.safetensors").stat().st_size
    assert converted_problem(folder, deep=True) is None
    if damage == "truncate":
        _truncate(folder / "model.safetensors")
    elif damage == "no_config":
        (folder / "config.json").unlink()
    else:
        for path in folder.iterdir():
            if path.name != MARKER_FILE:
                path.unlink()
    with pytest.raises(InputError, match=r"is damaged \((model\.safetensors|config\.json) .*convert"):
        load_policy(folder)  # the folder given directly: one line with the repair
    again = converted_dir(gguf, "tinyllama", home=tmp_path / "home")  # the keyword's path: converted again
    assert again == folder and "converting it again" in caplog.text
    assert converted_problem(folder, deep=True) is None
    load_policy(folder)

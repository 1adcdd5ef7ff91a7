"""LoRA targets, adapter merge and chat-template prompts on both policy architectures in use: Llama
(SmolLM2) and Mistral (production's Mistral-7B-Instruct), as tiny random models built here."""

from __future__ import annotations

import pytest
import torch

from relsum.policy.config import PolicyConfig
from relsum.policy.load import load_policy, lora_config

# Mistral-7B-Instruct style: BOS written by the template, a system line folded into the user turn.
MISTRAL_TEMPLATE = (
    "{{ bos_token }}"
    "{% set sys = messages[0]['content'] + '\n\n' if messages[0]['role'] == 'system' else '' %}"
    "{% for m in messages if m['role'] != 'system' %}{% if m['role'] == 'user' %}"
    "{{ '[INST] ' + sys + m['content'] + ' [/INST]' }}{% else %}{{ m['content'] + eos_token }}{% endif %}"
    "{% endfor %}")
CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def _build(out, arch: str, catalog):
    """A 2-layer model of ``arch`` with a byte-level BPE that adds BOS (as Mistral's does) or not
    (SmolLM2)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        PreTrainedTokenizerFast,
    )

    specials = ["<pad>", "<s>", "</s>"] if arch == "mistral" else ["<pad>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator((catalog["title"] + " " + catalog["text"]).tolist()[:100],
                            trainer=trainers.BpeTrainer(
                                vocab_size=400, special_tokens=specials,
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    if arch == "mistral":
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token=specials[1],
                                   eos_token=specials[2])
    fast.chat_template = MISTRAL_TEMPLATE if arch == "mistral" else CHATML
    cls, conf = (MistralForCausalLM, MistralConfig) if arch == "mistral" else (LlamaForCausalLM, LlamaConfig)
    torch.manual_seed(0)
    model = cls(conf(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                     pad_token_id=0, bos_token_id=1, eos_token_id=2))
    model.save_pretrained(str(out))
    fast.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module", params=["llama", "mistral"])
def arch_dir(request, tmp_path_factory, catalog):
    return request.param, _build(tmp_path_factory.mktemp(request.param), request.param, catalog)


@pytest.mark.parametrize(("targets", "per_layer"), [(["q_proj", "k_proj", "v_proj", "o_proj"], 4),
                                                    (["all-linear"], 7)])
def test_lora_targets(arch_dir, targets, per_layer):
    from peft import get_peft_model

    _, folder = arch_dir
    model, _ = load_policy(folder, dtype="fp32")
    peft = get_peft_model(model, lora_config(PolicyConfig(target_modules=targets, lora_r=4, lora_alpha=8)))
    wrapped = {n.rsplit(".", 1)[0] for n, _ in peft.named_parameters() if "lora_A" in n}
    assert len(wrapped) == 2 * per_layer  # 2 layers; all-linear = q k v o gate up down, never lm_head
    assert not any("lm_head" in n for n in wrapped)


def test_adapter_merge_matches_the_adapter(arch_dir, tmp_path):
    from peft import get_peft_model

    _, folder = arch_dir
    model, tok = load_policy(folder, dtype="fp32")
    peft = get_peft_model(model, lora_config(PolicyConfig(target_modules=["all-linear"], lora_r=4,
                                                          lora_alpha=8)))
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in peft.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)  # a trained-looking adapter (B starts at zero)
    peft.save_pretrained(str(tmp_path / "adapter"), safe_serialization=True)
    ids = tok(["cordless drill 18 V"], return_tensors="pt")["input_ids"]
    merged, _ = load_policy(folder, tmp_path / "adapter", merge=True, dtype="fp32")
    base, _ = load_policy(folder, dtype="fp32")
    with torch.no_grad():
        want, got, plain = peft.eval()(ids).logits, merged(ids).logits, base(ids).logits
    assert torch.allclose(got, want, atol=1e-4) and not torch.allclose(plain, want, atol=1e-3)
    assert not any("lora" in n for n, _ in merged.named_parameters())


def test_chat_prompt_tokens_match_between_training_and_serving(arch_dir):
    """TRL tokenizes prompt strings with special tokens; serving tokenizes the templated string without:
    both must give the same ids (one BOS), with the system line and the answer start in place."""
    from relsum.policy.prompt import SYSTEM_LINE, render_prompts, resolve_chat_template, trainer_text

    arch, folder = arch_dir
    _, tok = load_policy(folder, dtype="fp32")
    assert resolve_chat_template(tok, None)
    [text] = render_prompts(tok, ["Acme Mug"], ["ceramic, 350 ml, red"], max_prompt_tokens=0,
                            use_chat_template=True, variant="one_line_started")
    served = tok(text, add_special_tokens=False)["input_ids"]
    trained = tok(trainer_text(tok, text, True))["input_ids"]
    # one BOS / <|im_start|>
    assert trained == served and served[0] == tok.bos_token_id and served[1] != served[0]
    if arch == "mistral":
        assert served.count(tok.bos_token_id) == 1
    assert SYSTEM_LINE in text and text.endswith("Facts not in the title:")

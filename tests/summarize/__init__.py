"""Tests of the summarization job; :func:`build_random_policy` makes a tiny local causal LM in seconds."""

from __future__ import annotations

from pathlib import Path


def build_random_policy(out_dir: str | Path, corpus: list[str], seed: int = 0,
                        max_positions: int = 512) -> Path:
    """A random 1-layer MistralForCausalLM + byte-level BPE tokenizer trained on ``corpus`` (no downloads).

    ``initializer_range=0.5`` spreads the logits so greedy outputs vary by input (a default init
    repeats one token), which the backend-equality test needs. Quality is irrelevant here.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import MistralConfig, MistralForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A",
                                                       special_tokens=[("<s>", tok.token_to_id("<s>"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   padding_side="left", model_max_length=max_positions)
    torch.manual_seed(seed)
    conf = MistralConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions,
                         sliding_window=None, initializer_range=0.5, tie_word_embeddings=True,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2)
    MistralForCausalLM(conf).save_pretrained(str(out_dir))
    fast.save_pretrained(str(out_dir))
    return Path(out_dir)

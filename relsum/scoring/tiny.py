"""Tiny, randomly initialised cross-encoders built locally, for tests and smoke runs (no downloads)."""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def build_tiny_cross_encoder(out_dir: str | Path, *, seed: int = 0, hidden_size: int = 32,
                             num_layers: int = 2, max_position: int = 512,
                             initializer_range: float = 0.02) -> Path:
    """Write a tiny BERT cross-encoder (1 logit) with the bundled MiniLM tokenizer to ``out_dir``.

    The tokenizer is the real MiniLM WordPiece vocabulary, so inputs tokenize like the production
    model; the weights are random (seeded), so scores are deterministic but meaningless. With the
    default ``initializer_range`` all scores sit within ~1e-4 of 0.5; tests that compare scores
    at a tight tolerance pass a larger one (e.g. 0.5) so that scores actually spread over [0, 1].
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from relsum.core.paths import minilm_dir

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=2, intermediate_size=hidden_size * 2, max_position_embeddings=max_position,
        num_labels=1, initializer_range=initializer_range,
    )
    model = BertForSequenceClassification(config)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    logger.info("built tiny cross-encoder at %s", out)
    return out

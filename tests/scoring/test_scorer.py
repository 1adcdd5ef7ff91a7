"""The scorer on real tiny models: alignment, batching equivalence, caching, offline loading, fingerprint."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from relsum.scoring.batching import batch_rows, tokenize_pairs
from relsum.scoring.config import ScorerConfig
from relsum.scoring.model_files import find_safetensors
from relsum.scoring.scorer import Scorer, join_title_text

QUERIES = ["usb cable", "laptop", "noise cancelling headphones for long flights", "tv", "4k monitor 27 inch"]
TITLES = ["Kensington Noise Cancelling Headphones", "Dell XPS 13 laptop", "Belkin USB-C cable 2m",
          "Samsung 55 inch QLED TV", "LG 27UL850 monitor"]
TEXTS = [None, "fast ssd, 16 GB RAM " * 20, "", "smart tv | hdmi: 4 | wifi: yes", "usb-c " * 80]


@pytest.fixture(scope="module")
def spread_model_dir(tmp_path_factory):
    """A tiny model with a large init range so its scores spread over [0, 1] (tight tolerances mean
    something)."""
    from relsum.scoring.tiny import build_tiny_cross_encoder

    return build_tiny_cross_encoder(tmp_path_factory.mktemp("spread_ce"), seed=1, initializer_range=0.5)


@pytest.fixture(scope="module")
def mixed_pairs():
    return [(q, join_title_text(t, x)) for q in QUERIES for t, x in zip(TITLES, TEXTS, strict=True)]


def test_join_title_text_formats():
    assert join_title_text("Cable", None) == "Cable"
    assert join_title_text("Cable", "") == "Cable"
    assert join_title_text("Cable", float("nan")) == "Cable"
    assert join_title_text("Cable", "2 m, black") == "Cable | 2 m, black"
    with pytest.raises(ValueError):
        join_title_text("", "text")


def test_config_checks():
    with pytest.raises(ValueError, match="dtype"):
        ScorerConfig(dtype="float16")
    with pytest.raises(ValueError, match="max_tokens_per_batch"):
        ScorerConfig(max_length=256, max_tokens_per_batch=128)
    with pytest.raises(ValueError, match="device"):
        ScorerConfig(device="gpu")


def test_scores_are_float32_in_unit_interval_and_aligned(spread_model_dir):
    scorer = Scorer(spread_model_dir, ScorerConfig(max_length=64))
    queries = [QUERIES[i % 5] for i in range(10)]
    titles = [TITLES[(i * 3) % 5] for i in range(10)]
    scores = scorer.score(queries, titles, TEXTS * 2)
    assert scores.dtype == np.float32 and scores.shape == (10,)
    assert np.all((scores >= 0) & (scores <= 1))
    assert scores.std() > 0.01  # the model really discriminates, so alignment errors would show
    rev = scorer.score(queries[::-1], titles[::-1], (TEXTS * 2)[::-1])
    np.testing.assert_array_equal(rev, scores[::-1])
    assert scorer.score([], [], []).shape == (0,)


def test_batched_equals_one_pair_at_a_time(spread_model_dir, mixed_pairs):
    cfg = ScorerConfig(max_length=64, batch_size=2, max_tokens_per_batch=96, cache=False)
    scorer = Scorer(spread_model_dir, cfg)
    lengths = np.array([len(e["input_ids"]) for e in tokenize_pairs(scorer.tokenizer, mixed_pairs, 64)])
    batches = list(batch_rows(lengths, scorer.config))
    assert len({len(b) for b in batches}) > 1  # the token budget gives short pairs bigger batches
    assert lengths.max() == 64 and lengths.min() < 20  # mixed lengths, some truncated
    batched = scorer.score_pairs(mixed_pairs)
    single = np.array([scorer.score_pairs([p])[0] for p in mixed_pairs])
    assert batched.std() > 0.05
    np.testing.assert_allclose(batched, single, atol=1e-5, rtol=0)


def test_title_only_and_title_text_are_different_docs(spread_model_dir):
    scorer = Scorer(spread_model_dir, ScorerConfig(max_length=64))
    title_only = scorer.score(["laptop"], ["Dell XPS 13 laptop"], [None])
    with_text = scorer.score(["laptop"], ["Dell XPS 13 laptop"], ["fast ssd, 16 GB RAM"])
    assert title_only[0] != with_text[0]
    assert scorer.cache_info().size == 2


def test_cache_hits_and_dedupe(tiny_cross_encoder_dir, mixed_pairs):
    scorer = Scorer(tiny_cross_encoder_dir, ScorerConfig(max_length=64))
    first = scorer.score_pairs(mixed_pairs)
    info = scorer.cache_info()
    assert (info.hits, info.misses, info.size) == (0, len(mixed_pairs), len(mixed_pairs))
    second = scorer.score_pairs(mixed_pairs)
    np.testing.assert_array_equal(first, second)
    assert scorer.cache_info().hits == len(mixed_pairs)
    assert scorer.cache_info().misses == len(mixed_pairs)
    scorer.clear_cache()
    assert scorer.cache_info() == (0, 0, 0)
    dup = scorer.score_pairs([mixed_pairs[0]] * 3 + [mixed_pairs[1]])
    assert scorer.cache_info().misses == 2 and dup[0] == dup[1] == dup[2]


def test_no_cache_when_disabled(tiny_cross_encoder_dir, mixed_pairs):
    scorer = Scorer(tiny_cross_encoder_dir, ScorerConfig(max_length=64, cache=False))
    scorer.score_pairs(mixed_pairs + mixed_pairs)  # dedupe within the call still applies
    assert scorer.cache_info() == (0, len(mixed_pairs), 0)
    scorer.score_pairs(mixed_pairs)
    assert scorer.cache_info() == (0, 2 * len(mixed_pairs), 0)


def test_bad_inputs_are_refused(tiny_cross_encoder_dir):
    scorer = Scorer(tiny_cross_encoder_dir, ScorerConfig(max_length=64))
    with pytest.raises(ValueError, match="lengths differ"):
        scorer.score(["a", "b"], ["t"])
    with pytest.raises(ValueError, match="row 1"):
        scorer.score(["a", "b"], ["t", None])
    with pytest.raises(ValueError, match="non-empty"):
        scorer.score_pairs([("", "doc")])


def test_hub_id_is_refused_without_touching_the_network(monkeypatch):
    """Refused up front: no socket is opened (behaviour, not a timing, so it holds on any machine)."""
    import socket

    attempts: list = []

    def no_connect(self, address):
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_connect)
    with pytest.raises(FileNotFoundError, match="local folders"):
        Scorer("sentence-transformers/all-MiniLM-L6-v2")
    assert attempts == []


def test_missing_folder_and_pickle_weights_are_refused(tmp_path, tiny_cross_encoder_dir):
    with pytest.raises(FileNotFoundError):
        Scorer(tmp_path / "nope")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for f in tiny_cross_encoder_dir.iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, pickled / f.name)
    (pickled / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(ValueError, match="pytorch_model.bin"):
        Scorer(pickled)
    (pickled / "pytorch_model.bin").unlink()
    with pytest.raises(ValueError, match="safetensors"):
        find_safetensors(pickled)


def test_fingerprint_tracks_weights_and_max_length(tmp_path, tiny_cross_encoder_dir):
    from safetensors.torch import load_file, save_file

    base = Scorer(tiny_cross_encoder_dir, ScorerConfig(max_length=64))
    assert base.fingerprint == Scorer(tiny_cross_encoder_dir, ScorerConfig(max_length=64)).fingerprint
    assert base.fingerprint != Scorer(tiny_cross_encoder_dir, ScorerConfig(max_length=32)).fingerprint
    changed = tmp_path / "changed"
    shutil.copytree(tiny_cross_encoder_dir, changed)
    weights = load_file(changed / "model.safetensors")
    weights["classifier.bias"] = weights["classifier.bias"] + 1.0
    save_file(weights, changed / "model.safetensors", metadata={"format": "pt"})
    other = Scorer(changed, ScorerConfig(max_length=64))
    assert other.fingerprint != base.fingerprint
    assert other.score(["tv"], ["Samsung TV"])[0] != base.score(["tv"], ["Samsung TV"])[0]


def test_progress_bar_flag(tiny_cross_encoder_dir, mixed_pairs, capsys):
    auto = Scorer(tiny_cross_encoder_dir, ScorerConfig(max_length=64))
    assert not auto.progress_enabled(10) and auto.progress_enabled(5000)
    on = Scorer(tiny_cross_encoder_dir, ScorerConfig(max_length=64, show_progress=True))
    capsys.readouterr()
    on.score_pairs(mixed_pairs, desc="tiny-bar")
    assert "tiny-bar" in capsys.readouterr().err
    off = Scorer(tiny_cross_encoder_dir, ScorerConfig(max_length=64, show_progress=False))
    off.score_pairs(mixed_pairs, desc="tiny-bar")
    assert "tiny-bar" not in capsys.readouterr().err


def test_headless_folder_gets_reproducible_random_head(tmp_path, tiny_cross_encoder_dir):
    from transformers import AutoTokenizer, BertConfig, BertModel

    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, initializer_range=0.5)
    BertModel(config).save_pretrained(tmp_path)  # like a sentence-transformers bi-encoder: no classifier
    AutoTokenizer.from_pretrained(str(tiny_cross_encoder_dir)).save_pretrained(tmp_path)
    a, b = Scorer(tmp_path), Scorer(tmp_path)
    assert not a.has_trained_head and a.num_labels == 1
    np.testing.assert_array_equal(a.score(QUERIES, TITLES), b.score(QUERIES, TITLES))
    c = Scorer(tmp_path, ScorerConfig(init_seed=7))
    assert not np.allclose(a.score(QUERIES, TITLES), c.score(QUERIES, TITLES))
    assert a.fingerprint != c.fingerprint


def test_two_label_model_uses_softmax(tmp_path, tiny_cross_encoder_dir):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, num_labels=2, initializer_range=0.5)
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(str(tiny_cross_encoder_dir))
    tok.save_pretrained(tmp_path)
    got = Scorer(tmp_path).score(["laptop"], ["Dell XPS 13 laptop"])
    with torch.inference_mode():
        logits = model(**tok("laptop", "Dell XPS 13 laptop", return_tensors="pt")).logits
    assert got[0] == pytest.approx(torch.softmax(logits, -1)[0, 1].item(), abs=1e-6)

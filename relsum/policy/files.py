"""Checks on a policy or adapter folder before transformers and PEFT read it, and the base fingerprint.

Why: the libraries report a damaged folder as a bare library error that names neither the file nor the
fix (``SafetensorError: incomplete metadata`` for a truncated weight file, ``JSONDecodeError ... char 7023``
for a truncated ``tokenizer.json``, ``Unrecognized model`` for a missing ``config.json``, a size-mismatch
``RuntimeError`` or ``NoMatchingPeftModuleError`` for an adapter of another architecture, a ``TypeError``
for an ``adapter_config.json`` with a wrong value). These checks read only headers and small JSON files
(milliseconds) and raise an :class:`~relsum.core.errors.InputError` naming the file and what to do.

An adapter merged into a base it was not trained on (same shapes, another tokenizer or other weights)
loads without any error and serves nonsense, so :func:`check_adapter_base` compares the base recorded
beside the adapter (``base`` in ``relsum_prompt.json``, written at training; else PEFT's
``base_model_name_or_path`` when that folder is still there) with the base being loaded, by
:func:`base_fingerprint`: the architecture keys of ``config.json``, the tokenizer's vocabulary, and the
weights (tensor names and shapes, and the first 64 KiB of three tensors). Parsed contents rather than
file bytes, so a re-save by another transformers version keeps its fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

from relsum.core.errors import InputError

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
#: config.json keys that define the architecture (the rest differs between transformers versions).
ARCH_KEYS = ("model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
             "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings",
             "rope_theta", "tie_word_embeddings", "n_embd", "n_layer", "n_head")
_SAMPLE_BYTES = 64 << 10
_LORA_KEY = re.compile(r"^base_model\.model\.(.+)\.lora_([AB])\.weight$")


def read_json(path: Path, what: str, fix: str) -> Any:
    """``path`` parsed, or an :class:`InputError` naming it (``what`` it is, ``fix`` what to do)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {path} is not UTF-8 text ({exc.reason}); {fix}") from exc
    except ValueError as exc:
        raise InputError(f"{what} {path} is not valid JSON (truncated or damaged? {exc}); {fix}") from exc


def safetensors_header(path: Path) -> tuple[dict[str, Any], int]:
    """(header, data start) of a safetensors file; ValueError says why it is damaged."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        if size < 8:
            raise ValueError(f"{size} bytes, shorter than a safetensors header")
        n = int.from_bytes(fh.read(8), "little")
        if n > size - 8:
            raise ValueError(f"truncated: {size} bytes, its header alone needs {n + 8}")
        try:
            header = json.loads(fh.read(n))
        except ValueError as exc:
            raise ValueError(f"header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (KeyError, TypeError, IndexError, ValueError):
        raise ValueError("header lacks tensor offsets") from None
    if size < 8 + n + end:
        raise ValueError(f"truncated: {size} bytes, its header says {8 + n + end}")
    return header, 8 + n


def check_weights(path: Path, what: str, fix: str) -> dict[str, Any]:
    """The header of weight file ``path``, or an :class:`InputError` when it is truncated or damaged."""
    try:
        return safetensors_header(path)[0]
    except ValueError as exc:
        raise InputError(f"{what} {path} is damaged ({exc}); {fix}") from exc


def check_policy_folder(folder: Path, fix: str) -> None:
    """``config.json`` readable with a ``model_type``, every ``*.safetensors`` complete, tokenizer JSON
    files readable; ``fix`` says what repairs the folder."""
    config = folder / "config.json"
    if not config.is_file():
        raise InputError(f"policy folder {folder} has no config.json; {fix}")
    conf = read_json(config, "policy config", fix)
    if not isinstance(conf, dict) or not conf.get("model_type"):
        raise InputError(f"policy config {config} has no model_type; {fix}")
    for weights in sorted(folder.glob("*.safetensors")):
        check_weights(weights, "policy weights", fix)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (folder / name).is_file():
            data = read_json(folder / name, "tokenizer file", fix)
            broken = name == "tokenizer.json" and not isinstance(data.get("model") if isinstance(data, dict)
                                                                  else None, dict)
            if broken or not isinstance(data, dict):
                raise InputError(f"tokenizer file {folder / name} is not a tokenizer (no model section); "
                                 f"{fix}")


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _tokenizer_part(folder: Path) -> str:
    path = folder / "tokenizer.json"
    if path.is_file():
        data = read_json(path, "tokenizer file", "re-save the tokenizer into the folder")
        model = data.get("model") or {}
        added = sorted((t.get("id"), t.get("content")) for t in data.get("added_tokens") or [])
        return _digest([model.get("type"), model.get("vocab"), added])
    h = hashlib.sha256()
    for name in ("tokenizer.model", "vocab.json", "vocab.txt", "merges.txt"):
        if (folder / name).is_file():
            h.update(name.encode() + b"\0" + (folder / name).read_bytes())
    return h.hexdigest()[:16]


def _weights_part(folder: Path) -> str:
    tensors: dict[str, tuple[Path, dict[str, Any], int]] = {}
    for path in sorted(folder.glob("*.safetensors")):
        header, start = safetensors_header(path)
        tensors.update({k: (path, v, start) for k, v in header.items() if k != "__metadata__"})
    names = sorted(k for k in tensors if not k.startswith("lm_head."))
    h = hashlib.sha256(json.dumps([(k, tensors[k][1]["shape"], tensors[k][1]["dtype"])
                                   for k in names]).encode())
    for k in {names[0], names[len(names) // 2], names[-1]} if names else ():
        path, info, start = tensors[k]
        begin, end = (int(x) for x in info["data_offsets"])
        with path.open("rb") as fh:
            fh.seek(start + begin)
            h.update(k.encode() + fh.read(min(end - begin, _SAMPLE_BYTES)))
    return h.hexdigest()[:16]


def base_fingerprint(model_dir: str | Path) -> dict[str, str]:
    """``{"config", "tokenizer", "weights"}`` digests of a base model folder (see the module docstring)."""
    folder = Path(model_dir)
    conf = read_json(folder / "config.json", "policy config", "re-save the model into the folder")
    return {"config": _digest({k: conf.get(k) for k in ARCH_KEYS if k in conf}),
            "tokenizer": _tokenizer_part(folder), "weights": _weights_part(folder)}


def base_record(model_dir: str | Path) -> dict[str, Any]:
    """What to record beside an adapter about the base it was trained on: path and fingerprint."""
    return {"path": str(Path(model_dir).resolve()), "fingerprint": base_fingerprint(model_dir)}


def adapter_config(adapter_dir: Path) -> dict[str, Any]:
    """The adapter's ``adapter_config.json``, checked to be a JSON object with a ``peft_type``."""
    path = adapter_dir / ADAPTER_CONFIG
    fix = "re-save the adapter (relsum train writes it) or restore the file"
    if not path.is_file():
        raise InputError(f"adapter folder {adapter_dir} has no {ADAPTER_CONFIG}; {fix}")
    conf = read_json(path, "adapter config", fix)
    if not isinstance(conf, dict) or not conf.get("peft_type"):
        raise InputError(f"adapter config {path} is not a PEFT adapter config (no peft_type); {fix}")
    from peft.utils import PeftType

    bad = [] if conf["peft_type"] in {t.value for t in PeftType} else [f"peft_type {conf['peft_type']!r}"]
    bad += [f"{key} {conf[key]!r}" for key in ("r", "lora_alpha") if key in conf and (
        isinstance(conf[key], bool) or not isinstance(conf[key], int | float) or conf[key] <= 0)]
    targets = conf.get("target_modules")
    if targets is not None and not isinstance(targets, str) and not (
            isinstance(targets, list) and all(isinstance(t, str) for t in targets)):
        bad.append(f"target_modules {targets!r}")
    if bad:
        raise InputError(f"adapter config {path} has invalid values ({', '.join(bad)}); {fix}")
    return conf


def check_adapter_base(model_dir: str | Path, adapter_dir: str | Path, *, recorded: dict[str, Any] | None,
                       allow_mismatch: bool = False) -> None:
    """Refuse (one line) to put ``adapter_dir`` on ``model_dir`` when its recorded base differs.

    ``recorded`` is the ``base`` record written at training (None for an adapter from elsewhere: then
    PEFT's ``base_model_name_or_path`` is fingerprinted when it is a local folder, else nothing can be
    compared and a warning says so). ``allow_mismatch`` turns the refusal into a warning.
    """
    model, adapter = Path(model_dir), Path(adapter_dir)
    conf_base = str(adapter_config(adapter).get("base_model_name_or_path") or "")
    if recorded and isinstance(recorded.get("fingerprint"), dict):
        trained_on, expected = str(recorded.get("path") or conf_base), recorded["fingerprint"]
    elif conf_base and Path(conf_base).is_dir():
        if Path(conf_base).resolve() == model.resolve():
            return
        trained_on, expected = conf_base, base_fingerprint(conf_base)
    else:
        logger.warning("adapter %s records no base relsum can compare (%s); assuming it was trained on %s",
                       adapter, conf_base or "none recorded", model)
        return
    current = base_fingerprint(model)
    differ = [part for part in ("config", "tokenizer", "weights") if expected.get(part) != current[part]]
    if not differ:
        return
    parts = ", ".join("architecture" if d == "config" else d for d in differ)
    message = (f"adapter {adapter} was trained on {trained_on}, not on policy {model}: their "
               f"{parts} differ; pass the base it was trained on (--model / model_dir), or set "
               "allow_base_mismatch=true to merge it anyway")
    if allow_mismatch:
        logger.warning("%s (allowed: allow_base_mismatch=true)", message)
        return
    raise InputError(message)


def check_adapter_fits(model: Any, adapter_dir: Path, model_dir: Path) -> None:
    """Refuse an adapter whose LoRA matrices do not fit ``model``'s layers (another architecture) or whose
    weights file is damaged, before PEFT fails with a size-mismatch traceback."""
    from transformers.pytorch_utils import Conv1D

    weights = adapter_dir / ADAPTER_WEIGHTS
    fix = "re-save the adapter (relsum train writes it) or restore the file"
    if not weights.is_file():
        return  # find_safetensors / PEFT name the missing file
    header = check_weights(weights, "adapter weights", fix)
    modules = dict(model.named_modules())
    problems: list[str] = []
    for key, info in sorted(header.items()):
        match = _LORA_KEY.match(key)
        if not match:
            continue
        name, part = match.groups()
        weight = getattr(modules.get(name), "weight", None)
        if name not in modules:
            problems.append(f"{name} is not a layer of the policy")
            continue
        if weight is None or weight.dim() != 2 or len(info["shape"]) != 2:
            continue
        out_f, in_f = reversed(weight.shape) if isinstance(modules[name], Conv1D) else weight.shape
        have, want = (info["shape"][1], in_f) if part == "A" else (info["shape"][0], out_f)
        if have != want:
            problems.append(f"{name} has {'inputs' if part == 'A' else 'outputs'} {want}, the adapter {have}")
    if problems:
        more = f" (+{len(problems) - 2} more)" if len(problems) > 2 else ""
        raise InputError(f"adapter {weights} does not fit policy {model_dir}: "
                         f"{'; '.join(problems[:2])}{more}; it was built for another architecture: pass "
                         "the base it was trained on (--model / model_dir)")

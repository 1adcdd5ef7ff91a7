"""Local model folders: refuse anything but safetensors weights, and digest files for fingerprints."""

from __future__ import annotations

import hashlib
from pathlib import Path

from relsum.core.errors import EnvironmentProblem, InputError

#: Weight files above this size are fingerprinted by size + first/last chunk instead of all bytes.
_FULL_HASH_MAX_BYTES = 2 << 30
_EDGE_BYTES = 16 << 20


class ModelFolderMissing(EnvironmentProblem, FileNotFoundError):
    """A model or adapter folder that is not there (still a ``FileNotFoundError`` for old callers)."""


#: File names that hold pickled weights (``torch.load`` runs arbitrary code while reading them).
PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")


def find_safetensors(model_dir: str | Path, kind: str = "model") -> list[Path]:
    """Check that ``model_dir`` is a local model (or ``kind="adapter"``) folder with safetensors weights.

    A hub id such as ``org/model`` is refused here, before transformers is touched, so nothing ever
    tries the network. Pickle weights alone (``pytorch_model.bin``, ``adapter_model.bin``) are refused
    because unpickling runs arbitrary code. The scorer, the reward-model trainer and the summarize job
    all call this first, so the same one-line message (an :class:`~relsum.core.errors.InputError`) comes
    before any work is done.
    """
    path = Path(model_dir)
    if not path.is_dir():
        raise ModelFolderMissing(
            f"{kind} folder {str(model_dir)!r} does not exist or is not a directory; relsum only loads "
            "models from local folders (hub ids are not supported, there is no network)")
    files = sorted(path.glob("*.safetensors"))
    if not files:
        pickles = sorted({p.name for pattern in PICKLE_PATTERNS for p in path.glob(pattern)})
        if pickles:
            raise InputError(f"{kind} folder {path} has only pickle weights "
                             f"({', '.join(pickles)}); convert them "
                             "to safetensors (pickle weights are refused)")
        raise InputError(f"{kind} folder {path} has no *.safetensors weights")
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

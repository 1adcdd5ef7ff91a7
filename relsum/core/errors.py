"""The project's own error type.

A ``RelsumError`` is a problem with the user's input or environment (a bad table, a missing or
unwritable path, a refused model, a held lock): the CLI prints it as one line and exits 2. Every
other exception is a bug or a library failure and keeps its traceback.
"""

from __future__ import annotations


class RelsumError(Exception):
    """Bad input or environment; the message says what and where, in one line."""


class InputError(RelsumError, ValueError):
    """A table, file or option the user gave that cannot be used as it is."""


class EnvironmentProblem(RelsumError, OSError):
    """A path that cannot be read or written, a lock held by another run, a missing package."""


#: ``OSError.errno`` values that mean "this path cannot be used as given": the user's environment
#: (permissions, a missing path, a file where a folder is expected, a read-only or full disk), not a bug.
ENVIRONMENT_ERRNOS = frozenset({"EACCES", "EPERM", "ENOENT", "EISDIR", "ENOTDIR", "EROFS", "ENOSPC", "EDQUOT",
                                "EEXIST", "ENOTEMPTY"})


def is_environment_oserror(exc: BaseException) -> bool:
    """True for an ``OSError`` about a path the user gave or must fix (see ``ENVIRONMENT_ERRNOS``)."""
    import errno

    return isinstance(exc, OSError) and errno.errorcode.get(exc.errno or -1, "") in ENVIRONMENT_ERRNOS


def os_error_text(exc: OSError) -> str:
    """``"Permission denied: /out/runs/r1/.shard-00001.parquet.x.tmp"``: the reason and the path(s)."""
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    return f"{exc.strerror or type(exc).__name__}: {where}" if where else str(exc)

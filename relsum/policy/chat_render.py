"""Chat templates rendered under a budget, and their refusals turned into one-line errors.

A chat template is Jinja code shipped inside a model folder (``chat_template.jinja`` or
``tokenizer_config.json``); transformers renders it in Jinja's immutable sandbox, which refuses attribute
tricks (``SecurityError``) and ``include`` (no loader), but does not bound the work: nested
``range(100000)`` loops are 10^10 iterations (the sandbox caps one range at 100,000 items, not their
product), and a loop that prints a large string each pass builds gigabytes.

Why a trace budget and not a thread timer, a subprocess or a custom sandbox: Python cannot stop a thread,
a subprocess per render costs more than the render (prompts are rendered per product), and the Jinja
environment is built (and cached) inside transformers, so a stricter sandbox would mean re-implementing
``apply_chat_template``. :func:`bounded_render` instead sets a ``sys.settrace`` hook for the duration of
one render: it counts executed lines (:data:`MAX_STEPS`, deterministic whatever the machine load; also a
wall-clock guard, :data:`MAX_SECONDS`, checked every 1,024 lines) and the characters the template yields
(:data:`MAX_CHARS`), and stops the render with :class:`TemplateBudgetExceeded`. A real template (SmolLM2,
ChatML, Mistral) runs a few hundred lines per prompt; the hook adds about 0.1 ms per render (measured in
``tests/training/test_policy_hostile.py``). Not bounded: a single C-level operation such as ``'x' * 10**9``
(one allocation, then the size check stops the render at its first yield).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from relsum.core.errors import InputError

#: Executed Python lines one render may take (a real template takes a few hundred).
MAX_STEPS = 1_000_000
#: Characters the template may yield in one render (relsum prompts are a few thousand).
MAX_CHARS = 1_000_000
#: Wall-clock guard for one render, checked every 1,024 lines.
MAX_SECONDS = 5.0
_TEMPLATE_FILE = "<template>"  # the co_filename of Jinja's compiled template code

T = TypeVar("T")


class TemplateBudgetExceeded(RuntimeError):
    """A chat template render went past :data:`MAX_STEPS`, :data:`MAX_CHARS` or :data:`MAX_SECONDS`."""


@contextmanager
def _budget(max_steps: int, max_chars: int, max_seconds: float) -> Iterator[None]:
    steps = chars = 0
    deadline = time.perf_counter() + max_seconds

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal steps, chars
        if event == "line":
            steps += 1
            if steps > max_steps:
                raise TemplateBudgetExceeded(f"more than {max_steps:,} steps")
            if not steps & 1023 and time.perf_counter() > deadline:
                raise TemplateBudgetExceeded(f"more than {max_seconds:g} s")
        elif event == "return" and isinstance(arg, str) and frame.f_code.co_filename == _TEMPLATE_FILE:
            chars += len(arg)
            if chars > max_chars:
                raise TemplateBudgetExceeded(f"more than {max_chars:,} characters of output")
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        yield
    finally:
        sys.settrace(previous)


def bounded_render(render: Callable[[], T], *, max_steps: int = MAX_STEPS, max_chars: int = MAX_CHARS,
                   max_seconds: float = MAX_SECONDS) -> T:
    """``render()`` under the budget above; raises :class:`TemplateBudgetExceeded` when it runs past it."""
    with _budget(max_steps, max_chars, max_seconds):
        return render()


def template_file(tokenizer: Any) -> str:
    """Where the tokenizer's chat template comes from: ``<dir>/chat_template.jinja`` or
    ``<dir>/tokenizer_config.json`` (the folder alone when it is not a local folder)."""
    folder = Path(str(getattr(tokenizer, "name_or_path", "") or "."))
    for name in ("chat_template.jinja", "tokenizer_config.json"):
        if (folder / name).is_file():
            return str(folder / name)
    return str(folder)


def template_error(tokenizer: Any, exc: BaseException) -> InputError | None:
    """The one-line error for a chat template that cannot be rendered, or None when ``exc`` is not a
    template problem (then it is a bug and keeps its traceback)."""
    from jinja2.exceptions import SecurityError, TemplateError

    where = template_file(tokenizer)
    fix = ("fix or remove the chat template there (without one the plain prompt is used), or "
           "use another model folder")
    if isinstance(exc, TemplateBudgetExceeded):
        why = f"does not finish rendering a prompt ({exc}; relsum bounds template rendering)"
    elif isinstance(exc, SecurityError):
        why = f"is refused by the Jinja sandbox (SecurityError: {exc})"
    elif isinstance(exc, RecursionError):
        why = "recurses without end (a macro that calls itself)"
    elif isinstance(exc, TypeError) and "no loader" in str(exc):
        why = "is refused by the Jinja sandbox (it includes or imports another template; there is no loader)"
    elif isinstance(exc, TemplateError):
        why = f"cannot be rendered ({type(exc).__name__}: {exc})"
    else:
        return None
    return InputError(f"chat template in {where} {why}: {fix}")


def render_chat(tokenizer: Any, messages: list[dict[str, str]], **kwargs: Any) -> str:
    """``tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)`` under the budget; a template
    problem becomes an :class:`~relsum.core.errors.InputError` naming the file and the fix."""
    try:
        return bounded_render(lambda: tokenizer.apply_chat_template(messages, tokenize=False, **kwargs))
    except Exception as exc:
        error = template_error(tokenizer, exc)
        if error is None:
            raise
        raise error from exc


def check_chat_template(tokenizer: Any) -> None:
    """Render one short user turn with the tokenizer's chat template (if any), so a template that the
    sandbox refuses, that fails or that runs away is refused when the model is loaded, before any work."""
    if getattr(tokenizer, "chat_template", None):
        render_chat(tokenizer, [{"role": "user", "content": "Product title: probe"}],
                    add_generation_prompt=True)

"""The vLLM backend for GPUs: the adapter is merged into the base first, then vLLM generates greedily.

In its own module (re-exported from :mod:`relsum.summarize.backends`) because it is engine-specific;
vLLM is imported lazily, only when a :class:`VLLMBackend` is built, so CPU installs never need it.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Sequence

from relsum.summarize.backend_base import BackendBase, GenSettings


class VLLMBackend(BackendBase):
    """vLLM on a GPU: the adapter is merged into the base and saved to a temp folder that vLLM loads.

    Greedy decoding (``temperature=0``). Needs the ``vllm`` package and a CUDA GPU; otherwise a clear
    error is raised at construction. To fan out over many GPUs, run one job per catalog partition
    (or wrap this class in a Ray actor with ``num_gpus=1``).
    """

    def __init__(self, settings: GenSettings, *, gpu_memory_utilization: float = 0.9,
                 tensor_parallel_size: int = 1, dtype: str = "auto"):
        try:
            import vllm
        except ImportError as exc:
            raise RuntimeError('backend "vllm" needs the vllm package (pip install vllm) on a machine with '
                               'a CUDA GPU; use backend "hf" or "ray" on CPU') from exc
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError('backend "vllm" needs a CUDA GPU and none is visible; use '
                               'backend "hf" or "ray"')
        from relsum.policy.load import load_policy, load_tokenizer
        from relsum.policy.prompt import resolve_chat_template

        self.settings = settings
        self._tmp: str | None = None
        model_path = settings.model_dir
        if settings.adapter_dir:
            self._tmp = tempfile.mkdtemp(prefix="relsum-vllm-merged-")
            model, tokenizer = load_policy(settings.model_dir, settings.adapter_dir, merge=True,
                                           allow_base_mismatch=settings.allow_base_mismatch)
            model.save_pretrained(self._tmp, safe_serialization=True)
            tokenizer.save_pretrained(self._tmp)
            del model
            model_path = self._tmp
        self.tokenizer = load_tokenizer(model_path)
        self.templated = resolve_chat_template(self.tokenizer, None)
        self.llm = vllm.LLM(model=model_path, tensor_parallel_size=tensor_parallel_size,
                            gpu_memory_utilization=gpu_memory_utilization, dtype=dtype,
                            trust_remote_code=False)
        from relsum.policy.prompt import stop_token_ids

        # stop at the first line break, as the hf backend and training do (the served form is one line)
        self.params = vllm.SamplingParams(temperature=0.0, max_tokens=settings.max_new_tokens,
                                          stop_token_ids=stop_token_ids(self.tokenizer))

    def summarize(self, titles: Sequence[str], texts: Sequence[str]) -> list[str]:
        from relsum.policy.prompt import render_prompts
        from relsum.policy.served import served_summary

        out = [""] * len(titles)
        todo = [i for i, x in enumerate(texts) if x and str(x).strip()]
        # the same prompt strings as the hf backend and training (variant, chat template, cut text)
        strings = render_prompts(self.tokenizer, [titles[i] for i in todo], [texts[i] for i in todo],
                                 max_prompt_tokens=self.settings.max_prompt_tokens,
                                 use_chat_template=self.templated, variant=self.settings.prompt)
        # token ids, not strings: a chat-templated string already holds BOS, so vLLM must not add another
        ids = self.tokenizer(strings, add_special_tokens=not self.templated)["input_ids"]
        prompts = [{"prompt_token_ids": p} for p in ids]
        for i, res in zip(todo, self.llm.generate(prompts, self.params, use_tqdm=False), strict=True):
            out[i] = served_summary(res.outputs[0].text, title=titles[i])
        return out

    def close(self) -> None:
        if self._tmp:
            with contextlib.suppress(OSError):
                shutil.rmtree(self._tmp)
            self._tmp = None

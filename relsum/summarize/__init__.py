"""Catalog summarization: the resumable, incremental, sharded batch job and its generation backends."""

from relsum.summarize.backends import (
           GenSettings,
           HFBackend,
           RayBackend,
           SummarizerBackend,
           VLLMBackend,
           make_backend,
)
from relsum.summarize.job import SummarizeConfig, load_summaries, run_summarize
from relsum.summarize.postprocess import clean_summary

__all__ = ["GenSettings", "HFBackend", "RayBackend", "SummarizeConfig", "SummarizerBackend", "VLLMBackend",
           "clean_summary", "load_summaries", "make_backend", "run_summarize"]

"""Catalog summarization: the resumable, incremental, sharded batch job and its generation backends.

What the job stores and serves is made by :func:`relsum.policy.served.served_summary`, shared with training
through :mod:`relsum.policy`. Import names from their modules (``relsum.summarize.job``, ``.backends``, …):
this package re-exports nothing, so each name has one import path.
"""

"""relsum: query-relevant product summaries trained with RL against a frozen cross-encoder ranker."""

__version__ = "0.1.0"

"""Pair selection: the relevance-gap filter that keeps the pairs whose description changes relevance."""

"""Ranking measures as small pure functions (``ranking``) and the names that carry their parameters
(``names``)."""

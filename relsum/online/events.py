"""The online log's event types, without numpy or pandas.

The interleaving analysis (:mod:`relsum.online.interleaving`) and the analyze stage's config (built by
``relsum analyze-interleaving --help``) both check against them.
"""

from __future__ import annotations

#: Event types in the online log; "impression" only registers that a list was shown.
KNOWN_EVENTS = ("click", "add_to_cart", "impression")
#: The events that can give credit to the clicked item's team (every event type but "impression").
CREDIT_EVENTS = KNOWN_EVENTS[:2]

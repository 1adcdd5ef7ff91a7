"""The online test: team-draft interleaving lists, their export and the click events that credit them."""

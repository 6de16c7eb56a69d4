"""Applying a model: the one scoring path (`scoring.Scorer`: windows, strands, temperature) and the commands on
top of it: `predict`, `evaluate`, `scan`, `embed`, `variants` and `explain` (with its logos and motifs)."""

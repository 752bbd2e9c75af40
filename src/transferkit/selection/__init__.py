"""Choosing before training: transferability scores, the `rank` of backbones, the strategy `advise`r, and `compare`."""

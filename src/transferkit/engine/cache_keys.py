"""What identifies a run's images in the feature cache. `fit`, `rank` and `advise` build the same key, so the
features they extract are the ones `linear` and `two-phase` would compute, and are computed once. No torch."""

from __future__ import annotations

import hashlib
from pathlib import Path


def feature_cache_key(cfg, bcfg, fingerprint: str, size: int, splits, decoded_counts: list[int]) -> dict:
    return {
        "data": fingerprint,
        "backbone": bcfg.name,
        # A builder that loads a local file says which (`bundle:`: its path, size, mtime and save id); else by option
        "weights": bcfg.extra.get("weights_key") or _weights_id(cfg),
        "size": size,
        "crop": bcfg.crop_pct,
        "keys": _keys_hash(splits),
        "decoded": list(decoded_counts),
    }


def _weights_id(cfg) -> str:
    """A file: backbone is identified by its path, size and mtime (and architecture): a new file, new features."""
    if cfg.model.backbone.startswith("file:"):
        p = Path(cfg.model.backbone[5:]).expanduser()
        st = p.stat() if p.exists() else None
        return f"{p.resolve()}|{st.st_size if st else 0}|{int(st.st_mtime) if st else 0}|{cfg.model.arch}"
    return cfg.model.backbone


def _keys_hash(splits) -> str:
    h = hashlib.sha256()
    for split in sorted(splits):
        for s in splits[split]:
            h.update(f"{split}|{s.key}|{s.label}\n".encode())
    return h.hexdigest()[:16]

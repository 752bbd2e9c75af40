"""The review page: the suspected label errors, duplicate groups and outliers of a review, to keep, relabel or
exclude with a click or a key; every decision saved at once, the fixed list exported for `train`.

    result = transferkit.review("data/")                     # the review helper's result (items, classes, task)
    serve_review(result, "review-out/")                      # http://127.0.0.1:<free port>/ until Ctrl-C

Keys on the page: 1-9 and 0 relabel to the class of that number (the given label: keep), k keep, x exclude,
u undo, arrows move, e export, n (or a click on an image) the image's nearest neighbours, Esc closes them.
Decisions go to out_dir/review.sqlite (one row per click, the last one per image counts); export writes
out_dir/cleaned.csv (path,label: every labelled image, relabelled ones with their new label, excluded ones left out;
a pre-split data set's images with their split in a third column; core.review.write_fix_list writes it), which
`transferkit train out_dir/cleaned.csv` reads, keeping those splits.

Neighbours (GET /api/neighbours?key=...&k=8): the k images of the whole data set most similar to one, by the cosine
of the features the review computed (result.embedding: nothing is extracted again), each with its label and split.
The query image itself is left out (the panel shows it as its title); an exact copy of it is not, at cosine 1.0.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from .db import Journal
from .server import Thumbnails, name_of, page_app, run

ACTIONS = ("keep", "relabel", "exclude")
KINDS = ("label", "conflict", "leak", "duplicate", "exact-duplicate", "outlier")  # the page's order
FIELDS = ("key", "kind", "score", "given", "suggested", "group", "reason")
NEIGHBOURS, MAX_NEIGHBOURS = 8, 50  # the panel's default; more than 50 thumbnails is `transferkit similar`'s job


@dataclass
class Item:
    key: str  # absolute path, or an array key
    kind: str  # one of KINDS
    score: float  # how suspicious (the review's ranking score)
    given: str | None  # the label the data has
    suggested: str | None  # what the review proposes (label issues), or None
    group: int | None  # duplicates: the images of one group share it
    reason: str  # one line for people


def as_items(result) -> list[Item]:
    """The result's items, objects or dicts, as Items (missing fields: None)."""
    out = []
    for it in result.items:
        get = it.get if isinstance(it, dict) else lambda name, d=None, it=it: getattr(it, name, d)
        score = get("score")
        score = None if score is None or (isinstance(score, float) and math.isnan(score)) else float(score)
        group = get("group")
        out.append(
            Item(
                str(get("key")),
                str(get("kind", "label")),
                score,
                None if get("given") is None else str(get("given")),
                None if get("suggested") is None else str(get("suggested")),
                None if group is None else int(group),
                str(get("reason") or ""),
            )
        )
    return out


class Decision(BaseModel):
    key: str
    action: str
    label: str | None = None  # relabel: the new class


class ReviewPage:
    """The state behind the page: the review's items and the decisions in out_dir/review.sqlite."""

    def __init__(self, result, out_dir: str | os.PathLike, embedding=None):
        self.result = result
        self.items = as_items(result)
        self.classes = [str(c) for c in (getattr(result, "classes", None) or [])]
        self.task = str(getattr(result, "task", "classification") or "classification")
        self.out_dir = Path(out_dir)
        self.journal = Journal(self.out_dir / "review.sqlite")
        self.keys = {it.key for it in self.items}
        # the review's features (core.embed.Embedding: features + keys), kept for the neighbours; the index over them
        # (the rows normalised: 0.2-0.3 s at 20k-50k x 1280) is built on the first question, not at start
        self.embedding = embedding if embedding is not None else getattr(result, "embedding", None)
        self.data_keys = list(self.embedding.keys) if self.embedding is not None else []
        self._row = {k: i for i, k in enumerate(self.data_keys)}
        self._images = {img["key"]: img for img in getattr(result, "images", None) or []}  # given, split
        self._kind = {}
        for it in self.items:
            self._kind.setdefault(it.key, it.kind)
        self._index = None
        self._lock = threading.Lock()

    def decisions(self) -> dict[str, str]:
        """{key: "keep" | "exclude" | the new label} for every image decided so far."""
        return {k: v.split(":", 1)[1] if v.startswith("relabel:") else v for k, v in self.journal.latest().items()}

    def state(self) -> dict:
        raw = self.journal.latest()
        items = [{**it.__dict__, "name": name_of(it.key), "decision": raw.get(it.key)} for it in self.items]
        order = {k: i for i, k in enumerate(KINDS)}
        items.sort(key=lambda d: (order.get(d["kind"], len(KINDS)), d["group"] if d["group"] is not None else 0))
        return {
            "task": self.task,
            "classes": self.classes,
            "items": items,
            "decided": sum(k in raw for k in self.keys),
            "images": len(self.keys),
            "out": str(self.out_dir),
            "notes": [str(n) for n in getattr(self.result, "notes", None) or []],  # what the review could not check
            "neighbours": bool(self.data_keys),  # whether the page can show an image's neighbours
        }

    def index(self):
        with self._lock:  # requests run on a thread pool: two first clicks build one index
            if self._index is None:
                from ..core.similar import SimilarityIndex

                # exact: one query costs N*F multiply-adds, 24 / 52 ms p50 through this endpoint at 20k / 50k x 1280
                # (2 shared cores); an HNSW graph would cost the first click 12-52 s to build (BENCHMARKS.md)
                self._index = SimilarityIndex(self.embedding.features, self.data_keys, backend="exact")
        return self._index

    def _about(self, key: str, **extra) -> dict:
        img = self._images.get(key, {})
        return {
            "key": key,
            "name": name_of(key),
            "label": img.get("given"),
            "split": img.get("split"),
            "kind": self._kind.get(key),
            **extra,
        }

    def neighbours(self, key: str, k: int = NEIGHBOURS) -> dict:
        """The k images most similar to `key`, most similar first, the image itself left out."""
        if not 1 <= k <= MAX_NEIGHBOURS:
            raise HTTPException(400, f"k must be between 1 and {MAX_NEIGHBOURS} (got {k}).")
        if not self.data_keys:
            raise HTTPException(
                404, "This review carries no features, so no neighbours: run `transferkit review DATA --serve`."
            )
        row = self._row.get(key)
        if row is None:
            why = "could not be read when the review ran" if key in self._images else "is not in this review's data"
            raise HTTPException(404, f"No neighbours for '{name_of(key)}': the image {why}.")
        index = self.index()
        sims, idx = index.search(index.x[row], k + 1)  # one more: the image itself is (almost always) the first
        hits = [(int(i), float(s)) for s, i in zip(sims[0], idx[0]) if i >= 0 and i != row][:k]
        return {
            **self._about(key),
            "k": k,
            "images": len(index),
            "neighbours": [self._about(self.data_keys[i], similarity=round(s, 4)) for i, s in hits],
        }

    def decide(self, d: Decision) -> dict:
        if d.key not in self.keys:
            raise HTTPException(404, "That image is not in this review.")
        if d.action not in ACTIONS:
            raise HTTPException(400, f"Unknown action '{d.action}'. Valid: {', '.join(ACTIONS)}.")
        value = d.action
        if d.action == "relabel":
            if d.label not in self.classes:
                raise HTTPException(
                    400, f"Unknown class '{d.label}'. Valid: {', '.join(self.classes) or '(none: keep or exclude)'}."
                )
            value = f"relabel:{d.label}"
        self.journal.add(d.key, value)
        return self.state()

    def undo(self) -> dict:
        a = self.journal.undo()
        return {**self.state(), "undone": a.key if a else None}

    def export(self, path: Path | None = None) -> dict:
        """out_dir/cleaned.csv by the review's own writer: every reviewed image, the decisions applied."""
        from ..core.review import write_fix_list
        from ..errors import TransferkitError

        path = path or self.out_dir / "cleaned.csv"
        decisions = self.decisions()
        try:
            write_fix_list(self.result, decisions, path)
        except TransferkitError as e:  # no labels, array keys, a file the review did not write: said on the page
            raise HTTPException(400, str(e)) from e
        excluded = sum(v == "exclude" for v in decisions.values())
        relabelled = sum(v not in ("keep", "exclude") for v in decisions.values())
        return {"path": str(path), "excluded": excluded, "relabelled": relabelled, "decided": len(decisions)}


def review_app(result, out_dir: str | os.PathLike, images=None, embedding=None) -> FastAPI:
    """The page's app. images: an ImageSet to load keys from (default: the result's loader, else keys are files);
    embedding: the features for the neighbours (default: the result's)."""
    page = ReviewPage(result, out_dir, embedding)
    images = images if images is not None else getattr(result, "loader", None)
    thumbs = Thumbnails(page.keys | set(page.data_keys), images.load if images is not None else None)  # neighbours too
    app = page_app("review", thumbs, "transferkit review")
    app.state.page = page
    app.get("/api/state")(page.state)
    app.get("/api/neighbours")(page.neighbours)
    app.post("/api/decide")(page.decide)
    app.post("/api/undo")(page.undo)
    app.post("/api/export")(lambda: page.export())
    return app


def serve_review(
    result,
    out_dir: str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 0,
    open_browser: bool = False,
    images=None,
    sock=None,
) -> None:
    """Serve the review page until Ctrl-C. sock: one server.bind gave already (else host and port are bound)."""
    run(review_app(result, out_dir, images), host, port, open_browser, what="review page", sock=sock)

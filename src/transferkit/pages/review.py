"""The review page: the suspected label errors, duplicate groups and outliers of a review, to keep, relabel or
exclude with a click or a key; every decision saved at once, the fixed list exported for `train`.

    result = transferkit.review("data/")                     # the review helper's result (items, classes, task)
    serve_review(result, "review-out/")                      # http://127.0.0.1:<free port>/ until Ctrl-C

Keys on the page: 1-9 and 0 relabel to the class of that number (the given label: keep), k keep, x exclude,
u undo, arrows move, e export. Decisions go to out_dir/review.sqlite (one row per click, the last one per image
counts); export writes out_dir/cleaned.csv (path,label: every labelled image, relabelled ones with their new label,
excluded ones left out; core.review.write_fix_list writes it), which `transferkit train out_dir/cleaned.csv` reads.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from .db import Journal
from .server import Thumbnails, page_app, run

ACTIONS = ("keep", "relabel", "exclude")
KINDS = ("label", "conflict", "leak", "duplicate", "exact-duplicate", "outlier")  # the page's order
FIELDS = ("key", "kind", "score", "given", "suggested", "group", "reason")


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

    def __init__(self, result, out_dir: str | os.PathLike):
        self.result = result
        self.items = as_items(result)
        self.classes = [str(c) for c in (getattr(result, "classes", None) or [])]
        self.task = str(getattr(result, "task", "classification") or "classification")
        self.out_dir = Path(out_dir)
        self.journal = Journal(self.out_dir / "review.sqlite")
        self.keys = {it.key for it in self.items}

    def decisions(self) -> dict[str, str]:
        """{key: "keep" | "exclude" | the new label} for every image decided so far."""
        return {k: v.split(":", 1)[1] if v.startswith("relabel:") else v for k, v in self.journal.latest().items()}

    def state(self) -> dict:
        raw = self.journal.latest()
        items = [
            {**it.__dict__, "name": Path(it.key).name if os.sep in it.key else it.key, "decision": raw.get(it.key)}
            for it in self.items
        ]
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


def review_app(result, out_dir: str | os.PathLike, images=None) -> FastAPI:
    """The page's app. images: an ImageSet to load keys from (default: the result's loader, else keys are files)."""
    page = ReviewPage(result, out_dir)
    images = images if images is not None else getattr(result, "loader", None)
    app = page_app("review", Thumbnails(page.keys, images.load if images is not None else None), "transferkit review")
    app.state.page = page
    app.get("/api/state")(page.state)
    app.post("/api/decide")(page.decide)
    app.post("/api/undo")(page.undo)
    app.post("/api/export")(lambda: page.export())
    return app


def serve_review(
    result, out_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 0, open_browser: bool = False, images=None
) -> None:
    """Serve the review page until Ctrl-C."""
    run(review_app(result, out_dir, images), host, port, open_browser, what="review page")

"""The labelling page: the images the model asks for next, answered with a key; the head refits after each answer.

    session = LabelSession.open("pool/", ["ant", "bee"], out_dir="labelling/")   # features: once, via the store
    serve_label(session)                                                         # what `transferkit label` does

Keys: 1-9 and 0 answer the class of that number, s skips, u undoes the last answer. Each answer is a row of
out_dir/label.sqlite at once; then a linear head refits on the cached features of everything labelled (L-BFGS,
~0.15 s for 1,000 labels x 1,280 features) and the queue is ranked again by core.suggest.rank (auto: typical
images while labels are few, the least sure ones once the head is decent). The cross-validated accuracy (5 heads,
out-of-fold; its Wilson interval) is measured on a background thread so an answer never waits for it, and each
measurement is a point of the learning curve. Export writes out_dir/labels.csv (path,label), which `train` reads;
the train button exports, then trains a linear head on it in the background (api.fit) and names the bundle.
"""

from __future__ import annotations

import csv
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from ..config import DEFAULT_BACKBONE
from ..errors import DataError
from .db import Journal
from .server import Thumbnails, name_of, page_app, run

SKIP = "skip"
QUEUE = 12  # images ranked per refit: the one shown and the strip of those after it
CV_FOLDS = 5  # fewer where the rarest class answered has fewer labels (at least 2 per class)


class Answer(BaseModel):
    key: str
    label: str  # a class name, or "skip"


@dataclass
class LabelSession:
    """The pool, its features, the classes and the answers so far (in the journal)."""

    keys: list[str]  # every image: the pool's, then those of the labelled list that the pool lacks
    features: np.ndarray  # (N, F), rows in the order of keys
    classes: list[str]
    out_dir: Path
    given: dict[str, str] = field(default_factory=dict)  # labels from --labelled, before any answer here
    strategy: str = "auto"
    backbone: str = DEFAULT_BACKBONE
    load: object = None  # key -> PIL image for thumbnails (None: keys are file paths)
    background: bool = True  # False: accuracy measured in the answer's request (tests)
    notes: list[str] = field(default_factory=list)  # what the page should say once (overlaps, skipped files)
    standardise: bool = False  # the head standardises each feature (multi-depth features: --features stages)

    def __post_init__(self):
        self.out_dir = Path(self.out_dir)
        self.journal = Journal(self.out_dir / "label.sqlite")
        self.row = {k: i for i, k in enumerate(self.keys)}
        self._check_classes()
        self.lock = threading.Lock()  # guards the answers' writes and the queue (two tabs answer on two threads)
        self._refitting = threading.Lock()
        self.front: str | None = None  # an undone image: shown again first
        self.queue: list[dict] = []
        self.ranked_by, self.note, self.refit_ms = "", "", []
        self.accuracy = None
        self.training: dict = {"state": "idle"}
        self.version = self.ranked = 0  # answers taken / the answer count the queue was ranked on
        self._wanted = threading.Event()
        self.refit()
        if self.background:
            threading.Thread(target=self._worker, daemon=True).start()
            self._wanted.set()  # the accuracy of the labels so far (a restart, a --labelled list)
        else:
            self.measure()

    # ---- opening ------------------------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        pool,
        classes: list[str] | None = None,
        labelled: str | os.PathLike | None = None,
        out_dir: str | os.PathLike = "labelling",
        backbone: str = DEFAULT_BACKBONE,
        strategy: str = "auto",
        embed_fn=None,
        **kw,
    ) -> LabelSession:
        """Embed the pool (and the labelled list) once through the feature store; the pool's images that the list
        already labels are left out of the queue."""
        from ..core.embed import embed
        from ..data.sources import open_images

        embed_fn = embed_fn or embed
        check_label_paths(out_dir, labelled)  # before the pool is embedded (minutes on a CPU)
        images = open_images(pool)
        if len(images) == 0:
            raise DataError(f"The pool '{pool}' holds no images: give a folder or a list of images to label.")
        notes = []
        given = read_labelled(labelled) if labelled else {}
        emb = embed_fn(images, backbone)
        keys, feats = list(emb.keys), [emb.features]
        if emb.skipped:
            notes.append(f"{len(emb.skipped)} pool image(s) could not be read and are left out.")
        if given:
            overlap = sum(k in given for k in keys)
            if overlap:
                notes.append(f"{overlap} pool image(s) are already labelled in {labelled}: left out of the queue.")
            lab = embed_fn(str(labelled), backbone)
            extra = [i for i, k in enumerate(lab.keys) if k not in set(keys)]
            keys += [lab.keys[i] for i in extra]
            feats.append(lab.features[extra])
            given = {k: v for k, v in given.items() if k in set(keys)}
        if not keys:
            raise DataError(f"No image of the pool '{pool}' could be read: nothing to label.")
        names = list(classes or sorted(set(given.values())))
        unknown = sorted(set(given.values()) - set(names))
        if unknown:
            raise DataError(
                f"{labelled} has labels that --classes lacks: {', '.join(unknown)}. Add them to --classes "
                f"({','.join(names + unknown)}), or leave --classes out to take the list's."
            )
        if len(names) < 2:
            raise DataError(
                f"Labelling needs at least two classes; got {names or 'none'}. Name them: --classes cat,dog "
                "(or give --labelled LIST with two classes or more)."
            )
        return cls(
            keys,
            np.concatenate(feats).astype(np.float32),
            names,
            Path(out_dir),
            given=given,
            strategy=strategy,
            backbone=backbone,
            load=_loader(images),
            notes=notes,
            **kw,
        )

    def _check_classes(self) -> None:
        """A journal from an earlier session with other classes: refuse rather than mix two labellings."""
        stored = self.journal.get_meta("classes")
        answered = {v for v in self.journal.latest().values() if v != SKIP}
        lost = sorted(answered - set(self.classes))
        if lost:
            raise DataError(
                f"{self.journal.path} holds answers for classes that are not in --classes: {', '.join(lost)} "
                f"(it was started with {','.join(stored or [])}). Give them again in --classes, or choose another "
                "--out for a new labelling."
            )
        self.journal.set_meta("classes", self.classes)

    # ---- what is labelled, and what to ask next ---------------------------------------------------------------
    def labels(self) -> dict[str, str]:
        """{key: class} of every labelled image: the list's, then the answers here (the last per image counts)."""
        out = dict(self.given)
        for k, v in self.journal.latest().items():
            if v == SKIP:
                continue
            out[k] = v
        return out

    def refit(self) -> None:
        """Rank the unlabelled images again with a head on everything labelled now; time it. Answers may arrive
        meanwhile (the lock is held only to swap the queue in): those images are dropped from the new queue."""
        from ..core.suggest import rank

        with self._refitting:  # one refit at a time (the worker, or a test's own call)
            t0, version = time.perf_counter(), self.version
            labels = self.labels()
            skipped = {k for k, v in self.journal.latest().items() if v == SKIP}
            lab_rows = np.array([self.row[k] for k in labels if k in self.row], dtype=np.int64)
            y = np.array([self.classes.index(labels[self.keys[r]]) for r in lab_rows], dtype=np.int64)
            pool = [i for i, k in enumerate(self.keys) if k not in labels and k not in skipped]
            if not pool:  # everything answered: the skipped ones come back
                pool = [i for i, k in enumerate(self.keys) if k not in labels]
            pool = np.array(pool, dtype=np.int64)
            s = rank(
                self.features[pool],
                self.features[lab_rows],
                y,
                strategy=self.strategy,
                n=QUEUE,
                num_classes=len(self.classes),
                classes=self.classes,
                standardise=self.standardise,
            )
            queue = [
                {"key": self.keys[pool[i]], "why": why, "score": float(sc)}
                for i, sc, why in zip(s.indices, s.scores, s.why)
            ]
            with self.lock:
                answered = self.journal.latest() if self.version != version else {}
                queue = [q for q in queue if q["key"] not in answered and q["key"] != self.front]
                if self.front:
                    queue.insert(0, {"key": self.front, "why": "undone: asked again", "score": 0.0})
                for q in queue:
                    q["name"] = name_of(q["key"])
                self.queue, self.ranked_by, self.note, self.ranked = queue, s.strategy, s.note, version
            self.refit_ms.append(1000 * (time.perf_counter() - t0))

    def measure_soon(self) -> None:
        """Refit and measure after an answer: on the worker thread (the answer returns at once, the page shows the
        queue ranked before it minus what was answered), or here when there is no worker (tests)."""
        if self.background:
            self._wanted.set()
        else:
            self.refit()
            self.measure()

    def _worker(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()  # answers that arrive meanwhile ask for one more refit, not one each
            try:
                self.refit()
                if not self._wanted.is_set():  # the accuracy waits while answers keep coming: the queue first
                    self.measure()
            except Exception as e:  # shown on the page; the next answer tries again
                self.accuracy = {"error": f"{type(e).__name__}: {e}"}

    # ---- answers ------------------------------------------------------------------------------------------------
    def answer(self, a: Answer) -> dict:
        if a.key not in self.row:
            raise HTTPException(404, "That image is not in this labelling pool.")
        if a.label != SKIP and a.label not in self.classes:
            raise HTTPException(
                400, f"Unknown class '{a.label}'. Valid: {', '.join(self.classes)} (or '{SKIP}' to skip the image)."
            )
        with self.lock:  # the write and the queue change together: a refit on another thread sees both or neither
            self.journal.add(a.key, a.label)
            self.version += 1
            if self.front == a.key:
                self.front = None
            self.queue = [q for q in self.queue if q["key"] != a.key]
        self.measure_soon()
        return self.state()

    def undo(self) -> dict:
        with self.lock:
            a = self.journal.undo()
            self.version += 1
            self.front = a.key if a else None
            if a:
                self.queue = [{"key": a.key, "name": name_of(a.key), "why": "undone: asked again", "score": 0.0}] + [
                    q for q in self.queue if q["key"] != a.key
                ]
        self.measure_soon()
        return {**self.state(), "undone": a.key if a else None}

    # ---- accuracy -----------------------------------------------------------------------------------------------
    def measure(self) -> None:
        """Cross-validated accuracy of a head on the labels now (classes with at least 2 labels), with its Wilson
        interval; a point of the learning curve."""
        from ..core.heads import HeadSettings
        from ..core.oof import oof_predict
        from ..evaluation.intervals import wilson

        labels = self.labels()
        counts = {c: sum(v == c for v in labels.values()) for c in self.classes}
        used = [c for c in self.classes if counts[c] >= 2]
        if len(used) < 2:
            self.accuracy = None
            return
        keys = [k for k, v in labels.items() if v in used and k in self.row]
        y = np.array([used.index(labels[k]) for k in keys], dtype=np.int64)
        x = self.features[[self.row[k] for k in keys]]
        k = min(CV_FOLDS, min(counts[c] for c in used))
        # the head the queue ranks with: standardised on multi-depth features (oof_predict's default solver otherwise)
        oof = oof_predict(x, y, k=k, settings=HeadSettings(solver="lbfgs", standardise=self.standardise))
        acc = float(oof.metrics["accuracy"])
        low, high = wilson(round(acc * len(y)), len(y))
        point = {"n": len(labels), "used": len(y), "folds": k, "accuracy": acc, "low": low, "high": high}
        point["classes"] = used
        curve = [p for p in self.journal.get_meta("curve", []) if p["n"] != point["n"]]
        self.journal.set_meta("curve", sorted(curve + [point], key=lambda p: p["n"]))
        self.accuracy = point

    # ---- the page's state, export, train ------------------------------------------------------------------------
    def state(self) -> dict:
        labels = self.labels()
        counts = {c: 0 for c in self.classes}
        for v in labels.values():
            counts[v] = counts.get(v, 0) + 1
        left = sum(k not in labels for k in self.keys)
        ms = np.array(self.refit_ms[-200:] or [0.0])
        return {
            "classes": self.classes,
            "counts": counts,
            "labelled": len(labels),
            "answered": len(self.journal.latest()),
            "left": left,
            "images": len(self.keys),
            "queue": self.queue,
            "ranking": self.ranked != self.version,  # the queue was ranked before the last answers: a new one comes
            "strategy": self.ranked_by,
            "note": self.note,
            "notes": self.notes,
            "accuracy": self.accuracy,
            "curve": self.journal.get_meta("curve", []),
            "refit_ms": {
                "last": float(ms[-1]),
                "p50": float(np.percentile(ms, 50)),
                "p95": float(np.percentile(ms, 95)),
            },
            "training": self.training,
            "out": str(self.out_dir),
        }

    def export(self, path: Path | None = None) -> dict:
        """out_dir/labels.csv: path,label of every labelled image, as data/lists.py reads it."""
        from ..faults import atomic_path

        path = Path(path or self.out_dir / "labels.csv")
        labels = self.labels()
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["path", "label"])
            w.writerows(labels.items())
        return {"path": str(path), "rows": len(labels)}

    def train(self) -> dict:
        """Export, then train a linear head on the list in the background; the state says when the bundle is there."""
        if self.training.get("state") == "running":
            return self.state()
        counts = self.state()["counts"]
        if sum(n >= 2 for n in counts.values()) < 2:
            raise HTTPException(400, "Training needs at least 2 labels of 2 classes or more; label a few more.")
        exported = self.export()
        self.training = {"state": "running", "list": exported["path"], "started": time.time()}
        threading.Thread(target=self._train, args=(exported["path"],), daemon=True).start()
        return self.state()

    def _train(self, list_path: str) -> None:
        from ..api import fit

        try:
            r = fit(
                list_path,
                strategy="linear",
                backbone=self.backbone,
                out=str(self.out_dir / "runs"),
                name="label",
                quiet=True,
            )
            self.training = {"state": "done", "bundle": str(Path(r.path) / "best"), "run": str(r.path)}
        except Exception as e:  # the page shows it; the labels are safe in the journal and the list
            self.training = {"state": "failed", "message": f"{type(e).__name__}: {e}"}


def check_label_paths(out_dir, labelled=None) -> None:
    """--out can hold label.sqlite (a folder, or none yet, under no file) and --labelled is a list file: both
    checked before the pool is embedded, creating nothing."""
    from ..faults import check_out_folder

    check_out_folder(out_dir, "--out")
    if labelled is not None:
        _labelled_file(labelled)


def _labelled_file(path: str | os.PathLike) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"--labelled '{path}' does not exist: give the list file (path,label) labelled so far.")
    if path.is_dir():
        raise DataError(
            f"--labelled '{path}' is a folder: give a list file (path,label) of the images labelled so far."
        )
    return path


def read_labelled(path: str | os.PathLike) -> dict[str, str]:
    """{absolute path: label} of a list file (paths relative to the list, as `train` reads them)."""
    from ..data.lists import read_list

    path = _labelled_file(path)
    rows = read_list(path, None, None, [])
    return {str((path.parent / r.path).resolve()): r.label for r in rows}


def _loader(images):
    """Thumbnails: the pool's own loader (array keys too) for its keys, a file decode for the list's."""
    from .server import _load_file

    own = set(images.keys)
    return lambda key: images.load(key) if key in own else _load_file(key)


def label_app(session: LabelSession) -> FastAPI:
    app = page_app("label", Thumbnails(session.keys, session.load), "transferkit label")
    app.state.session = session
    app.get("/api/state")(session.state)
    app.post("/api/answer")(session.answer)
    app.post("/api/undo")(session.undo)
    app.post("/api/export")(lambda: session.export())
    app.post("/api/train")(session.train)
    return app


def serve_label(
    session: LabelSession, host: str = "127.0.0.1", port: int = 0, open_browser: bool = False, sock=None
) -> None:
    """Serve the labelling page until Ctrl-C. sock: one server.bind gave already (else host and port are bound)."""
    run(label_app(session), host, port, open_browser, what="labelling page", sock=sock)

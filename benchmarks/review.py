"""Review's label issues, duplicates and similarity search, measured on real data (BENCHMARKS.md "Review").

    .venv/bin/python benchmarks/review.py labels digits catvnoncat hymenoptera eurosat   # noise grid
    .venv/bin/python benchmarks/review.py labels --cache /tmp/oof digits ...             # keep the scores: rerun in s
    .venv/bin/python benchmarks/review.py duplicates                                      # calibration
    .venv/bin/python benchmarks/review.py similarity                                      # index timing
    .venv/bin/python benchmarks/review.py scale                                           # 20k images' arrays
    .venv/bin/python benchmarks/review.py pixels                                          # tiny images' copies

labels: each set's features as `review` reads them for its label check (efficientnet_lite0 through the store,
--features auto: from every depth for the 8 px digits, 64 px cats and EuroSAT tiles, the last layer for ants/bees),
labels flipped at 5/10/20% (uniform: any
other class; class-conditional: the class the clean out-of-fold scores confuse it with most), seeds 0-2; out-of-fold
scores (oof_predict, k=5) on the noisy labels; the flagged set of ours, cleanlab.filter.find_label_issues (the AGPL
peer, here only) on the same scores, and a random set of the same size as ours: precision, recall, F1, and the
AUROC of the ranking (1 - self-confidence). Then what fixing buys: a head (fit_head) on 70% of the images with noisy
labels, with the flagged ones removed, and with the clean labels, judged on the clean 30% (Wilson 95%).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "benchmarks" / "review.json"


def load(name: str):
    """(features (N, F), labels (N,), classes, whether heads standardise them) for one set, through the feature
    store: the features `review`'s label check reads (--features auto: stages for tiny images, else last)."""
    from transferkit.backbones.depth import standardises
    from transferkit.config import DEFAULT_BACKBONE
    from transferkit.core.embed import embed
    from transferkit.core.suggest import pool_settings
    from transferkit.data.sources import from_arrays, open_source

    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        src = from_arrays((d.images * 16).clip(0, 255).astype(np.uint8), d.target, name="digits")
    else:
        src = open_source(
            SHARED / {"hymenoptera": "hymenoptera", "catvnoncat": "catvnoncat", "eurosat": "eurosat"}[name]
        )
    samples = [s for v in src.splits.values() for s in v]
    features, size = pool_settings(src.images(), DEFAULT_BACKBONE)
    emb = embed(src, image_size=size, features=features)
    label = {s.key: s.label for s in samples}
    return emb.features, np.array([label[k] for k in emb.keys]), src.classes, standardises(features)


def flip(y, rate, kind, confusable, rng):
    n, k = len(y), int(y.max()) + 1
    idx = rng.choice(n, int(round(rate * n)), replace=False)
    noisy = y.copy()
    if kind == "uniform":
        noisy[idx] = (y[idx] + rng.integers(1, k, len(idx))) % k
    else:
        noisy[idx] = confusable[y[idx]]
    return noisy


def prf(flagged, wrong):
    tp = int((flagged & wrong).sum())
    p = tp / max(1, flagged.sum())
    r = tp / max(1, wrong.sum())
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def auroc(score, wrong):
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(wrong, score)) if 0 < wrong.sum() < len(wrong) else float("nan")


def head_accuracy(xtr, ytr, xte, yte, standardise=False):
    from transferkit.core.heads import HeadSettings, fit_head

    h = fit_head(xtr, ytr, settings=HeadSettings(solver="lbfgs", standardise=standardise))
    return float((np.asarray(h.predict(xte)).argmax(1) == yte).mean())


def cached_oof(cache, tag, x, labels, seed=0, standardise=False):
    """(oof_predict's scores, the seconds they took), kept in cache/tag.npz (with the labels they were made on and the
    seconds) when a cache folder is given: a second pass, e.g. trying another rule of confident learning, then costs
    seconds instead of ~30 s a case, and still reports the time the scores took to make."""
    from transferkit.core.heads import HeadSettings
    from transferkit.core.oof import oof_predict

    path = cache / f"{tag}.npz" if cache else None
    if path and path.exists():
        kept = np.load(path)
        if np.array_equal(kept["labels"], labels):
            return kept["probs"], float(kept["seconds"]) if "seconds" in kept else float("nan")
    t = time.perf_counter()
    settings = HeadSettings(solver="lbfgs", seed=seed, standardise=standardise)  # as review's heads
    probs = oof_predict(x, labels, k=5, seed=seed, settings=settings).scores
    seconds = time.perf_counter() - t
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, probs=probs, labels=labels, seconds=seconds)
    return probs, seconds


def labels_bench(
    names, rates=(0.05, 0.1, 0.2), kinds=("uniform", "class-conditional"), seeds=(0, 1, 2), cache: Path | None = None
):
    from cleanlab.filter import find_label_issues

    from transferkit.core.confident import label_issues

    rows, fixes = [], []
    for name in names:
        t0 = time.perf_counter()
        x, y, classes, std = load(name)
        print(f"{name}: {x.shape} features in {time.perf_counter() - t0:.0f} s", flush=True)
        clean, _ = cached_oof(cache, f"{name}-clean", x, y, standardise=std)
        conf = clean.copy()
        conf[np.arange(len(y)), y] = -1
        cm = np.zeros((len(classes), len(classes)))
        np.add.at(cm, (y, conf.argmax(1)), 1)
        np.fill_diagonal(cm, -1)
        confusable = cm.argmax(1)  # the class each is most often mistaken for
        for kind in kinds:
            for rate in rates:
                for seed in seeds:
                    rng = np.random.default_rng(seed)
                    noisy = flip(y, rate, kind, confusable, rng)
                    wrong = noisy != y
                    probs, t_oof = cached_oof(cache, f"{name}-{kind}-{rate}-{seed}", x, noisy, seed, std)
                    t = time.perf_counter()
                    ours = label_issues(noisy, probs)
                    t_ours = time.perf_counter() - t
                    theirs = find_label_issues(noisy, probs)
                    rand = np.zeros(len(y), bool)
                    rand[rng.choice(len(y), int(ours.flagged.sum()), replace=False)] = True
                    row = {
                        "set": name,
                        "kind": kind,
                        "rate": rate,
                        "seed": seed,
                        "n": len(y),
                        "ours": prf(ours.flagged, wrong),
                        "cleanlab": prf(theirs, wrong),
                        "random": prf(rand, wrong),
                        "auroc": auroc(ours.score, wrong),
                        "oof_s": t_oof,
                        "cl_s": t_ours,
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    if kind == "uniform" and rate in (0.1, 0.2):
                        # what fixing buys: train on 70% (noisy / noisy minus flagged / clean), test on clean 30%
                        # (a generator of its own: the split must not depend on how many images were flagged)
                        perm = np.random.default_rng([seed, 1]).permutation(len(y))
                        tr, te = perm[: int(0.7 * len(y))], perm[int(0.7 * len(y)) :]
                        keep = tr[~ours.flagged[tr]]
                        fixes.append(
                            {
                                "set": name,
                                "rate": rate,
                                "seed": seed,
                                "n_test": len(te),
                                "noisy": head_accuracy(x[tr], noisy[tr], x[te], y[te], std),
                                "fixed": head_accuracy(x[keep], noisy[keep], x[te], y[te], std),
                                "clean": head_accuracy(x[tr], y[tr], x[te], y[te], std),
                            }
                        )
                        print(json.dumps(fixes[-1]), flush=True)
    return rows, fixes


TRANSFORMS = {
    "jpeg q50": lambda im: ("jpg", {"quality": 50}, im),
    "jpeg q90": lambda im: ("jpg", {"quality": 90}, im),
    "resize 0.5x": lambda im: ("png", {}, im.resize((max(8, im.width // 2), max(8, im.height // 2)))),
    "resize 2x": lambda im: ("png", {}, im.resize((im.width * 2, im.height * 2))),
    "crop 90%": lambda im: (
        "png",
        {},
        im.crop((im.width // 20, im.height // 20, im.width - im.width // 20, im.height - im.height // 20)),
    ),
}


def duplicates_bench(names=("hymenoptera", "houses", "eurosat"), per_set=60, threshold=None):
    """Cosine of each transformed copy to its original (what must be caught), and of each clean image to its nearest
    other image (what must not be): the threshold goes between."""
    from PIL import Image

    from transferkit.core.embed import embed
    from transferkit.core.similar import DUPLICATE_COSINE, duplicate_pairs, normalise
    from transferkit.data.sources import open_images

    threshold = threshold or DUPLICATE_COSINE
    out = {}
    for name in names:
        imgs = open_images(SHARED / name)
        emb = embed(imgs)
        x = normalise(emb.features)
        sims = x @ x.T
        np.fill_diagonal(sims, -1)
        nearest_other = sims.max(1)
        rng = np.random.default_rng(0)
        chosen = rng.choice(len(emb.keys), min(per_set, len(emb.keys)), replace=False)
        pos: dict[str, list[float]] = {t: [] for t in TRANSFORMS}
        tmp = Path.home() / ".cache" / "transferkit" / "review-bench" / name  # kept: a rerun extracts nothing
        tmp.mkdir(parents=True, exist_ok=True)
        made = []
        for i in chosen:
            im = Image.open(emb.keys[i]).convert("RGB")
            for t, f in TRANSFORMS.items():
                ext, kw, copy = f(im)
                p = tmp / f"{i}-{t.replace(' ', '_').replace('%', '')}.{ext}"
                if not p.exists():
                    copy.save(p, **kw)
                made.append((i, t, str(p)))
        copies = embed(open_images(tmp), image_size=emb.image_size)
        cx = normalise(copies.features)
        at = {k: n for n, k in enumerate(copies.keys)}
        for i, t, p in made:
            pos[t].append(float(cx[at[str(Path(p).resolve())]] @ x[i]))
        fp_pairs = duplicate_pairs(emb.features, threshold)
        out[name] = {
            "n": len(emb.keys),
            "image_size": emb.image_size,
            "threshold": threshold,
            "recall_at": {
                f"{c:.2f}": float(np.mean([v >= c for vs in pos.values() for v in vs]))
                for c in (0.80, 0.82, 0.84, 0.86, 0.88, 0.90, 0.92)
            },
            "clean_images_over": {f"{c:.2f}": int((nearest_other >= c).sum()) for c in (0.80, 0.84, 0.86, 0.88, 0.92)},
            "copies": {
                t: {
                    "min": min(v),
                    "p5": float(np.percentile(v, 5)),
                    "median": float(np.median(v)),
                    "recall": float(np.mean(np.array(v) >= threshold)),
                }
                for t, v in pos.items()
            },
            "nearest_other": {
                "max": float(nearest_other.max()),
                "p99": float(np.percentile(nearest_other, 99)),
                "median": float(np.median(nearest_other)),
            },
            "clean_pairs_over_threshold": len(fp_pairs),
            "clean_images_in_them": len({i for p in fp_pairs for i in p[:2]}),
        }
        print(name, json.dumps(out[name], indent=1), flush=True)
    return out


def similarity_bench(sizes=(1_000, 10_000, 50_000), dim=1280, queries=200):
    """Build and single-query times of the index on synthetic features (clusters), exact and FAISS HNSW."""
    from transferkit.core.similar import SimilarityIndex

    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        centres = rng.normal(0, 1, (50, dim)).astype(np.float32)
        x = centres[rng.integers(0, 50, n)] + rng.normal(0, 0.7, (n, dim)).astype(np.float32)
        q = x[rng.choice(n, queries, replace=False)] + rng.normal(0, 0.1, (queries, dim)).astype(np.float32)
        exact_hits = None
        for backend in ("exact", "faiss"):
            if backend == "faiss" and n < 10_000:
                continue
            t = time.perf_counter()
            index = SimilarityIndex(x, backend=backend)
            build = time.perf_counter() - t
            times, hits = [], []
            for v in q:
                t = time.perf_counter()
                hits.append(index.search(v, 10)[1][0])
                times.append(time.perf_counter() - t)
            if backend == "exact":
                exact_hits = hits
            recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(hits, exact_hits)]))
            rows.append(
                {
                    "n": n,
                    "dim": dim,
                    "backend": backend,
                    "build_s": build,
                    "p50_ms": 1000 * float(np.percentile(times, 50)),
                    "p99_ms": 1000 * float(np.percentile(times, 99)),
                    "recall_at_10": recall,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def scale_bench(sizes=(5_000, 10_000, 20_000), dim=1280):
    """Review's array steps at 20,000 images (synthetic features and scores): time and peak memory per step, to
    show the blocks keep memory flat (the features themselves are N x F x 4 bytes)."""
    import resource
    import tracemalloc

    from transferkit.core.confident import label_issues
    from transferkit.core.similar import SimilarityIndex, duplicate_pairs

    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        centres = rng.normal(0, 1, (10, dim)).astype(np.float32)
        y = rng.integers(0, 10, n)
        x = centres[y] + rng.normal(0, 1.0, (n, dim)).astype(np.float32)
        logits = rng.normal(0, 1, (n, 10))
        logits[np.arange(n), y] += 3
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        row = {"n": n, "dim": dim, "features_mb": x.nbytes / 2**20}
        for step, f in (
            ("duplicates", lambda x=x: duplicate_pairs(x)),
            ("outliers", lambda x=x: SimilarityIndex(x, backend="exact").neighbours(5)),
            ("label_issues", lambda y=y, probs=probs: label_issues(y, probs)),
        ):
            tracemalloc.start()
            t = time.perf_counter()
            f()
            row[f"{step}_s"] = time.perf_counter() - t
            row[f"{step}_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
        row["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def wilson(p, n, z=1.96):
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return c - h, c + h


def tables(results) -> str:
    """BENCHMARKS.md's tables from review.json."""
    out = []
    if results.get("labels"):
        out += [
            "| set | noise | rate | ours P / R / F1 | cleanlab P / R / F1 | random F1 | AUROC (ours) |",
            "|---|---|---|---|---|---|---|",
        ]
        groups: dict = {}
        for r in results["labels"]:
            groups.setdefault((r["set"], r["kind"], r["rate"]), []).append(r)
        for (name, kind, rate), rs in groups.items():

            def m(who, i, rs=rs):
                return float(np.mean([r[who][i] for r in rs]))

            out.append(
                f"| {name} | {kind} | {rate:.0%} | {m('ours', 0):.2f} / {m('ours', 1):.2f} / **{m('ours', 2):.3f}** | "
                f"{m('cleanlab', 0):.2f} / {m('cleanlab', 1):.2f} / {m('cleanlab', 2):.3f} | {m('random', 2):.3f} | "
                f"{np.mean([r['auroc'] for r in rs]):.3f} |"
            )
    if results.get("fixes"):
        out += [
            "",
            "| set | noise | test images x seeds | noisy labels | noisy minus flagged | clean labels |",
            "|---|---|---|---|---|---|",
        ]
        groups = {}
        for r in results["fixes"]:
            groups.setdefault((r["set"], r["rate"]), []).append(r)
        for (name, rate), rs in groups.items():
            n = sum(r["n_test"] for r in rs)
            cells = []
            for who in ("noisy", "fixed", "clean"):
                p = float(np.mean([r[who] for r in rs]))
                lo, hi = wilson(p, n)
                cells.append(f"{p:.1%} ({lo:.1%}-{hi:.1%})")
            out.append(f"| {name} | uniform {rate:.0%} | {rs[0]['n_test']} x {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(out)


# What each set's README lists as real defects, and what review must call them.
KNOWN = {
    "hymenoptera": [("the placeholder GIF filed as an ant", ["imageNotFound.gif"], ("outlier", "label"))],
    "catvnoncat": [
        ("test 17 = train 146 (pixel-identical)", ["#test[17]", "#train[146]"], ("leak", "exact-duplicate"))
    ],
    "houses": [
        ("houses 292/293: one photo, two prices", ["/292_frontal.jpg", "/293_frontal.jpg"], ("conflict",)),
        ("houses 331/351: one photo, two prices", ["/331_frontal.jpg", "/351_frontal.jpg"], ("conflict",)),
        ("houses 59/72: the same listing twice", ["/59_frontal.jpg", "/72_frontal.jpg"], ("exact-duplicate", "leak")),
        (
            "houses 199/214: the same listing twice",
            ["/199_frontal.jpg", "/214_frontal.jpg"],
            ("exact-duplicate", "leak"),
        ),
        ("houses 11/30: near-identical, prices differ", ["/11_frontal.jpg", "/30_frontal.jpg"], ("conflict",)),
        ("houses 12/32: near-identical, same price", ["/12_frontal.jpg", "/32_frontal.jpg"], ("duplicate", "leak")),
        ("house 153: price 22,000 (entry error?)", ["/153_frontal.jpg"], ("label",)),
        ("house 157: price 1,795,000 (entry error?)", ["/157_frontal.jpg"], ("label",)),
    ],
    "eurosat": [],
}


def defects_bench():
    """`review` on each shared set as it is: every known defect found (and under which kind), and the counts."""
    from transferkit.core.review import review

    out = {}
    for name, known in KNOWN.items():
        opts = {"task": "regression", "target_column": "price"} if name == "houses" else {}
        path = SHARED / name / ("labels.csv" if name == "houses" else "")
        t = time.perf_counter()
        r = review(path, **opts)
        found = []
        for what, keys, kinds in known:
            hits = [it for it in r.items if any(it.key.endswith(k) for k in keys)]
            got = sorted({it.kind for it in hits})
            found.append({"defect": what, "kinds": got, "found": bool(set(got) & set(kinds))})
        out[name] = {
            "n": len(r.images),
            "seconds": time.perf_counter() - t,
            "counts": r.counts(),
            "known": found,
            "notes": r.notes,
        }
        print(name, json.dumps(out[name]), flush=True)
    return out


def pixels_bench(n=500, copies_of=100):
    """Near-copies of tiny images in pixel space (core/similar.pixel_features), where the network's features tell
    them apart by nothing: scikit-learn's digits saved as 32 px images (8 px, nearest-neighbour upscaled, as a
    user's folder of small scans would hold them); each transform of TRANSFORMS applied to the first `copies_of`,
    the cosine of each copy's thumbnail to its original's, and each original's nearest *other* original."""
    import io
    from types import SimpleNamespace

    from PIL import Image
    from sklearn.datasets import load_digits

    from transferkit.core.similar import PIXEL_COSINE, PIXEL_SIDE, pixel_features

    d = load_digits()
    imgs = [
        Image.fromarray((a * 16).clip(0, 255).astype(np.uint8)).resize((32, 32), Image.NEAREST).convert("RGB")
        for a in d.images[:n]
    ]

    def thumbs(images):
        return pixel_features(SimpleNamespace(load=lambda i: images[i]), list(range(len(images))))

    def decoded(im, fn):
        ext, kw, out = fn(im)
        buf = io.BytesIO()
        out.save(buf, "JPEG" if ext == "jpg" else "PNG", **kw)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")

    x = thumbs(imgs)
    sims = x @ x.T
    np.fill_diagonal(sims, -1)
    nearest = sims.max(1)
    out = {
        "images": n, "side": PIXEL_SIDE, "threshold": PIXEL_COSINE,
        "nearest_other": {"median": float(np.median(nearest)), "max": float(nearest.max()),
                          "over_threshold": int((nearest >= PIXEL_COSINE).sum())},
        "copies": {},
    }  # fmt: skip
    for name, fn in TRANSFORMS.items():
        c = (thumbs([decoded(im, fn) for im in imgs[:copies_of]]) * x[:copies_of]).sum(1)
        out["copies"][name] = {"min": float(c.min()), "caught": float((c >= PIXEL_COSINE).mean())}
    print(json.dumps(out), flush=True)
    return out


def main(argv):
    cache = None
    if "--cache" in argv:  # --cache DIR: keep each case's out-of-fold scores there (labels only)
        at = argv.index("--cache")
        cache, argv = Path(argv[at + 1]), argv[:at] + argv[at + 2 :]
    what = argv[0] if argv else "labels"
    names = argv[1:] or ["digits"]
    if what == "labels":
        rows, fixes = labels_bench(names, cache=cache)
        new = {"labels": rows, "fixes": fixes}
    elif what == "duplicates":
        new = {"duplicates": duplicates_bench()}
    elif what == "table":
        print(tables(json.loads(OUT.read_text())))
        return
    elif what == "defects":
        new = {"defects": defects_bench()}
    elif what == "pixels":
        new = {"pixels": pixels_bench()}
    elif what == "scale":
        new = {"scale": scale_bench()}
    else:
        new = {"similarity": similarity_bench()}
    results = json.loads(OUT.read_text()) if OUT.exists() else {}  # read last: another run may have written since
    for part, value in new.items():
        if part in ("labels", "fixes"):  # the sets just measured replace their old rows
            value = [r for r in results.get(part, []) if r["set"] not in names] + value
        results[part] = value
    OUT.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])

"""Deploy a bundle: exports that predict what the bundle predicts, checked on real images when they are written.

    from transferkit.export import export
    report = export("runs/ants-linear/best")                 # -> runs/ants-linear/best/model.onnx + model.parity.json
    report = export("runs/ants-linear/best", int8=True)      # -> model.int8.onnx, refused if it strays too far
    from transferkit.export.runner import OnnxPredictor      # needs onnxruntime, numpy and Pillow; no torch
    OnnxPredictor("runs/ants-linear/best/model.onnx").predict("bee.jpg")

Importing this package imports neither torch nor onnx; `export` does, when called.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError, TransferkitError, unknown_choice
from ..faults import disk_full_check

FORMATS = ("onnx", "torchscript")
# fp32 runs the same float ops in another library: differences are float rounding, ~1e-7 on a probability (or on a
# value measured in target standard deviations).
FP32_MAX_DIFF = 1e-4
# int8 changes the numbers on purpose; it is refused (unless --force) when it costs the task's score. With labels:
# more than 0.02 of it (2 points of accuracy: 3 of 153 hymenoptera val images; 0.02 of R² or mAP). Without: fewer than
# 95% of the answers the same as the bundle's. Agreement alone is not the bound when labels exist: the images int8
# flips are the borderline ones, which it flips both ways (at 224 px on hymenoptera it changed 6 of 153 labels and
# accuracy by 0.0 points: BENCHMARKS.md, Deploy).
INT8_MAX_SCORE_DROP = 0.02
INT8_MIN_AGREEMENT = 0.95
# The bound is claimed only where the check images support it: with labels, the low end of the 95% interval of the
# score's change (parity.score_interval) must be within the bound, so the 6 test images of a small run (0 flips:
# -24 to +24 points) cannot pass a 2-point bound; without labels, the low end of the agreement's Wilson interval must
# reach INT8_MIN_AGREEMENT (500 of 500 agreeing: 99.2%; 6 of 6: 61%). The run's own check images for int8 are val,
# test and a train sample (parity.run_images), up to --check-limit.
SUFFIX = {
    ("onnx", False): "model.onnx",
    ("onnx", True): "model.int8.onnx",
    ("torchscript", False): "model.torchscript.pt",
}


FILE_SUFFIXES = {"onnx": (".onnx",), "torchscript": (".pt", ".pth", ".ts")}  # what serve/app.load_served reads


def default_out(bundle_dir: Path, format: str, int8: bool) -> Path:
    return bundle_dir / SUFFIX[(format, int8)]


def check_out(out: Path, format: str, int8: bool) -> None:
    """Refuse an --out that names another format or holds a file this command did not write (a list, a photo): an
    export replaces only an earlier export, known by its parity report beside it. Nothing is written before."""
    suffixes = FILE_SUFFIXES[format]
    if out.suffix not in suffixes:
        raise ConfigError(
            f"--out '{out}' for --format {format}: name it *{' or *'.join(suffixes)} (e.g. "
            f"'{out.with_suffix(suffixes[0])}'), or give a folder; the file's suffix is what `predict` and `serve` read "
            "its format from."
        )
    written = report_path(out)
    for path in (out, written):
        if path.exists() and not (path.is_file() and _our_report(written)):
            raise ConfigError(
                f"--out '{out}': '{path}' already exists and is not an export transferkit wrote (no parity report of "
                "one beside it), so it is not replaced. Give another --out, or move that file first."
            )


def _our_report(path: Path) -> bool:
    """Whether `path` is a parity report export wrote (a JSON object naming its bundle and format)."""
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and {"bundle", "format"} <= report.keys()


def report_path(out: Path) -> Path:
    """model.onnx -> model.parity.json, model.int8.onnx -> model.int8.parity.json: beside the export."""
    return out.with_name(out.name.rsplit(".", 1)[0] + ".parity.json")


def export(
    bundle: str | os.PathLike,
    format: str = "onnx",
    *,
    int8: bool = False,
    out: str | os.PathLike | None = None,
    check: list[Path] | None = None,
    force: bool = False,
    limit: int = 500,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Export `bundle` (any task: its post-processing is in the graph) and check it against the bundle (fp32
    PyTorch) on real images; returns the parity report, also written beside the export. Raises TransferkitError (and
    keeps no export) when the check fails, unless force."""
    if format not in FORMATS:
        raise unknown_choice("--format", format, FORMATS)
    if int8 and format != "onnx":
        raise ConfigError("--int8 quantizes with onnxruntime: use it with --format onnx.")
    from ..predict import Predictor
    from . import onnx as build
    from .parity import agreement_low, check_images, compare
    from .runner import OnnxRunner

    started = time.perf_counter()
    # The reference: the bundle in fp32 on the CPU (bf16 "auto" would measure bf16's rounding, not the export's).
    reference = Predictor(bundle, device="cpu", precision="fp32")
    meta, task = reference.meta, reference.task
    bundle_dir = Path(meta["_path"])
    out = Path(out) if out else default_out(bundle_dir, format, int8)
    if out.is_dir() or not out.suffix:  # a folder, made if missing ("-o exports/")
        out = out / SUFFIX[(format, int8)]
    check_out(out, format, int8)
    out.parent.mkdir(parents=True, exist_ok=True)
    images = check_images(meta, check, limit, int8=int8)
    say(
        f"Checking against {images.source}"
        + (f" ({len(images.skipped)} unreadable, left out)" if images.skipped else "")
    )
    expected = reference.outputs(images.arrays)

    def measure(outputs) -> dict[str, Any]:
        return compare(expected, outputs, images.labels, images.names, task=task, classes=meta["classes"])

    from ..bundle import load_bundle

    model, _ = load_bundle(bundle_dir)  # a fresh copy in the default memory format, for tracing
    max_drop = INT8_MAX_SCORE_DROP
    report: dict[str, Any] = {
        "bundle": str(bundle_dir),
        "task": task.name,
        "format": format,
        "precision": "int8" if int8 else "fp32",
        "images": {
            "source": images.source,
            "count": len(images.arrays),
            "labelled": images.labels is not None,
            "skipped": [{"key": k, "reason": r} for k, r in images.skipped],
        },
        "bounds": {
            "fp32_agreement": 1.0,
            "fp32_max_abs_diff": FP32_MAX_DIFF,
            **{f"fp32_{alias}": 1.0 if key == "agreement" else FP32_MAX_DIFF for key, alias in _bounded(task)},
            **(
                {
                    f"int8_max_{task.score_name}_drop": max_drop,
                    "int8_min_agreement_without_labels": INT8_MIN_AGREEMENT,
                }
                if int8
                else {}
            ),
        },
        "transferkit_version": meta.get("versions", {}).get("transferkit"),
    }
    fp32_bound = f"100%, {FP32_MAX_DIFF:g}"
    # a full disk: "disk full at <out>, needs N MB", the temporary folder removed. The graph is about the size of the
    # weights, written twice (traced, then stamped with its metadata); int8 adds a quarter of that.
    weights = (bundle_dir / "model.safetensors").stat().st_size
    need = 2 * weights + weights // 4 * int8
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp, disk_full_check(out, need):
        fp32 = Path(tmp) / ("model.onnx" if format == "onnx" else "model.pt")
        if format == "onnx":
            build.write_onnx(model, meta, fp32)
            runner: Any = OnnxRunner(fp32)
        else:
            build.write_torchscript(model, meta, fp32)
            runner = build.TorchScriptRunner(fp32)
        report["fp32"] = measure(runner.probabilities(images.arrays))
        fp32_ok = report["fp32"]["agreement"] == 1.0 and report["fp32"]["max_abs_diff"] <= FP32_MAX_DIFF
        say(
            f"fp32 {format}: {task.agreement_words} {_pct(report['fp32'])}, {task.difference_words} "
            f"{report['fp32']['max_abs_diff']:.2e} (bound: {fp32_bound})" + ("" if fp32_ok else "  FAILED")
        )
        final, ok, why = (
            fp32,
            fp32_ok,
            f"the fp32 export differs from the bundle beyond the bound ({task.agreement_words} 100%, "
            f"{task.difference_words} {FP32_MAX_DIFF:g})",
        )
        if int8 and fp32_ok:
            calibration = images.calibration or images.arrays
            report["int8_calibration"] = (
                f"{len(images.calibration)} train images of the run"
                if images.calibration
                else f"the {len(images.arrays)} check images themselves (no train split found)"
            )
            final = build.quantize_int8(fp32, Path(tmp) / "model.int8.onnx", meta, calibration)
            r = report["int8"] = measure(OnnxRunner(final).probabilities(images.arrays))
            score, label = task.score_name, task.score_label
            labelled = f"{score}_change" in r
            agreeing = r["images"] - r["disagreements"]
            if labelled:
                low, high = r[f"{score}_change_interval"]
                within = -r[f"{score}_change"] <= max_drop  # the measured change
                supported = -low <= max_drop  # and what the sample can vouch for
                interval = f"95% interval {_signed(task, low)} to {_signed(task, high)}"
            else:
                r["agreement_low"] = agreement_low(agreeing, r["images"])
                within = r["agreement"] >= INT8_MIN_AGREEMENT
                supported = r["agreement_low"] >= INT8_MIN_AGREEMENT
                interval = f"95% interval from {r['agreement_low']:.1%}"
            ok = within and supported
            r["bound_supported"] = bool(supported)
            bound = (
                f"{label} drop <= {_drop(task, max_drop)}"
                if labelled
                else f"{task.agreement_words} >= {INT8_MIN_AGREEMENT:.0%}, as the images have no labels"
            )
            change = (
                f", {label} {task.format_score(r[f'{score}_bundle'])} -> {task.format_score(r[f'{score}_export'])} "
                f"({_signed(task, r[f'{score}_change'])}, {interval})"
                if labelled
                else f" ({interval}; no labels: {label} not measured)"
            )
            verdict = "" if ok else "  OUTSIDE THE BOUND" if not within else "  TOO FEW IMAGES FOR THE BOUND"
            say(
                f"int8 onnx: {task.agreement_words} {_pct(r)}, {task.difference_words} {r['max_abs_diff']:.3f}"
                f"{change} (bound: {bound})" + verdict
            )
            if not within:
                why = (
                    f"int8 changes {label} by {_signed(task, r[f'{score}_change'])} on {r['images']} images"
                    if labelled
                    else f"int8 gives the bundle's answer on {_pct(r)} of the images"
                ) + f" ({interval}; bound: {bound})"
            else:
                why = (
                    f"the {r['images']} check images cannot support the bound ({bound}): measured "
                    + (f"{label} change {_signed(task, r[f'{score}_change'])}" if labelled else _pct(r))
                    + f", {interval}. Check on more images: --check with labelled images (class-named folders) "
                    "and a larger --check-limit"
                )
        # --force writes what failed its bound, but never an fp32 graph under the int8 name (int8 needs fp32 parity).
        force = force and not (int8 and not fp32_ok)
        report["accepted"] = bool(ok)
        report["forced"] = bool(force and not ok)
        report["seconds"] = round(time.perf_counter() - started, 2)
        written = report_path(out)
        if ok or force:
            os.replace(final, out)
            report["export"] = str(out)
        report["report"] = str(written)
        written.write_text(json.dumps(report, indent=2))
    if not (ok or force):
        raise TransferkitError(
            f"Export refused: {why}. Nothing was written to '{out}'; the measurements are in "
            f"'{written}'. Pass --force to write it anyway" + (", or export without --int8." if int8 else ".")
        )
    return report


def _bounded(task) -> list[tuple[str, str]]:
    """The bounded keys of the parity report under the task's older names (classification's top1_agreement, ...)."""
    return [(k, a) for k, a in task.parity_aliases.items() if k in ("agreement", "max_abs_diff")]


def _drop(task, value: float) -> str:
    return f"{value:.0%}" if task.proportion else f"{value:g}"


def _signed(task, value: float) -> str:
    return f"{value:+.1%}" if task.proportion else f"{value:+.4f}"


def _pct(r: dict[str, Any]) -> str:
    return f"{r['agreement']:.1%} ({r['images'] - r['disagreements']}/{r['images']})"

"""serve/: the HTTP API on a real bundle and its ONNX export: answers as `predict --json`, 4xx (never 5xx) for bad
uploads, limits, micro-batching, no torch for an ONNX model, a clean exit on SIGTERM; regression and multi-label
models (bundles and exports) answer a value or a set of labels, and the page shows them."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from .deploy_models import (  # noqa: E402
    hymenoptera_bundle,
    hymenoptera_onnx,
    start_server,
    stop_server,
    tiny_bundle,
    tiny_export,
    tiny_images,
    val_images,
)

SLOW = pytest.mark.slow  # the tests on the real-data bundle (one training, ~45 s, shared between files)


@pytest.fixture(scope="module")
def bundle() -> Path:
    return hymenoptera_bundle()


@pytest.fixture(scope="module")
def reference(bundle):
    from transferkit.predict import Predictor

    return Predictor(bundle)  # as `transferkit predict` runs it


@pytest.fixture(scope="module")
def client(bundle):
    from transferkit.serve.app import Limits, create_app

    with TestClient(create_app(bundle, Limits(max_images=4, max_bytes=3 * 2**20, max_pixels=4_000_000))) as c:
        yield c


@pytest.fixture(scope="module")
def onnx_client():
    from transferkit.serve.app import Limits, create_app

    with TestClient(create_app(hymenoptera_onnx(), Limits(max_wait_ms=100))) as c:
        yield c


def _files(paths):
    return [("file", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]


@SLOW
def test_predict_answers_what_predict_json_gives(client, reference):
    paths = val_images(2)
    r = client.post("/predict", files=_files(paths), params={"top_k": 2})
    assert r.status_code == 200
    expected = reference.predict(paths, top_k=2)
    got = r.json()
    assert [g["path"] for g in got] == [p.name for p in paths]
    for g, e in zip(got, expected):
        assert set(g) == {"path", "label", "probability", "top_k"} and g["label"] == e["label"]
        assert abs(g["probability"] - e["probability"]) <= 1e-6  # same model, same decoding
        assert [t["label"] for t in g["top_k"]] == [t["label"] for t in e["top_k"]]


@SLOW
def test_json_base64_and_data_urls(client, reference):
    p = val_images(1)[0]
    data = base64.b64encode(p.read_bytes()).decode()
    r = client.post("/predict", json={"images": [{"name": "x.jpg", "data": data}, "data:image/jpeg;base64," + data]})
    assert r.status_code == 200
    got = r.json()
    assert [g["path"] for g in got] == ["x.jpg", "image-1"]
    assert got[0]["label"] == got[1]["label"] == reference.predict(p)["label"]


@SLOW
def test_onnx_server_agrees_with_the_bundle_and_batches_concurrent_requests(onnx_client, bundle):
    from transferkit.predict import Predictor

    paths = val_images(4)
    expected = Predictor(bundle, precision="fp32").predict(paths)
    batcher = onnx_client.app.state.batcher
    before = batcher.batches
    with ThreadPoolExecutor(8) as pool:  # 8 requests at once, one image each
        responses = list(pool.map(lambda p: onnx_client.post("/predict", files=_files([p])), paths))
    assert [r.status_code for r in responses] == [200] * 8
    for r, e in zip(responses, expected):
        (g,) = r.json()
        assert g["label"] == e["label"] and abs(g["probability"] - e["probability"]) <= 1e-4
    assert batcher.batches - before < 8  # some requests shared a model call (100 ms window)


@SLOW
def test_health_model_docs_and_page(client, bundle):
    assert client.get("/health").json()["status"] == "ok"
    m = client.get("/model").json()
    assert m["task"] == "classification" and m["classes"] == ["ants", "bees"]
    assert m["metrics"]["accuracy"] > 0.5 and m["preprocessing"]["image_size"] == 64 and m["version"]["transferkit"]
    assert m["limits"]["max_images"] == 4
    spec = client.get("/openapi.json").json()
    assert "multipart/form-data" in spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    # one default for how many classes an answer lists: the API's, `predict`'s flag, Predictor's, the ONNX runner's
    import inspect

    from transferkit.config import PredictOptions
    from transferkit.export.runner import OnnxPredictor
    from transferkit.predict import Predictor

    served = {p["name"]: p["schema"].get("default") for p in spec["paths"]["/predict"]["post"]["parameters"]}
    defaults = {inspect.signature(f).parameters["top_k"].default for f in (Predictor.predict, OnnxPredictor.predict)}
    assert defaults == {served["top_k"]} == {PredictOptions().top_k}
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and 'type="file"' in page.text and "getUserMedia" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN, nothing fetched from elsewhere
    assert 'name="viewport"' in page.text  # laid out for phones


def _png(w, h) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (w, h)).save(buf, "PNG")  # 1-bit: a few kB however many pixels
    return buf.getvalue()


@pytest.mark.parametrize(
    "name, body, status, message",
    [
        ("notes.txt", b"hello, not an image", 415, "not an image"),
        ("cut.jpg", None, 422, "truncated"),
        ("empty.jpg", b"", 400, "empty"),
        ("huge.png", _png(2500, 2000), 413, "megapixels"),
        ("big.jpg", b"\xff" * (3 * 2**20 + 1), 413, "MiB"),
    ],
)
@SLOW
def test_bad_uploads_get_a_4xx_with_a_message(client, name, body, status, message):
    if body is None:
        data = val_images(1)[0].read_bytes()
        body = data[: len(data) // 2]
    r = client.post("/predict", files=[("file", (name, body, "image/jpeg"))])
    assert r.status_code == status and message in r.json()["detail"]


@SLOW
def test_request_shape_errors_are_4xx(client):
    p = val_images(1)[0]
    r = client.post("/predict", files=_files([p] * 5))
    assert r.status_code == 413 and "at most 4" in r.json()["detail"]
    assert client.post("/predict", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    assert client.post("/predict", json={"images": ["@@not base64@@"]}).status_code == 400
    assert client.post("/predict", json={"pictures": []}).status_code == 400
    assert client.post("/predict", data={"other": "field"}).status_code in (400, 415)


@SLOW
def test_onnx_server_process_imports_no_torch_and_stops_on_sigterm():
    import httpx

    model = hymenoptera_onnx()
    code = (
        "import sys; from transferkit.serve.app import create_app; create_app(sys.argv[1]); "
        "bad = [m for m in ('torch', 'torchvision', 'timm') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code, str(model)], check=True, timeout=120)
    proc, url = start_server(model)
    try:
        r = httpx.post(url + "/predict", files=_files(val_images(1)), timeout=30)
        assert r.status_code == 200 and r.json()[0]["label"] in ("ants", "bees")
    finally:
        rc = stop_server(proc)
    out = proc.stdout.read()
    assert rc == 0 and out.rstrip().endswith("Stopped."), out  # uvicorn's graceful shutdown, then the app's


def test_serve_refuses_what_it_cannot_serve(tmp_path):
    from .deploy_models import run_cli

    (tmp_path / "m.pt").write_bytes(b"PK")
    code, _, stderr = run_cli("serve", tmp_path / "m.pt")
    assert code == 2 and "trust-torchscript" in stderr and "Traceback" not in stderr
    code, _, stderr = run_cli("serve", tmp_path)
    assert code == 2 and "not a transferkit model" in stderr and "Traceback" not in stderr
    code, _, stderr = run_cli("serve", tmp_path, "--max-images", "0")
    assert code == 2 and "--max-images 0" in stderr


def test_a_port_in_use_or_a_wrong_host_is_said_before_serving(bundle):
    """serve/listen.py: bound before "Serving ... on" is printed; uvicorn would log `[Errno 98]` and exit 3."""
    from transferkit.errors import ConfigError
    from transferkit.serve.listen import listen

    from .deploy_models import run_cli

    taken = listen("127.0.0.1", 0)
    port = taken.getsockname()[1]
    try:
        with pytest.raises(ConfigError, match=f"--port {port} on 127.0.0.1 is in use"):
            listen("127.0.0.1", port)
        with pytest.raises(ConfigError, match="--host '999.1.1.1' is not an address"):
            listen("999.1.1.1", 8000)
        code, out, stderr = run_cli("serve", bundle, "--port", str(port))
        assert code == 2 and "is in use by another program" in stderr and "Serving" not in out, (out, stderr)
    finally:
        taken.close()


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
@pytest.mark.parametrize("task", ["regression", "multilabel"])
def test_serve_answers_a_value_or_a_set_of_labels(task, runtime):
    from transferkit.predict import Predictor
    from transferkit.serve.app import create_app

    from .test_export import _same_answer

    bundle = tiny_bundle(task)
    model = bundle if runtime == "torch" else Path(tiny_export(task)["export"])
    paths = tiny_images(task, 2)
    expected = Predictor(bundle, device="cpu", precision="fp32").predict(paths, top_k=2)
    with TestClient(create_app(model, precision="fp32")) as c:
        r = c.post("/predict", files=_files(paths), params={"top_k": 2})
        assert r.status_code == 200
        for g, e in zip(r.json(), expected):
            _same_answer(task, g, {**e, "path": Path(e["path"]).name})  # the server names uploads by file name
        m = c.get("/model").json()
        page = c.get("/").text
    assert m["task"] == task and m["runtime"].startswith(runtime)
    if task == "regression":  # what it answers, its score in words, and what its answers use
        assert m["outputs"] == "a value: brightness" and m["headline"].startswith("test R² ")
        assert set(m["task_state"]["target_stats"]) == {"mean", "std", "loss"}
    else:
        assert m["outputs"].startswith("3 labels") and m["headline"].startswith("test mAP ")
        assert len(m["task_state"]["thresholds"]) == 3
    assert "r.value" in page and "r.labels" in page and "m.outputs" in page  # the page shows each kind of answer

"""Similarity: exact search and FAISS agree, near-duplicate groups do not chain, `similar` and `embed` from a folder,
the commands' output formats."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_folder
from transferkit.core.similar import SimilarityIndex, duplicate_groups, duplicate_pairs, groups_of, normalise
from transferkit.errors import ConfigError, DataError


def clustered(n=300, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (10, dim))
    return (centres[rng.integers(0, 10, n)] + rng.normal(0, 0.5, (n, dim))).astype(np.float32)


def test_exact_search_is_brute_force_cosine():
    x = clustered()
    index = SimilarityIndex(x, backend="exact")
    sims, idx = index.search(x[:5], 7)
    full = normalise(x[:5]) @ normalise(x).T
    np.testing.assert_array_equal(idx, np.argsort(-full, axis=1)[:, :7])
    np.testing.assert_allclose(sims, np.sort(full, axis=1)[:, ::-1][:, :7], rtol=1e-5)
    assert idx[0, 0] == 0 and sims[0, 0] == pytest.approx(1.0, abs=1e-5)
    hits = SimilarityIndex(x, [f"k{i}" for i in range(len(x))]).query(x[3], 2)
    assert hits[0][0] == "k3"


def test_faiss_backend_finds_what_exact_finds():
    pytest.importorskip("faiss")
    x = clustered(2000, 64)
    exact = SimilarityIndex(x, backend="exact").search(x[:50], 10)[1]
    approx = SimilarityIndex(x, backend="faiss").search(x[:50], 10)[1]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, approx)])
    assert recall > 0.9


def test_neighbours_leave_each_row_out_and_zero_rows_are_similar_to_nothing():
    x = clustered(50)
    x[7] = 0
    sims, idx = SimilarityIndex(x).neighbours(3)
    assert idx.shape == (50, 3) and not (idx == np.arange(50)[:, None]).any()
    assert (SimilarityIndex(x).search(x[7], 3)[0] == 0).all()


def test_duplicate_pairs_and_groups_without_chaining():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (100, 64)).astype(np.float32)
    x[10] = x[3] + rng.normal(0, 0.01, 64)  # a near copy
    x[11] = x[3] * 2  # the same direction: cosine 1
    groups = duplicate_groups(x, 0.95)
    assert groups == [[3, 10, 11]]
    assert all(s >= 0.95 for *_, s in duplicate_pairs(x, 0.95))
    # a chain a~b, b~c, c~d: leader groups never put a and d together
    chain = groups_of(4, [(0, 1, 0.95), (1, 2, 0.95), (2, 3, 0.95)])
    assert all(not {0, 3} <= set(g) for g in chain) and sum(len(g) for g in chain) >= 3


def test_similar_from_a_folder_and_an_outside_image(tmp_path):
    from transferkit.core.similar import similar

    root = write_folder(tmp_path / "data", per_class=5)
    query = tmp_path / "query.png"
    shutil.copy(root / "green" / "green_02.png", query)
    hits = similar(root, query, k=3, image_size=32)
    assert len(hits) == 3 and hits[0].key.endswith("green_02.png") and hits[0].similarity > 0.999
    assert hits[0].label == "green" and hits[0].similarity >= hits[1].similarity >= hits[2].similarity
    inside = similar(root, str(root / "red" / "red_01.png"), k=2, image_size=32)
    assert inside[0].key.endswith("red_01.png")


def test_embed_and_similar_commands(tmp_path, monkeypatch):
    import os

    from typer.testing import CliRunner

    from transferkit.cli.app import app

    root = write_folder(tmp_path / "data", per_class=4)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("mine\n")
    r = CliRunner().invoke(app, ["embed", "data", "--out", "afile", "--image-size", "32"])
    assert isinstance(r.exception, ConfigError) and "is a file" in str(r.exception)  # main() prints it, exit 2
    assert (tmp_path / "afile").read_text() == "mine\n"
    assert not (Path(os.environ["TRANSFERKIT_CACHE"]) / "store").exists()  # refused before any image was read
    # DATA as typed, relative to here: the keys are absolute paths, the labels still the class folders'
    r = CliRunner().invoke(app, ["embed", "data", "--out", "emb", "--image-size", "32", "--json"])
    assert r.exit_code == 0, r.output
    x = np.load(tmp_path / "emb" / "features.npy")
    rows = list(csv.DictReader(open(tmp_path / "emb" / "keys.csv")))
    assert x.shape[0] == len(rows) == 12 and x.dtype == np.float32
    assert rows[0]["row"] == "0" and Path(rows[0]["key"]).is_absolute()
    assert all(row["label"] == Path(row["key"]).parent.name for row in rows)
    r = CliRunner().invoke(
        app, ["similar", "data", str(root / "red" / "red_00.png"), "-k", "2", "--image-size", "32", "--json"]
    )
    assert r.exit_code == 0, r.output
    hits = json.loads(r.output.strip().splitlines()[-1])
    assert len(hits) == 2 and hits[0]["key"].endswith("red_00.png") and set(hits[0]) == {"key", "similarity", "label"}
    assert hits[0]["label"] == "red"
    r = CliRunner().invoke(app, ["similar", str(root), str(tmp_path / "nope.png")])
    assert isinstance(r.exception, DataError) and "not a file" in str(r.exception)  # main() prints it, exit 2


def test_review_command_writes_its_files_and_never_overwrites_others(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from tests.conftest import files_state
    from transferkit.cli.app import app

    root = write_folder(tmp_path / "colours", per_class=6)
    shutil.copy(root / "red" / "red_00.png", root / "blue" / "red_filed_as_blue.png")
    before = files_state(root)
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["review", str(root), "--image-size", "32", "--k", "3", "--fix-out", "cleaned.csv"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "review-colours" / "review.json").exists() and (
        tmp_path / "review-colours" / "issues.csv"
    ).exists()
    assert "conflict" in r.output and "cleaned.csv" in r.output
    assert (tmp_path / "cleaned.csv").read_text().startswith("# written by transferkit review")
    assert files_state(root) == before
    r = CliRunner().invoke(app, ["review", str(root), "--image-size", "32", "--k", "3", "--json"])
    d = json.loads(r.output.strip().splitlines()[-1])
    planted = [it for it in d["items"] if it["key"].endswith("red_filed_as_blue.png")]
    assert d["task"] == "classification" and "conflict" in {it["kind"] for it in planted}
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "review.json").write_text("{}")
    r = CliRunner().invoke(app, ["review", str(root), "--image-size", "32", "--out", "mine"])
    assert isinstance(r.exception, DataError) and "not written by transferkit review" in str(r.exception)
    assert (tmp_path / "mine" / "review.json").read_text() == "{}"


def test_blocks_give_the_same_answers_as_one_product(monkeypatch):
    import transferkit.core.similar as similar

    x = clustered(500, 16)
    x[400] = x[7] * 3  # a duplicate in another block
    whole = (similar.duplicate_pairs(x, 0.9), similar.SimilarityIndex(x).neighbours(4))
    monkeypatch.setattr(similar, "BLOCK_CELLS", 500 * 16)  # 16 rows per block: 32 blocks
    assert similar.block_rows(500) == 16
    pairs = similar.duplicate_pairs(x, 0.9)
    assert sorted(pairs) == sorted(whole[0]) and (7, 400) in {(i, j) for i, j, _ in pairs}
    sims, idx = similar.SimilarityIndex(x).neighbours(4)
    np.testing.assert_array_equal(idx, whole[1][1])
    np.testing.assert_allclose(sims, whole[1][0], rtol=1e-6)


def test_a_list_file_or_an_hdf5_as_the_query_is_refused_before_any_extraction(tmp_path):
    """A list file holds many images: read as data, its first one used to be searched with, unsaid."""
    import os

    from typer.testing import CliRunner

    from transferkit.cli.app import app
    from transferkit.core.similar import similar

    root = write_folder(tmp_path / "data", per_class=2)
    listed = tmp_path / "houses.csv"
    listed.write_text(f"path,label\n{root / 'red' / 'red_00.png'},red\n")
    h5 = tmp_path / "cats.h5"
    h5.write_bytes(b"")
    for query, what in ((listed, "a list file"), (h5, "an HDF5 file"), (tmp_path / "q.txt", "a list file")):
        query.touch()
        with pytest.raises(DataError, match=f"Query image '.*{query.name}' is {what}, not an image"):
            similar(root, query, k=2, image_size=32)
    r = CliRunner().invoke(app, ["similar", str(root), str(listed), "-k", "2", "--image-size", "32"])
    assert isinstance(r.exception, DataError) and "is a list file, not an image" in str(r.exception)  # exit 2
    assert not (Path(os.environ["TRANSFERKIT_CACHE"]) / "store").exists()  # refused before any image was read
    inside = similar(root, str(root / "red" / "red_00.png"), k=1, image_size=32)  # an image still is a query
    assert inside[0].key.endswith("red_00.png")


@pytest.mark.parametrize(
    "given, words",
    [
        ({"k": -1}, r"similar\(k=-1\): give how many neighbours"),
        ({"k": 0}, r"similar\(k=0\)"),
        ({"backend": "annoy"}, "Unknown backend 'annoy'"),
        ({"image_size": 5}, "--image-size 5: give 16 to"),
    ],
)
def test_similar_and_embed_refuse_bad_options_by_name_before_any_work(tmp_path, given, words):
    """k=-1 was NumPy's 'negative dimensions are not allowed'; backend a plain ValueError; image_size=5 ran."""
    import transferkit
    from transferkit.errors import ConfigError

    with pytest.raises(ConfigError, match=words):
        transferkit.similar(tmp_path / "nothing", "x.jpg", **given)
    with pytest.raises(ConfigError, match="--feature-precision 'fp8'"):
        transferkit.embed(tmp_path / "nothing", precision="fp8")

"""The feature store: by image identity, computed once, safe with two writers, a crash, a damaged file or no disk."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from transferkit.config import cache_home
from transferkit.core.store import INDEX, MATRIX, FeatureStore, folder_name, store_root

F = 8
CONFIG = {"weights": "efficientnet_lite0", "size": 32, "crop": 1.0, "mean": [0.5] * 3, "precision": "fp32"}
REPO = Path(__file__).resolve().parents[1]


def feats(ids) -> np.ndarray:
    """The 'features' of an id 'img-K': K + j/8 in column j, so a row read back says which image it belongs to."""
    return np.array([[int(k.split("-")[1]) + j / F for j in range(F)] for k in ids], np.float32)


class Counter:
    """A compute function that answers from `feats` and remembers what it was asked."""

    def __init__(self, ids):
        self.ids, self.calls = list(ids), []

    def __call__(self, idx):
        self.calls.append(list(idx))
        return feats([self.ids[i] for i in idx])


def get(store, ids):
    compute = Counter(ids)
    out, n = store.get_or_compute(ids, compute)
    return out, n, compute.calls


def names(*ks):
    return [f"img-{k}" for k in ks]


def test_order_and_duplicates(tmp_path):
    store = FeatureStore(tmp_path, CONFIG)
    assert store.dim is None and len(store) == 0 and not store.path.exists()  # nothing made until a write
    ids = names(5, 3, 5, 9, 3, 1)
    out, n, calls = get(store, ids)
    assert calls == [[0, 1, 3, 5]]  # the first place of each distinct id, once
    assert n == 4 and out.dtype == np.float32
    np.testing.assert_array_equal(out, feats(ids))
    assert len(store) == 4 and store.dim == F
    assert json.loads((store.path / "config.json").read_text()) == CONFIG


def test_a_second_call_computes_nothing_and_new_ids_only_are_appended(tmp_path):
    store = FeatureStore(tmp_path, CONFIG)
    get(store, names(*range(10)))
    out, n, calls = get(store, names(*range(10)))
    assert (n, calls) == (0, [])
    np.testing.assert_array_equal(out, feats(names(*range(10))))

    before = store.lookup(names(*range(10)))
    ids = names(12, 3, 11, 0, 12)  # two new among known ones, in another order, one repeated
    out, n, calls = get(store, ids)
    assert n == 2 and calls == [[0, 2]]
    np.testing.assert_array_equal(out, feats(ids))
    assert len(store) == 12
    np.testing.assert_array_equal(store.lookup(names(*range(10))), before)  # known rows did not move
    np.testing.assert_array_equal(store.lookup(names(11, 12, 99)), [11, 10, -1])


def test_append_keeps_the_rows_of_known_ids(tmp_path):
    store = FeatureStore(tmp_path, CONFIG)
    np.testing.assert_array_equal(store.append(names(1, 2, 1), feats(names(1, 2, 1))), [0, 1, 0])
    rows = store.append(names(3, 2), feats(names(3, 2)) + 100)  # img-2 is known: its row and values stay
    np.testing.assert_array_equal(rows, [2, 1])
    np.testing.assert_array_equal(store.read(rows), np.vstack([feats(names(3)) + 100, feats(names(2))]))
    with pytest.raises(ValueError, match="holds rows 0 to 2"):
        store.read([3])


def test_persists_across_instances_and_configs_are_apart(tmp_path):
    root = store_root(None)
    assert root == cache_home(None) / "store" and str(tmp_path) in str(root)  # the test's isolated cache
    get(FeatureStore(root, CONFIG), names(1, 2, 3))
    again = FeatureStore(root, dict(reversed(CONFIG.items())))  # the same config, keys in another order
    assert again.path.name == folder_name(CONFIG) and len(again) == 3
    out, n, _ = get(again, names(3, 2, 1))
    assert n == 0
    np.testing.assert_array_equal(out, feats(names(3, 2, 1)))
    other = FeatureStore(root, {**CONFIG, "precision": "bf16"})
    assert other.path != again.path and get(other, names(1, 2, 3))[1] == 3


def test_a_different_width_is_refused(tmp_path):
    store = FeatureStore(tmp_path, CONFIG)
    get(store, names(1, 2))
    with pytest.raises(ValueError, match="6 columns .* rows of 8"):
        store.get_or_compute(names(1, 3), lambda idx: np.zeros((len(idx), 6)))
    with pytest.raises(ValueError, match="6 columns .* rows of 8"):
        store.append(names(4), np.zeros((1, 6)))
    with pytest.raises(ValueError, match=r"shape \(3, 8\); expected \(1, F\)"):
        store.get_or_compute(names(1, 5), lambda idx: np.zeros((3, F)))
    assert len(store) == 2


# A writer in its own process: waits until `ready` writers are there, then appends its batches with pauses between.
WRITER = """
import json, sys, time
from pathlib import Path
import numpy as np
from transferkit.core.store import FeatureStore
root, me, ready, batches = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
store = FeatureStore(root, json.loads(sys.argv[5]))
(root / (me + ".ready")).touch()
while len(list(root.glob("*.ready"))) < ready:
    time.sleep(0.002)
for ids in batches:
    store.append(ids, np.array([[int(k.split("-")[1]) + j / 8 for j in range(8)] for k in ids], np.float32))
    time.sleep(0.005)
"""


def writer(root, me, batches, ready=1, env=None):
    args = [sys.executable, "-c", WRITER, str(root), me, str(ready), json.dumps(batches), json.dumps(CONFIG)]
    return subprocess.Popen(args, cwd=REPO, env={**os.environ, **(env or {})}, stderr=subprocess.PIPE, text=True)


def test_two_processes_appending_at_once_lose_nothing(tmp_path):
    shared = names(*range(1000, 1020))  # both write these first, racing: each must be stored once
    own = {w: names(*range(base, base + 200)) for w, base in (("a", 0), ("b", 500))}
    procs = [
        writer(tmp_path, w, [shared[:10], shared[10:]] + [ids[i : i + 10] for i in range(0, 200, 10)], ready=2)
        for w, ids in own.items()
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    store = FeatureStore(tmp_path, CONFIG)
    everything = shared + own["a"] + own["b"]
    assert len(store) == 420
    assert (store.path / MATRIX).stat().st_size == 420 * F * 4  # no row written twice, none lost
    rows = store.lookup(everything)
    assert sorted(rows) == list(range(420))
    np.testing.assert_array_equal(store.read(rows), feats(everything))
    owner = np.empty(420, "U1")
    owner[rows[20:220]], owner[rows[220:]] = "a", "b"
    assert np.count_nonzero(owner[21:] != owner[20:-1]) >= 2  # their batches did interleave
    assert get(store, everything)[1] == 0


def test_a_crash_between_the_bytes_and_the_commit_leaves_only_unused_rows(tmp_path):
    store = FeatureStore(tmp_path, CONFIG)
    get(store, names(1, 2))
    p = writer(tmp_path, "w", [names(3, 4, 5)], env={"TRANSFERKIT_FAULT": MATRIX})
    assert p.wait(timeout=60) == -9  # killed after fsync, before the index commit
    assert (store.path / MATRIX).stat().st_size == 5 * F * 4 and len(store) == 2
    out, n, _ = get(store, names(5, 1, 3))
    assert n == 2
    np.testing.assert_array_equal(out, feats(names(5, 1, 3)))
    np.testing.assert_array_equal(store.lookup(names(5, 3)), [5, 6])  # after the orphans, not over them


def test_a_cut_short_matrix_and_a_damaged_row_are_computed_again(tmp_path):
    store = FeatureStore(tmp_path, CONFIG)
    ids = names(*range(10))
    get(store, ids)
    matrix = store.path / MATRIX
    with open(matrix, "r+b") as f:  # row 3 overwritten with other finite numbers: only its crc32 can tell
        f.seek(3 * F * 4)
        f.write(np.full(F, 7.0, np.float32).tobytes())
        f.truncate(int(6.5 * F * 4))  # rows 0-5 whole, half of row 6, rows 7-9 gone
    store = FeatureStore(tmp_path, CONFIG)
    np.testing.assert_array_equal(store.lookup(ids), [0, 1, 2, 3, 4, 5, -1, -1, -1, -1])
    out, n, calls = get(store, ids)
    assert n == 5 and calls == [[3, 6, 7, 8, 9]]
    np.testing.assert_array_equal(out, feats(ids))
    np.testing.assert_array_equal(store.lookup(names(3, 6)), [10, 11])  # re-appended past every indexed row
    assert get(store, ids)[1] == 0


def test_rows_that_are_not_finite_are_not_stored(tmp_path):
    store = FeatureStore(tmp_path, CONFIG)
    bad = feats(names(1, 2))
    bad[1, 3] = np.nan
    np.testing.assert_array_equal(store.append(names(1, 2), bad), [0, -1])
    assert get(store, names(1, 2))[1] == 1


def test_a_cache_that_cannot_be_created_still_returns_features(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    store = FeatureStore(tmp_path / "a-file" / "store", CONFIG)
    for _ in range(2):
        out, n, _ = get(store, names(4, 2, 4))
        assert n == 2
        np.testing.assert_array_equal(out, feats(names(4, 2, 4)))
    with pytest.raises(OSError):  # append itself says so; get_or_compute does not
        store.append(names(1), feats(names(1)))


def test_a_full_disk_still_returns_features(tmp_path):
    get(FeatureStore(tmp_path, CONFIG), names(1, 2))
    size = (tmp_path / folder_name(CONFIG) / MATRIX).stat().st_size
    # A file size limit a little past the matrix: the next append's bytes fail half way (EFBIG), as on a full disk.
    code = (
        "import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({size + 12}, {size + 12}))\n"
        "from pathlib import Path; import numpy as np\n"
        "from transferkit.core.store import FeatureStore\n"
        f"store = FeatureStore(Path({str(tmp_path)!r}), {CONFIG!r})\n"
        "ids = ['img-1', 'img-3', 'img-4']\n"
        "out, n = store.get_or_compute(ids, lambda idx: np.full((len(idx), 8), 3.0, np.float32))\n"
        "assert n == 2 and out.shape == (3, 8) and (out[1:] == 3).all() and out[0, 1] == 1 + 1 / 8, (n, out)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    store = FeatureStore(tmp_path, CONFIG)
    assert len(store) == 2 and get(store, names(1, 2, 3))[1] == 1  # nothing stored; the old rows intact


def as_another_user(check) -> None:
    """Run `check()` where the folder's permissions bind: here, or (for root, whom they do not bind) in a forked
    child that has become `nobody`."""
    if os.geteuid() != 0:
        check()
        return
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            check()
            code = 0
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0, "the check failed as user nobody (traceback above)"


def test_a_read_only_store_reads_what_it_has_and_computes_the_rest():
    base = Path(tempfile.mkdtemp(prefix="transferkit-ro-"))  # not tmp_path: `nobody` must be able to reach it
    os.chmod(base, 0o755)
    store = FeatureStore(base, CONFIG)
    try:
        get(store, names(1, 2, 3))
        store.close()  # the last connection folds the WAL back into index.sqlite and removes -wal and -shm
        assert sorted(p.name for p in store.path.iterdir()) == ["config.json", MATRIX, INDEX, "lock"]
        for p in store.path.iterdir():
            os.chmod(p, 0o444)
        os.chmod(store.path, 0o555)

        def check():
            ro = FeatureStore(base, CONFIG)
            assert ro.dim == F and len(ro) == 3
            for _ in range(2):
                out, n, calls = get(ro, names(3, 7, 1))
                assert n == 1 and calls == [[1]]
                np.testing.assert_array_equal(out, feats(names(3, 7, 1)))

        as_another_user(check)
        assert sorted(p.name for p in store.path.iterdir()) == ["config.json", MATRIX, INDEX, "lock"]
    finally:
        os.chmod(store.path, stat.S_IRWXU)
        shutil.rmtree(base)


def test_lookup_of_50000_ids_is_quick(tmp_path):
    store = FeatureStore(tmp_path, CONFIG)
    ids = names(*range(50_000))
    store.append(ids, np.ones((len(ids), 2), np.float32))
    t = time.perf_counter()
    rows = store.lookup(ids[::-1])
    took = time.perf_counter() - t
    np.testing.assert_array_equal(rows, np.arange(50_000)[::-1])
    assert took < 1.0, f"lookup of 50,000 ids took {took:.2f} s"

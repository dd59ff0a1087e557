"""No way out (issue 11): names that become paths or C text are checked or escaped, printed shell hints
are quoted, FoldedModel files and CIFAR batches are read without trusting them."""
import dataclasses
import io
import json
import os
import pickle
import shlex
import subprocess

import numpy as np
import pytest

from codegen import generate
from ebnn_core import ArchSpec, ConvBlock, DenseBlock, FoldedModel
from ebnn_core.data import DataError, load_cifar10
from ebnn_core.folded import fold
from ebnn_core.nn import BNN
from ebnn_core.safe import c_comment, safe_name
from ebnn_core.testing import randomize

from .conftest import run_cli
from .test_codegen import STRICT
from .test_resources import device

INJECTED = "x */ int injected = 1; /*"
SPEC = ArchSpec((1, 12, 12), 4, (ConvBlock(5, 3, pool=2), DenseBlock(9)))


@pytest.fixture(scope="module")
def fm():
    return fold(randomize(BNN(SPEC), 7), meta={"arch_name": "good"})


def one_error_line(r, needle: str) -> str:
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def files_under(path) -> list:
    return sorted(p for p in path.rglob("*") if p.is_file())


# ---- names ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["conv-1", "mnist-curie-ram15-lat1000", "a.b_c-9", "x" * 64])
def test_safe_names_pass(value):
    assert safe_name(value, "k") == value


@pytest.mark.parametrize("value", ["", "..", "../x", "a/b", "a..b", ".hidden", "-rf", "x" * 65, "a b", "a\nb",
                                   "a\\b", INJECTED, None, 3, ["a"]])
def test_unsafe_names_are_refused_naming_key_and_value(value):
    with pytest.raises(ValueError, match=r"^meta\.arch_name=.*must be") as e:
        safe_name(value, "meta.arch_name")
    assert "\n" not in str(e.value)


def test_crafted_arch_name_in_folded_file_cannot_leave_artifacts(tmp_path, fm):
    art = tmp_path / "a" / "art"
    bad = dataclasses.replace(fm, meta={"arch_name": "../../..x"})
    p = bad.save(tmp_path / "crafted.npz")
    r = run_cli("codegen", f"folded={p}", f"paths.artifacts={art}")
    one_error_line(r, f"error: folded={p}: meta.arch_name=../../..x: must be")
    assert files_under(tmp_path) == [p] and not (art / "c").exists()


def test_arch_name_from_config_cannot_leave_artifacts(tmp_path, fm):
    art = tmp_path / "art"
    fm.save(tmp_path / "evil" / "folded.npz")  # art/train/../../evil/folded.npz; art/c/../../evil is the same
    r = run_cli("codegen", "arch.name=../../evil", f"paths.artifacts={art}")
    one_error_line(r, "error: arch.name=../../evil: must be")
    assert not (tmp_path / "evil" / "model.c").exists() and not art.exists()


def test_default_output_folder_must_resolve_inside_artifacts(tmp_path, fm):
    art, elsewhere = tmp_path / "art", tmp_path / "elsewhere"
    elsewhere.mkdir()
    art.mkdir()
    (art / "c").symlink_to(elsewhere)
    p = fm.save(tmp_path / "m.npz")
    one_error_line(run_cli("codegen", f"folded={p}", f"paths.artifacts={art}"),
                   f"error: paths.artifacts={art}: {art / 'c' / 'good'} resolves to {elsewhere / 'good'}, outside it")
    assert not os.listdir(elsewhere)
    r = run_cli("codegen", f"folded={p}", f"paths.artifacts={art}", f"out={art / 'c' / 'good'}")  # explicit: allowed
    assert r.returncode == 0 and (elsewhere / "good" / "model.c").is_file(), r.stderr


def test_device_name_with_c_text_is_refused_by_the_cli(tmp_path, fm):
    p = fm.save(tmp_path / "m.npz")
    r = run_cli("codegen", f"folded={p}", f"device.name='{INJECTED}'", f"out={tmp_path / 'out'}")
    one_error_line(r, f"error: device.name={INJECTED}: must be")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, needle", [
    (["study_name=../../escape"], "error: study_name=../../escape: must be"),
    (["study_name='a/b'"], "error: study_name=a/b: must be"),
    (["device.name=../../escape"], "error: device.name=../../escape: must be"),
    (["dataset.name=../../escape"], "error: dataset.name=../../escape: must be"),
])
def test_study_folder_names_are_checked_before_any_work(tmp_path, args, needle):
    art = tmp_path / "a" / "b" / "art"  # art/search/../../escape stays inside tmp_path
    # ram_kb=0.5 fits nothing: without the name check the stage fails later, on the budget
    r = run_cli("search", "profile=smoke", "ram_kb=0.5", f"paths.artifacts={art}", *args)
    one_error_line(r, needle)
    assert not any(tmp_path.rglob("*escape*")) and not art.exists()


# ---- C text -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [INJECTED, "*/*/", "/*/", "a\nb */ c", "x\\", "a??/", "\x00\x1b[2J é"])
def test_c_comment_cannot_end_or_open_a_comment(text):
    s = c_comment(text)
    assert "*/" not in s and "/*" not in s and "\\" not in s and s.isascii() and s.isprintable()


def test_device_name_cannot_inject_c(tmp_path, fm):
    dev = dataclasses.replace(device("host"), name=INJECTED)
    out = generate(fm, dev, tmp_path / "c")
    for f in out.rglob("*"):
        if f.is_file() and f.suffix in (".c", ".h", ".ino", ""):
            assert INJECTED not in f.read_text(), f
    assert "x * / int injected = 1; / *" in (out / "model.c").read_text()
    r = subprocess.run(["gcc", *STRICT, "-I.", "-c", "model.c", "-o", "model.o"], cwd=out, capture_output=True,
                       text=True)
    assert r.returncode == 0 and not r.stderr, r.stderr
    syms = subprocess.run(["nm", "model.o"], cwd=out, capture_output=True, text=True, check=True).stdout
    assert "ebnn_predict" in syms and "injected" not in syms


def test_layer_kind_cannot_name_c_identifiers(tmp_path, fm):
    bad = dataclasses.replace(fm, layers=[dataclasses.replace(fm.layers[0], kind="x; int injected; ebnn_conv")]
                              + fm.layers[1:])
    with pytest.raises(ValueError, match="layer 0: kind"):
        generate(bad, device("host"), tmp_path / "c")


# ---- out= and the printed hint ----------------------------------------------------------------------

def test_build_hint_is_shell_quoted(tmp_path, fm):
    p = fm.save(tmp_path / "m.npz")
    out = tmp_path / "o u t" / "$(touch pwned)"
    r = run_cli("codegen", f"folded={p}", "device=host", f"out='{out}'")
    assert r.returncode == 0, r.stderr
    hint = next(ln for ln in r.stdout.splitlines() if ln.startswith("build: "))
    assert hint == f"build: cd {shlex.quote(str(out))} && make run"
    (tmp_path / "cwd").mkdir()
    cmd = hint[len("build: "):].replace(" && make run", " && pwd")
    got = subprocess.run(["bash", "-c", cmd], cwd=tmp_path / "cwd", capture_output=True, text=True, check=True)
    assert got.stdout.strip() == str(out) and not any(tmp_path.rglob("pwned"))


@pytest.mark.parametrize("where", ["under-file", "long-name", "proc"])
def test_out_that_cannot_be_written_is_one_line_and_leaves_nothing(tmp_path, fm, where):
    p = fm.save(tmp_path / "m.npz")
    (tmp_path / "afile").write_text("x")
    out = {"under-file": tmp_path / "afile" / "sub",  # a folder under a file
           "long-name": tmp_path / "new" / ("x" * 300),  # ENAMETOOLONG after "new" would be made
           "proc": "/proc/ebnn-no-such/out"}[where]  # not writable, even for root
    r = run_cli("codegen", f"folded={p}", f"out={out}")
    one_error_line(r, f"error: out={out}: cannot create or write")
    assert sorted(os.listdir(tmp_path)) == ["afile", "m.npz"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_in_read_only_folder(tmp_path, fm):
    p = fm.save(tmp_path / "m.npz")
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    r = run_cli("codegen", f"folded={p}", f"out={ro / 'out'}")
    one_error_line(r, f"error: out={ro / 'out'}: cannot create or write")
    assert not os.listdir(ro)


# ---- FoldedModel files ------------------------------------------------------------------------------

def _arrays(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _header(a: dict) -> dict:
    return json.loads(bytes(a["header"]).decode())


def _with(a: dict, hdr: dict | None = None, **arrays) -> dict:
    a = {**a, **arrays}
    if hdr is not None:
        a["header"] = np.frombuffer(json.dumps(hdr).encode(), dtype=np.uint8)
    return a


def _edit_header(a, **kv):
    return _with(a, {**_header(a), **kv})


def _edit_layer(a, i, **kv):
    h = _header(a)
    h["layers"][i] = {**h["layers"][i], **kv}
    return _with(a, h)


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


# name -> (how to write the file from a good one's bytes and arrays, the message expected)
BAD_FILES = {
    "empty": (lambda raw, a, tmp: b"", "not a FoldedModel file"),
    "truncated": (lambda raw, a, tmp: raw[:len(raw) // 2], "not a FoldedModel file"),
    "text": (lambda raw, a, tmp: b"hello, not a model\n", "not a FoldedModel file"),
    "npy": (lambda raw, a, tmp: _npy(np.arange(5)), "not a FoldedModel file"),
    "header-not-json": (lambda raw, a, tmp: _npz(_with(a, header=np.frombuffer(b"{nope", dtype=np.uint8))),
                        "not a FoldedModel file"),
    "pickled-header": (lambda raw, a, tmp: _npz(_with(a, header=np.array([_Evil(tmp / "pwned")], dtype=object)),
                                                allow_pickle=True), "header: a object array"),
    "meta-not-object": (lambda raw, a, tmp: _npz(_edit_header(a, meta=["arch_name", "x"])),
                        "meta is a JSON list, not an object"),
    "format": (lambda raw, a, tmp: _npz(_edit_header(a, format=2)), "header format 2 is not 1"),
    "arch": (lambda raw, a, tmp: _npz(_edit_header(a, arch={"classes": 4})), "arch: ArchSpec is missing key"),
    "arch-hash": (lambda raw, a, tmp: _npz(_edit_header(a, arch_hash="0" * 12)), "arch_hash '000000000000' is not"),
    "layer-count": (lambda raw, a, tmp: _npz(_edit_header(a, layers=_header(a)["layers"][:2])),
                    "layers: 2 entries, the ArchSpec has 3 layers"),
    "kind": (lambda raw, a, tmp: _npz(_edit_layer(a, 0, kind="dense")), "layer 0 (conv): header says"),
    "n-bits": (lambda raw, a, tmp: _npz(_edit_layer(a, 1, n_weight_bits=7)), "layer 1 (dense): header says"),
    "weights-length": (lambda raw, a, tmp: _npz(_with(a, l1_weights=a["l1_weights"][:-1])),
                       "l1_weights: a uint32 array of shape"),
    "weights-2d": (lambda raw, a, tmp: _npz(_with(a, l1_weights=a["l1_weights"].reshape(1, -1))),
                   "l1_weights: a uint32 array of shape (1,"),
    "weights-float": (lambda raw, a, tmp: _npz(_with(a, l0_weights=a["l0_weights"].astype(np.float64))),
                      "l0_weights: a float64 array"),
    "threshold-count": (lambda raw, a, tmp: _npz(_with(a, l0_threshold=a["l0_threshold"][:-1])),
                        "l0_threshold: a int32 array of shape (4,), expected 5 integers"),
    "threshold-range": (lambda raw, a, tmp: _npz(_with(a, l0_threshold=np.full_like(a["l0_threshold"], 10**6))),
                        "layer 0 (conv): thresholds outside the sum range"),
    "flip": (lambda raw, a, tmp: _npz(_with(a, l1_flip=np.full_like(a["l1_flip"], 2))), "flips must be 0/1"),
    "missing-array": (lambda raw, a, tmp: _npz({k: v for k, v in a.items() if k != "l2_scale"}),
                      "There is no item named 'l2_scale.npy'"),
    "score-overflow": (lambda raw, a, tmp: _npz(_with(a, l2_scale=np.full_like(a["l2_scale"], 2**31 - 1))),
                       "layer 2 (classifier): scale and offset let a score overflow int32"),
}


def _npz(arrays: dict, allow_pickle=False) -> bytes:
    buf = io.BytesIO()
    (np.savez if allow_pickle else np.savez_compressed)(buf, **arrays)
    return buf.getvalue()


def _npy(a) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


@pytest.fixture
def bad_file(tmp_path, fm, request):
    good = fm.save(tmp_path / "good.npz")
    make, needle = BAD_FILES[request.param]
    p = tmp_path / f"{request.param}.npz"
    p.write_bytes(make(good.read_bytes(), _arrays(good), tmp_path))
    return p, needle


@pytest.mark.parametrize("bad_file", sorted(BAD_FILES), indirect=True)
def test_bad_folded_file_is_a_clear_value_error(tmp_path, bad_file):
    p, needle = bad_file
    with pytest.raises(ValueError) as e:
        FoldedModel.load(p)
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("bad_file", ["empty", "truncated", "meta-not-object", "weights-length", "threshold-count",
                                      "kind"], indirect=True)
@pytest.mark.parametrize("with_out", [False, True])
def test_bad_folded_file_in_codegen_is_one_line_and_creates_nothing(tmp_path, bad_file, with_out):
    p, needle = bad_file
    art, out = tmp_path / "art", tmp_path / "out"
    r = run_cli("codegen", f"folded={p}", f"paths.artifacts={art}", *([f"out={out}"] if with_out else []))
    line = one_error_line(r, f"error: folded={p}: ")
    assert needle in line
    assert not art.exists() and not out.exists()


# ---- CIFAR batches ----------------------------------------------------------------------------------

def _cifar(root, batch=None, n=20, protocol=4):
    """A cifar-10-batches-py folder of n images per batch; `batch` (bytes) replaces data_batch_1."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d = {b"batch_label": name.encode(), b"labels": [int(v) for v in rng.integers(0, 10, n)],
             b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"f.png"] * n}
        (root / name).write_bytes(pickle.dumps(d, protocol=protocol))
    if batch is not None:
        (root / "data_batch_1").write_bytes(batch)
    return root


def test_cifar_batch_cannot_run_code(tmp_path):
    pwned = tmp_path / "pwned"
    root = _cifar(tmp_path / "cifar", pickle.dumps({b"data": _Evil(pwned), b"labels": [0]}))
    with pytest.raises(DataError, match=r"data_batch_1 is not a CIFAR-10 python batch .*refused global "
                                        r"(posix|os)\.system"):
        load_cifar10(root)
    assert not pwned.exists()


@pytest.mark.parametrize("content", [
    {b"labels": [0, 1]},
    {b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]},
    {b"data": np.zeros((2, 3071), np.uint8), b"labels": [0, 1]},
    {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]},
    {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]},
    {b"data": np.zeros((2, 3072), np.uint8), b"labels": ["a", "b"]},
    [np.zeros((2, 3072), np.uint8), [0, 1]],
])
def test_cifar_batch_of_the_wrong_shape_is_refused(tmp_path, content):
    root = _cifar(tmp_path / "cifar", pickle.dumps(content))
    with pytest.raises(DataError, match=r"data_batch_1 is not a CIFAR-10 python batch"):
        load_cifar10(root)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_cifar_batches_load_from_every_pickle_protocol(tmp_path, protocol):
    s = load_cifar10(_cifar(tmp_path / "cifar", protocol=protocol))
    assert s.train_x.dtype == np.uint8 and s.train_x.shape[1:] == (3, 32, 32) and len(s.train_x) == len(s.train_y)


class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 str opcodes and NumPy under its 1.x module name: the published files' form."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_str2(self, obj):
        self.write(pickle.BINSTRING + len(obj).to_bytes(4, "little") + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_str2


def test_cifar_batch_in_the_published_python2_form_loads(tmp_path):
    x = np.random.default_rng(1).integers(0, 256, (6, 3072), dtype=np.uint8)
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump({b"data": x, b"labels": [1, 2, 3, 4, 5, 6], b"batch_label": b"b"})
    raw = buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert b"cnumpy.core.multiarray\n_reconstruct" in raw and b"_codecs" not in raw
    root = _cifar(tmp_path / "cifar", raw)
    s = load_cifar10(root, ("automobile", "bird", "cat", "deer", "dog", "frog"))
    np.testing.assert_array_equal(s.train_x[:6], x.reshape(-1, 3, 32, 32))
    assert s.train_y[:6].tolist() == [0, 1, 2, 3, 4, 5]

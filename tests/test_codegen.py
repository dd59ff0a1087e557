"""Generated C against the NumPy reference, bit for bit; warning-free builds; sizes equal the memory model."""
import filecmp
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codegen import LIBRARY_FILES, generate
from ebnn_core import ArchSpec, ConvBlock, DenseBlock, memory_plan, reference_predict
from ebnn_core.folded import fold
from ebnn_core.nn import BNN

from .conftest import run_cli
from .strategies import arch_specs, randomize
from .test_resources import device

STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
SANITIZE = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]

# One spec per feature: pixel conv + recompute pool, binary conv with rowbuffer and unfused pools,
# overlapping pools, padding, strides, dense on pixels, int32 thresholds, classifier only.
FEATURES = [
    ArchSpec((1, 28, 28), 10, (ConvBlock(8, 3, padding=1, pool=2), ConvBlock(7, 3, stride=2, pool=3, pool_stride=1,
                                                                                 fusion="rowbuffer"), DenseBlock(33))),
    ArchSpec((3, 13, 9), 5, (ConvBlock(5, 4, stride=2, padding=2, pool=2, pool_stride=1, fusion="unfused"),),
             input_mode="binary"),
    ArchSpec((3, 16, 11), 4, (ConvBlock(3, 7, padding=3, pool=3, pool_stride=2, fusion="rowbuffer"),)),  # int32 thr
    ArchSpec((1, 28, 28), 10, (DenseBlock(40), DenseBlock(9))),
    ArchSpec((2, 11, 17), 3, (), input_mode="binary"),
    ArchSpec((2, 5, 6), 3, ()),
]


def build(fm, tmp_path, dev="curie", cc="gcc", flags=(), name="lib"):
    out = generate(fm, device(dev), tmp_path / name)
    cmd = [cc, *STRICT, *flags, "-I.", "main.c", "model.c", "ebnn.c", "-o", "ebnn_example"]
    r = subprocess.run(cmd, cwd=out, capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr, f"{' '.join(cmd)}\n{r.stderr}"
    return out


def run_c(out, images: np.ndarray):
    (out / "images.u8").write_bytes(np.ascontiguousarray(images).tobytes())
    r = subprocess.run(["./ebnn_example", "-s", "images.u8"], cwd=out, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and not r.stderr, r.stderr
    rows = np.array([[int(v) for v in ln.split()] for ln in r.stdout.splitlines()], dtype=np.int64)
    assert len(rows) == len(images)
    return rows[:, 0], rows[:, 1:]


def assert_bit_exact(fm, images, out):
    pred, scores = run_c(out, images)
    ref_pred, ref_scores = reference_predict(fm, images)
    bad = np.flatnonzero(pred != ref_pred)
    assert bad.size == 0, f"{fm.spec.describe()}: images {bad[:10].tolist()} C {pred[bad[:10]]} ref {ref_pred[bad[:10]]}"
    bad = np.argwhere(scores != ref_scores)
    assert bad.size == 0, f"{fm.spec.describe()}: score mismatches at (image, class) {bad[:10].tolist()}"


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(spec=arch_specs(), seed=st.integers(0, 2**31 - 1))
def test_random_architectures_bit_exact_under_sanitizers(tmp_path_factory, spec, seed):
    fm = fold(randomize(BNN(spec), seed))
    out = build(fm, tmp_path_factory.mktemp("c"), flags=SANITIZE)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (64,) + spec.input_shape, dtype=np.uint8)
    x[:4] = rng.choice([0, 255], (4,) + spec.input_shape)
    assert_bit_exact(fm, x, out)


# Every code path of the runtime, run on this machine: both compilers; the 32-bit paths (word reads,
# two lanes per word); the block API of ebnn.c instead of the kernels inlined per layer; the 8-bit
# configuration (subset-sum tables only, passes of 8); the host's popcount instruction; recompute pooling's
# optional early exit.
VARIANTS = {
    "gcc": ("gcc", "curie", []),
    "clang": ("clang", "curie", []),
    "gcc-m32": ("gcc", "curie", ["-m32"]),
    "block-api": ("gcc", "curie", ["-DEBNN_SPECIALIZE=0"]),
    "avr-config": ("gcc", "avr", []),
    "host-popcnt": ("gcc", "host", ["-mpopcnt"]),
    "early-exit": ("gcc", "curie", ["-DEBNN_POOL_EARLY_EXIT=1"]),
}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("k", range(len(FEATURES)))
def test_feature_specs_warning_free_and_exact(tmp_path, variant, k):
    cc, dev, flags = VARIANTS[variant]
    assert shutil.which(cc), f"{cc} missing: scripts/setup.sh installs it"
    spec = FEATURES[k]
    fm = fold(randomize(BNN(spec), k))
    out = build(fm, tmp_path, dev=dev, cc=cc, flags=SANITIZE + flags)
    x = np.random.default_rng(k).integers(0, 256, (200,) + spec.input_shape, dtype=np.uint8)
    assert_bit_exact(fm, x, out)


def _symbol_sizes(obj) -> dict[str, int]:
    r = subprocess.run(["nm", "-S", str(obj)], capture_output=True, text=True, check=True)
    sizes = {}
    for ln in r.stdout.splitlines():
        parts = ln.split()
        if len(parts) == 4:
            sizes[parts[3]] = int(parts[1], 16)
    return sizes


@pytest.mark.parametrize("dev", ["curie", "cortex-m4"])
@pytest.mark.parametrize("k", range(len(FEATURES)))
def test_object_sizes_equal_memory_model(tmp_path, dev, k):
    """Symbol sizes on the host; and the whole .data / .bss sections of the Curie's 32-bit x86 build,
    where no array is padded for alignment."""
    spec = FEATURES[k]
    fm = fold(randomize(BNN(spec), k))
    out = generate(fm, device(dev), tmp_path / "lib")
    mem = memory_plan(spec, device(dev))
    subprocess.run(["gcc", *STRICT, "-O2", "-I.", "-c", "model.c"], cwd=out, check=True)
    sizes = _symbol_sizes(out / "model.o")
    assert sum(v for s, v in sizes.items() if s.startswith("ebnn_l")) == mem.params_bytes
    assert sizes.get("ebnn_arena", 0) == mem.arena_bytes
    curie = [f for f in device("curie").toolchain["cflags"] if f not in ("-static", "-no-pie")]
    subprocess.run(["gcc", *curie, *STRICT, "-I.", "-c", "model.c", "-o", "model32.o"], cwd=out, check=True)
    r = subprocess.run(["size", "-A", "model32.o"], cwd=out, capture_output=True, text=True, check=True)
    sec = {p[0]: int(p[1]) for p in (ln.split() for ln in r.stdout.splitlines()) if len(p) >= 2 and p[1].isdigit()}
    const = sum(v for s, v in sec.items() if s.startswith(".rodata"))
    if mem.params_in == "ram":
        assert sec.get(".data", 0) == mem.params_bytes
    else:
        assert sec.get(".data", 0) == 0 and const >= mem.params_bytes
    assert sec.get(".bss", 0) == mem.arena_bytes


def test_library_folder_is_self_contained(tmp_path):
    fm = fold(randomize(BNN(FEATURES[0]), 0))
    out = generate(fm, device("curie"), tmp_path / "lib")
    # the documented one-liner builds it, and the Makefile too
    subprocess.run("cc -std=c99 -I. *.c", shell=True, cwd=out, check=True)
    subprocess.run(["make", "-s"], cwd=out, check=True)
    head = (out / "model.h").read_text()
    assert "#define EBNN_INPUT_SIZE 784" in head and "#define EBNN_NUM_CLASSES 10" in head
    assert FEATURES[0].short_hash() in head and "Generated by ebnn-automl" in head
    sketch = out / "arduino" / "ebnn_model"
    assert (sketch / "ebnn_model.ino").is_file()
    for name in LIBRARY_FILES:
        assert filecmp.cmp(out / name, sketch / name, shallow=False)


@pytest.mark.toolchain
@pytest.mark.parametrize("dev", ["host", "curie", "cortex-m0", "cortex-m4", "avr"])
def test_make_run_and_make_device(tmp_path, dev):
    """The generated folder runs out of the box: `make run` answers the sample images as the reference
    does (and fails when an answer differs); `make device` builds the library with the device's toolchain."""
    import configparser

    fm = fold(randomize(BNN(FEATURES[0]), 0))
    rng = np.random.default_rng(1)
    images, labels = rng.integers(0, 256, size=(6, 1, 28, 28), dtype=np.uint8), np.arange(6) % 10
    pred, _ = reference_predict(fm, images)
    out = generate(fm, device(dev), tmp_path / "lib", samples=(images, labels))
    r = subprocess.run(["make", "-s", "run"], cwd=out, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    correct = int(sum(int(p) == int(y) for p, y in zip(pred, labels)))
    assert "6 predictions and scores equal the reference" in r.stdout and f"{correct} of 6 correct" in r.stdout
    lines = (out / "expected.txt").read_text().splitlines()
    wrong = (int(lines[2].split()[0]) + 1) % 10
    lines[2] = " ".join([str(wrong)] + lines[2].split()[1:])
    (out / "expected.txt").write_text("\n".join(lines) + "\n")
    r = subprocess.run(["make", "-s", "run"], cwd=out, capture_output=True, text=True)
    assert r.returncode != 0 and "differs from expected.txt" in r.stdout
    r = subprocess.run(["make", "-s", "device"], cwd=out, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    nm = {"avr": "avr-nm", "cortex-m0": "arm-none-eabi-nm", "cortex-m4": "arm-none-eabi-nm"}.get(dev, "nm")
    syms = subprocess.run([nm, "libebnn_model.a"], cwd=out, capture_output=True, text=True, check=True).stdout
    assert " T ebnn_predict_scores" in syms
    arch = subprocess.run(["objdump" if nm == "nm" else nm.replace("nm", "objdump"), "-f", "device/model.o"],
                          cwd=out, capture_output=True, text=True, check=True).stdout
    assert {"host": "x86-64", "curie": "i386", "cortex-m0": "arm", "cortex-m4": "arm", "avr": "avr"}[dev] in arch
    # the PlatformIO project: the device's board, and the same files as the library
    ini = configparser.ConfigParser()
    ini.read(out / "platformio" / "platformio.ini")
    env = ini[f"env:{dev}"]
    assert env["platform"] == device(dev).platformio["platform"]
    assert env.get("board") == device(dev).platformio.get("board")
    for name in LIBRARY_FILES:
        assert filecmp.cmp(out / name, out / "platformio" / "src" / name, shallow=False)


def test_device_values_reaching_the_makefile_are_checked(tmp_path):
    fm = fold(randomize(BNN(FEATURES[3]), 1))
    p = fm.save(tmp_path / "m.npz")
    for key, value in (("device.toolchain.cc", "'gcc;touch x'"), ("device.toolchain.cflags", "['-Os','$(shell id)']"),
                       ("device.platformio.board", "'uno\nextra_scripts = evil.py'")):
        r = run_cli("codegen", f"folded={p}", f"{key}={value}", f"out={tmp_path / 'out'}")
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and len(lines) == 1 and key in lines[0], (key, r.stderr)
        assert not (tmp_path / "out").exists()


def test_codegen_stage(tmp_path):
    r = run_cli("codegen", "arch=conv-1", f"paths.artifacts={tmp_path}")
    assert r.returncode == 2 and "folded=" in r.stderr and "python -m pipeline train arch=conv-1" in r.stderr
    fm = fold(randomize(BNN(FEATURES[3]), 1), meta={"arch_name": "mine"})
    p = fm.save(tmp_path / "m.npz")
    r = run_cli("codegen", f"folded={p}", "device=avr", f"paths.artifacts={tmp_path}")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "c" / "mine"
    assert "#define EBNN_PARAM __flash" in (out / "ebnn_config.h").read_text()
    r = run_cli("codegen", f"folded={tmp_path / 'nothing.npz'}")
    assert r.returncode == 2 and f"folded={tmp_path / 'nothing.npz'}: no FoldedModel" in r.stderr


CROSS = {  # device -> (compiler, standard flags); AVR's __flash needs GNU C
    "cortex-m4": ("arm-none-eabi-gcc", ["-std=c99", "-pedantic"]),
    "cortex-m0": ("arm-none-eabi-gcc", ["-std=c99", "-pedantic"]),
    "avr": ("avr-gcc", ["-std=gnu99"]),
    "curie": ("gcc", ["-std=c99", "-pedantic"]),
}


@pytest.mark.toolchain
@pytest.mark.parametrize("dev", sorted(CROSS))
@pytest.mark.parametrize("k", range(len(FEATURES)))
def test_cross_compiles_cleanly_integer_only(tmp_path, dev, k):
    cc, std = CROSS[dev]
    assert shutil.which(cc), f"{cc} missing: scripts/setup.sh installs it"
    d = device(dev)
    spec = FEATURES[k]
    fm = fold(randomize(BNN(spec), k))
    out = generate(fm, d, tmp_path / "lib")
    flags = [f for f in d.toolchain["cflags"] if f not in ("-static", "-no-pie", "-nostdlib")]
    for src in ("model.c", "ebnn.c"):
        r = subprocess.run([cc, *flags, *std, "-Wall", "-Wextra", "-Werror", "-I.", "-c", src], cwd=out,
                           capture_output=True, text=True)
        assert r.returncode == 0 and not r.stderr, f"{dev}: {src}: {r.stderr}"
    nm = "avr-nm" if dev == "avr" else ("arm-none-eabi-nm" if cc.startswith("arm") else "nm")
    for obj in ("model.o", "ebnn.o"):
        r = subprocess.run([nm, "-u", obj], cwd=out, capture_output=True, text=True, check=True)
        undefined = {ln.split()[-1] for ln in r.stdout.splitlines() if ln.strip()}
        floats = {s for s in undefined if any(t in s for t in ("sf", "df", "float", "fix"))}
        assert not floats, f"{dev}: {obj} pulls in floating point: {floats}"
    r = subprocess.run([nm, "-S", "model.o"], cwd=out, capture_output=True, text=True, check=True)
    sizes = {p[3]: int(p[1], 16) for p in (ln.split() for ln in r.stdout.splitlines()) if len(p) == 4}
    mem = memory_plan(spec, d)
    assert sum(v for s, v in sizes.items() if s.startswith("ebnn_l")) == mem.params_bytes
    assert sizes.get("ebnn_arena", 0) == mem.arena_bytes


def _trained_preset_exact_on_mnist(name, tmp_path, mnist, epochs, subset):
    from ebnn_core.data import ImageDataModule
    from ebnn_core.training import train
    from pipeline.config import arch_spec, compose, resolved

    spec = arch_spec(resolved(compose("train", [f"arch={name}"])))
    dm = ImageDataModule(mnist, batch_size=128, val_size=5000, seed=0, train_subset=subset)
    model, _ = train(spec, dm, epochs=epochs, seed=0, progress=False, validate=False)
    fm = fold(model)
    out = build(fm, tmp_path, dev="host", flags=["-O2"])
    assert_bit_exact(fm, mnist.test_x, out)  # every prediction and every score of the 10,000 images
    ref_pred, _ = reference_predict(fm, mnist.test_x)
    assert (ref_pred == mnist.test_y).mean() > 0.8


@pytest.mark.parametrize("name", ["conv-1-le-ii", "mlp-2"])
def test_trained_presets_bit_exact_on_whole_mnist_test_set(tmp_path, mnist, name):
    _trained_preset_exact_on_mnist(name, tmp_path, mnist, epochs=1, subset=5000)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mlp-1", "mlp-2", "conv-1", "conv-2", "convpool-1", "convpool-2", "conv-1-le-i",
                                  "conv-1-le-ii"])
def test_every_trained_preset_bit_exact_on_whole_mnist_test_set(tmp_path, mnist, name):
    _trained_preset_exact_on_mnist(name, tmp_path, mnist, epochs=1, subset=None)

"""On-device validation: builds with the project's start-up code and linker scripts, runs under QEMU,
qemu-i386 and simavr, the painted stack, instruction counts, and the memory model against all of it."""
import dataclasses
import json
import os
import re
import subprocess

import numpy as np
import pytest

from codegen import generate
from ebnn_core import ArchSpec, ConvBlock, DenseBlock, memory_plan, reference_predict
from ebnn_core.folded import fold
from ebnn_core.nn import BNN
from ebnn_core.testing import randomize
from validation.build import BuildError, build_image, family_of
from validation.check import STACK_SLACK_BYTES, validate_device
from validation.count import count_instructions
from validation.run import run_image
from validation.stack import frame_bytes, memory_plan_compiled

from .conftest import run_cli
from .test_resources import device

pytestmark = pytest.mark.toolchain
DEVICES = ["cortex-m0", "cortex-m4", "curie", "avr"]


def _model(spec, seed=0, **meta):
    return fold(randomize(BNN(spec), seed), meta=meta)


SMALL = ArchSpec((1, 28, 28), 10, (ConvBlock(4, 3, stride=2, pool=2, fusion="rowbuffer"), DenseBlock(24)))


def test_validate_stage_end_to_end_on_every_device(tmp_path):
    """A trained model: train, codegen, then validate on the host (whole test set) and all four devices."""
    arts = tmp_path / "arts"
    r = run_cli("train", "arch=conv-1-le-ii", "epochs=1", "train_subset=2000", "progress=false",
                f"paths.artifacts={arts}")
    assert r.returncode == 0, r.stderr
    r = run_cli("codegen", "arch=conv-1-le-ii", "device=curie", f"paths.artifacts={arts}")
    assert r.returncode == 0, r.stderr
    lib = arts / "c" / "conv-1-le-ii"
    assert (lib / "folded.npz").is_file() and "python -m pipeline validate lib=" in r.stdout
    r = run_cli("validate", f"lib={lib}", "devices=[curie,cortex-m0,cortex-m4,avr,host]", "images=12",
                "count_images=1", f"paths.artifacts={arts}")
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads((lib / "validation.json").read_text())
    assert rep["ok"] and rep["schema"] == "ebnn-automl/validation/1" and not rep["failures"]
    assert rep["devices"]["host"]["images_checked"] == 10000
    for name in DEVICES:
        dv = rep["devices"][name]
        assert dv["ok"] and dv["images_checked"] == 12, (name, dv)
        assert dv["mismatches"]["predictions"] == dv["mismatches"]["scores"] == 0
        ram = dv["ram"]
        assert ram["static_measured"] == ram["static_modelled"]
        assert 0 <= ram["stack_modelled"] - ram["stack_measured"] <= STACK_SLACK_BYTES
        assert ram["total_measured"] <= ram["total_modelled"] <= dv["budget_bytes"]
        assert dv["code"]["model_text_bytes"] > 0 and dv["code"]["image_flash_bytes"] <= dv["code"]["flash_budget_bytes"]
        assert dv["code"]["code_measured"] == dv["code"]["code_modelled"] > 0
    assert rep["devices"]["avr"]["latency"]["cycles_measured"] > 0
    for name in ("cortex-m0", "cortex-m4", "curie"):
        assert rep["devices"][name]["latency"]["instructions_per_inference"] > 1000
    assert "host: ok, 10000 images" in r.stdout


@pytest.mark.parametrize("dev", DEVICES)
def test_over_budget_image_fails_at_link_time_naming_the_budget(tmp_path, dev):
    d = device(dev)
    fm = _model(SMALL)
    mem = memory_plan_compiled(fm, d)
    lib = generate(fm, d, tmp_path / "lib")
    budget = mem.ram_bytes - 1
    with pytest.raises(BuildError) as e:
        build_image(lib, d, tmp_path / "img", budget_bytes=budget, allowance=mem.stack_bytes)
    assert f"RAM budget of {budget} B" in e.value.reason
    img = build_image(lib, d, tmp_path / "img2", budget_bytes=mem.ram_bytes, allowance=mem.stack_bytes)
    assert img.static_bytes == mem.ram_bytes - mem.stack_bytes


@pytest.mark.parametrize("dev", ["avr", "cortex-m0", "curie"])
def test_stack_past_its_allowance_is_caught_by_the_paint(tmp_path, dev):
    """A device whose stack figure is short of the frame by more than the caller's reserve: the image links,
    the inference runs through the bottom of its allowance, and validation fails on the paint (whatever the
    outputs say)."""
    fm = _model(SMALL)
    d = device(dev)
    short = dataclasses.replace(d, stack_call_bytes=-(family_of(d).reserve_bytes + 32))
    assert frame_bytes(fm, d) > family_of(d).reserve_bytes + 64
    x = np.random.default_rng(0).integers(0, 256, (3, 1, 28, 28), dtype=np.uint8)
    res = validate_device(fm, short, generate(fm, short, tmp_path / "lib"), tmp_path / "w", None, x,
                          reference_predict(fm, x), count_images=0)
    assert not res["ok"] and res["ram"]["stack_bottom_reached"]
    assert any("the stack reached static data" in f for f in res["failures"]), res["failures"]
    ok = validate_device(fm, d, generate(fm, d, tmp_path / "lib2"), tmp_path / "w2", None, x,
                         reference_predict(fm, x), count_images=0)
    assert ok["ok"] and not ok["ram"]["stack_bottom_reached"], ok["failures"]


def _qemu_count(img, machine: str) -> int:
    """Instructions between the two harness marks from QEMU's own single-step execution log."""
    work = img.elf.parent
    log = work / "exec.log"
    subprocess.run(["qemu-system-arm", "-M", machine, "-nographic", "-monitor", "none", "-serial", "none",
                    "-chardev", "stdio,id=sh0", "-semihosting-config", "enable=on,target=native,chardev=sh0",
                    "-singlestep", "-d", "exec,nochain", "-D", str(log), "-kernel", str(img.elf)],
                   cwd=work, capture_output=True, timeout=600, check=True)
    mark = img.address("harness_mark") & ~1  # Thumb bit
    pcs = [int(m.group(1), 16) for m in re.finditer(r"Trace \d+: \S+ \[[0-9a-f]+/([0-9a-f]+)/", log.read_text())]
    at = [i for i, pc in enumerate(pcs) if pc == mark]
    assert len(at) >= 2, "no marks in the QEMU log"
    return at[1] - at[0]


def test_unicorn_instruction_counts_equal_qemus(tmp_path):
    d = device("cortex-m0")
    fm = _model(SMALL)
    mem = memory_plan_compiled(fm, d)
    img = build_image(generate(fm, d, tmp_path / "lib"), d, tmp_path / "img", mem.ram_bytes, mem.stack_bytes)
    x = np.random.default_rng(1).integers(0, 256, (1, 1, 28, 28), dtype=np.uint8)
    (img.elf.parent / "images.u8").write_bytes(x.tobytes())
    counts = count_instructions(img, d, x)
    assert len(counts) == 1 and counts[0].instructions > 10000
    assert counts[0].instructions == _qemu_count(img, "microbit")


def _random_spec(rng, c=1, hw=28):
    blocks = []
    if rng.random() < 0.8:
        k = int(rng.integers(2, 6))
        pool = int(rng.choice([0, 2, 3]))
        blocks.append(ConvBlock(int(rng.integers(1, 17)), k, int(rng.integers(1, 3)), int(rng.integers(0, k)), pool,
                                int(rng.integers(1, 3)) if pool else 0, str(rng.choice(["recompute", "rowbuffer", "unfused"]))))
        if rng.random() < 0.4:
            blocks.append(ConvBlock(int(rng.integers(1, 24)), 3, 1, 1, 2 if rng.random() < 0.5 else 0, 0, "recompute"))
    if rng.random() < 0.5 or not blocks:
        blocks.append(DenseBlock(int(rng.integers(8, 80))))
    spec = ArchSpec((c, hw, hw), 10, tuple(blocks), input_mode=str(rng.choice(["uint8", "binary"])))
    try:
        spec.shapes()
    except Exception:
        return ArchSpec((c, hw, hw), 10, (DenseBlock(32),))
    return spec


@pytest.mark.parametrize("dev", DEVICES)
def test_memory_model_never_below_measured_ram_on_random_specs(tmp_path, dev):
    """Property: for random ArchSpecs within the device's budget, static RAM is exact and the model's stack
    is at least the painted peak and at most STACK_SLACK_BYTES above it."""
    d = device(dev)
    rng = np.random.default_rng(sum(map(ord, dev)))
    budget = int(d.ram_kb * 1024)
    checked = 0
    for i in range(40):
        spec = _random_spec(rng)
        if memory_plan(spec, d, stack_bytes=0).ram_bytes > budget:
            continue
        fm = _model(spec, seed=i)
        mem = memory_plan_compiled(fm, d)
        if mem.ram_bytes > budget:
            continue
        x = rng.integers(0, 256, (2,) + spec.input_shape, dtype=np.uint8)
        img = build_image(generate(fm, d, tmp_path / f"{i}" / "lib"), d, tmp_path / f"{i}", budget, mem.stack_bytes)
        run = run_image(img, d, x, spec.classes)
        ref = reference_predict(fm, x)
        assert (run.predictions == ref[0]).all() and (run.scores == ref[1]).all(), spec.describe()
        assert img.static_bytes == mem.ram_bytes - mem.stack_bytes, spec.describe()
        assert not run.stack_bottom_reached, spec.describe()
        assert 0 <= mem.stack_bytes - run.stack_peak <= STACK_SLACK_BYTES, (spec.describe(), mem.stack_bytes,
                                                                           run.stack_peak)
        checked += 1
        if checked == 4:
            break
    assert checked == 4, f"only {checked} random specs fit {dev}"


@pytest.mark.parametrize("arch, dev, budget", [("conv-1", "avr", 2048), ("mlp-1", "curie", 15 * 1024)])
def test_issue_cases_are_refused_by_the_model_or_really_fit(tmp_path, arch, dev, budget):
    """The two cases of issue 8 (conv-1 at the AVR's 2 KB overwrote its arena; mlp-1 at the Curie's 15 KB
    was reported as fitting but needed more): now the model either refuses them, or the image under that
    budget links, runs bit-exact and its stack stays inside the allowance."""
    from pipeline.config import arch_spec, compose, resolved

    spec = arch_spec(resolved(compose("train", [f"arch={arch}"])))
    fm = _model(spec)
    d = device(dev)
    mem = memory_plan_compiled(fm, d)
    assert mem.stack_bytes >= frame_bytes(fm, d)
    x = np.random.default_rng(2).integers(0, 256, (3,) + spec.input_shape, dtype=np.uint8)
    res = validate_device(fm, d, generate(fm, d, tmp_path / "lib"), tmp_path / "w", budget, x, reference_predict(fm, x),
                          count_images=0)
    if mem.ram_bytes > budget:
        assert not res["ok"] and "RAM budget of" in res["failures"][0]
    else:
        assert res["ok"], res["failures"]
        assert res["ram"]["total_measured"] <= budget and not res["ram"]["stack_bottom_reached"]


def test_bad_input_one_line_exit_2(tmp_path):
    r = run_cli("validate", f"lib={tmp_path / 'nothing'}")
    assert r.returncode == 2 and f"lib={tmp_path / 'nothing'}: no such C library folder" in r.stderr
    p = _model(SMALL, arch_name="small").save(tmp_path / "m.npz")
    r = run_cli("validate", f"folded={p}", "devices=[nosuch]")
    assert r.returncode == 2 and "devices=nosuch: no such device" in r.stderr
    env_path = tmp_path / "bin"
    env_path.mkdir()
    env = dict(os.environ, PATH=str(env_path))
    from .conftest import ROOT
    import sys

    r = subprocess.run([sys.executable, "-m", "pipeline", "validate", f"folded={p}", "devices=[curie]"], cwd=ROOT,
                       env=dict(env, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "device.toolchain.emulator=qemu-i386: not installed" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("dev, count", [("avr", 0), ("curie", 1)])
def test_measured_latency_over_the_budget_fails(tmp_path, dev, count):
    """AVR: simavr's exact cycles; Curie: the unicorn trace's cycle estimate; over the budget: a failure."""
    fm = _model(SMALL)
    d = device(dev)
    x = np.random.default_rng(3).integers(0, 256, (2, 1, 28, 28), dtype=np.uint8)
    ref = reference_predict(fm, x)
    res = validate_device(fm, d, generate(fm, d, tmp_path / "lib"), tmp_path / "w", None, x, ref, count, 0.001)
    assert not res["ok"] and any("over the latency budget of 0.001 ms" in f for f in res["failures"])
    ok = validate_device(fm, d, generate(fm, d, tmp_path / "lib2"), tmp_path / "w2", None, x, ref, count, 1000.0)
    assert ok["ok"], ok["failures"]

"""The latency model: per kernel path cost terms (ebnn_core.resources.latency_terms) times the device's
fitted cycles (conf/device/*.yaml, bench/calibrate_latency.py)."""
import dataclasses
import shutil

import numpy as np
import pytest
import yaml

from ebnn_core import ArchSpec, ConvBlock, DenseBlock, Device, DeviceError, latency_ms
from ebnn_core.resources import COST_KEYS, conv_pass_size, latency_cycles, latency_terms, uses_lanes

from .test_resources import CONF, device

DEVICES = ("avr", "cortex-m0", "cortex-m4", "curie", "host")
PATH_KEYS = {"lanes": ("lane_window", "lane_tap", "lane_madd"),
             "tables": ("table_window", "table_tap", "table_entry", "table_lookup", "table_filter")}


def _path(spec, dev):
    t = latency_terms(spec, dev)
    on = [name for name, keys in PATH_KEYS.items() if any(t[k] for k in keys)]
    assert len(on) == 1, t
    return on[0]


@pytest.mark.parametrize("name, lanes", [("avr", False), ("cortex-m0", True), ("cortex-m4", True),
                                         ("curie", True), ("host", True)])
def test_lanes_follow_word_bits(name, lanes):
    # 4 filters, 3x3 on 1 channel: lanes wherever EBNN_PIXEL_LANES is on (word_bits > 16)
    spec = ArchSpec((1, 8, 8), 2, (ConvBlock(4, 3),))
    dev = device(name)
    assert dev.word_bits > 16 if lanes else dev.word_bits <= 16
    assert _path(spec, dev) == ("lanes" if lanes else "tables")


def test_lane_limits_as_the_c_decides():
    m4, host = device("cortex-m4"), device("host")
    assert uses_lanes(m4, 9, 4) and not uses_lanes(m4, 9, 5)  # 2 lanes a word on 32-bit cores, 2 words
    assert uses_lanes(host, 9, 8) and not uses_lanes(host, 9, 9)  # 4 lanes a word on 64-bit hosts
    assert uses_lanes(m4, 16, 4) and not uses_lanes(m4, 17, 4)  # taps * words <= 32
    assert uses_lanes(m4, 25, 2) and not uses_lanes(m4, 25, 3)
    assert not uses_lanes(dataclasses.replace(m4, word_bits=16), 9, 1)
    # a 5-filter layer takes the tables on a 32-bit core, the lanes on a 64-bit host
    spec = ArchSpec((1, 8, 8), 2, (ConvBlock(5, 3),))
    assert _path(spec, m4) == "tables" and _path(spec, host) == "lanes"


@pytest.mark.parametrize("word_bits, size", [(8, 8), (16, 8), (32, 32), (64, 32)])
def test_pass_size_follows_word_bits(word_bits, size):
    dev = dataclasses.replace(device("curie"), word_bits=word_bits)
    assert conv_pass_size(dev) == size
    spec = ArchSpec((1, 6, 6), 2, (ConvBlock(20, 3),), input_mode="binary")
    assert latency_terms(spec, dev)["pass"] == -(-20 // size) + 1  # + the classifier's pass


@pytest.mark.parametrize("name", ["avr", "cortex-m0", "cortex-m4", "curie"])
@pytest.mark.parametrize("mode, block", [("uint8", lambda f: ConvBlock(f, 3, pool=2)),
                                         ("binary", lambda f: ConvBlock(f, 3, padding=1, pool=2, fusion="rowbuffer")),
                                         ("uint8", lambda f: DenseBlock(f)), ("binary", lambda f: DenseBlock(f))])
def test_latency_monotone_in_filters_on_one_path(name, mode, block):
    dev = device(name)
    lat = []
    for f in (5, 6, 8, 12, 16, 24, 32):  # 5 and more: the tables on every device (no lane switch)
        spec = ArchSpec((1, 12, 12), 10, (block(f),), input_mode=mode)
        if isinstance(block(f), ConvBlock) and mode == "uint8":
            assert _path(spec, dev) == "tables"
        lat.append(latency_ms(spec, dev))
    assert all(b >= a for a, b in zip(lat, lat[1:])) and lat[-1] > lat[0], lat  # whole passes may tie


@pytest.mark.parametrize("name", DEVICES)
def test_device_files_carry_every_cost_key(name):
    d = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    assert set(d["cycles"]) == set(COST_KEYS)
    assert all(isinstance(v, (int, float)) and v >= 0 for v in d["cycles"].values())
    dev = Device.from_dict(d)
    assert latency_cycles(ArchSpec((1, 28, 28), 10, (ConvBlock(8, 3),)), dev) > 0
    missing = {k: v for k, v in d["cycles"].items() if k != "table_lookup"}
    with pytest.raises(DeviceError, match=r"device.cycles.table_lookup"):
        Device.from_dict({**d, "cycles": missing})


def test_recompute_counts_every_window():
    # 4x4 conv output, pool 2 stride 1 -> 3x3: recompute evaluates 9 x 4 windows, rowbuffer 16 positions
    rec = latency_terms(ArchSpec((1, 6, 6), 2, (ConvBlock(1, 3, pool=2, pool_stride=1),), input_mode="binary"),
                        device("curie"))
    row = latency_terms(ArchSpec((1, 6, 6), 2, (ConvBlock(1, 3, pool=2, pool_stride=1, fusion="rowbuffer"),),
                                 input_mode="binary"), device("curie"))
    assert rec["bit_window"] == 36 and row["bit_window"] == 16 and row["pool_read"] == 36
    assert rec["pool_read"] == 0


@pytest.mark.toolchain
def test_avr_estimate_within_15_percent_of_simavr(tmp_path):
    assert shutil.which("avr-gcc") and shutil.which("simavr"), "scripts/setup.sh installs avr-gcc and simavr"
    from codegen import generate
    from ebnn_core import memory_plan
    from ebnn_core.folded import fold
    from ebnn_core.nn import BNN
    from ebnn_core.testing import randomize
    from validation.build import build_image
    from validation.run import run_image

    dev = device("avr")
    spec = ArchSpec((1, 12, 12), 4, (ConvBlock(4, 3, pool=2, fusion="rowbuffer"), DenseBlock(16)))
    fm = fold(randomize(BNN(spec), 3))
    lib = generate(fm, dev, tmp_path / "lib")
    mem = memory_plan(spec, dev)
    img = build_image(lib, dev, tmp_path / "img", mem.ram_bytes - mem.stack_bytes + 512, 512)
    images = np.random.default_rng(0).integers(0, 256, (2, 1, 12, 12), dtype=np.uint8)
    run = run_image(img, dev, images, spec.classes)
    measured = float(np.mean(run.cycles))
    estimate = latency_cycles(spec, dev)
    assert abs(estimate / measured - 1) <= 0.15, (estimate, measured)


def test_trace_cycle_tables():
    from validation.count import Count
    from validation.cycles import arm_cycles, trace_cycles

    c = Count(instructions=9, mnemonics={"ldr": 2, "adds": 3, "bne": 1, "push": 1, "str.w": 1, "lsls": 1},
              taken_branches=1)
    # M0: loads and stores 2, push 1 + 4, a taken branch 2 more; M4: stores 1; Lakemont: 1 + 1 per taken
    assert trace_cycles(c, "cortex-m0") == 2 * 2 + 3 + 1 + 5 + 2 + 1 + 2
    assert trace_cycles(c, "cortex-m4") == 2 * 2 + 3 + 1 + 5 + 1 + 1 + 2
    assert trace_cycles(c, "lakemont") == 9 + 1
    assert arm_cycles("ldrne", "cortex-m4") == 2 and arm_cycles("bl", "cortex-m0") == 2
    assert arm_cycles("bls", "cortex-m0") == 1 and arm_cycles("muls", "cortex-m0") == 1


def test_measurement_cache_key_follows_the_generated_c(tmp_path):
    """validation.latency keys its measurements on the generated library's C and headers: other weights
    change the C (a miss), the device's fitted cycles or a non-library file do not."""
    from codegen import generate
    from ebnn_core.folded import fold
    from ebnn_core.nn import BNN
    from ebnn_core.testing import randomize
    from validation import latency as cal

    dev = device("cortex-m4")
    spec = ArchSpec((1, 8, 8), 2, (ConvBlock(4, 3), DenseBlock(8)))
    lib = generate(fold(randomize(BNN(spec), 0)), dev, tmp_path / "a")
    key = cal._library_digest(lib)
    other = dataclasses.replace(dev, cycles={k: 2 * v for k, v in dev.cycles.items()})
    assert cal._library_digest(generate(fold(randomize(BNN(spec), 0)), other, tmp_path / "b")) == key
    (lib / "Makefile").write_text("# edited\n")
    assert cal._library_digest(lib) == key
    assert cal._library_digest(generate(fold(randomize(BNN(spec), 1)), dev, tmp_path / "c")) != key
    (lib / "ebnn_kernels.h").write_text((lib / "ebnn_kernels.h").read_text() + "\n/* changed */\n")
    assert cal._library_digest(lib) != key


def test_device_latency_tolerance_is_checked():
    d = yaml.safe_load((CONF / "curie.yaml").read_text())
    assert 0 < Device.from_dict(d).latency_tolerance < 1
    for bad in (1.5, -0.1, "15%", True):
        with pytest.raises(DeviceError, match=r"device.latency_tolerance must be a fraction in \[0, 1\) but got"):
            Device.from_dict({**d, "latency_tolerance": bad})


def _random_space_specs(dev, n: int, seed: int):
    """Random ArchSpecs of the default search space on MNIST that fit the device's RAM budget (static RAM
    within the 2 KB part's data region on AVR) and flash, none bigger than the calibration measures."""
    from ebnn_core import memory_plan, total_ops
    from search.space import RandomChooser, suggest_arch

    space = yaml.safe_load((CONF.parent / "space" / "default.yaml").read_text())
    chooser, out, seen = RandomChooser(seed), [], set()
    small = dev.toolchain.get("family") == "avr"
    budget = dev.ram_kb_total * 1024 - 192 if small else dev.ram_kb * 1024
    while len(out) < n:
        spec = suggest_arch(chooser, space, (1, 28, 28), 10)
        mem = memory_plan(spec, dev)
        ram = mem.ram_bytes - mem.stack_bytes if small else mem.ram_bytes
        if (spec.short_hash() in seen or ram > budget or mem.flash_bytes > dev.flash_kb * 1024
                or total_ops(spec).total > 2_500_000):
            continue
        seen.add(spec.short_hash())
        out.append(spec)
    return out


@pytest.mark.toolchain
@pytest.mark.parametrize("name", ["avr", "cortex-m0", "cortex-m4", "curie"])
def test_estimate_within_the_stated_tolerance_on_random_specs(name):
    """Property: on random ArchSpecs the calibration never saw (another chooser seed), the latency model's
    estimate is within the device's stated latency_tolerance of the emulator's measurement."""
    from validation.latency import measure_latency

    dev = device(name)
    assert dev.latency_tolerance > 0
    worst = []
    for spec in _random_space_specs(dev, 6, seed=20261202):
        measured = measure_latency(spec, dev)["cycles"]
        err = latency_cycles(spec, dev) / measured - 1
        worst.append((abs(err), spec.describe()))
        assert abs(err) <= dev.latency_tolerance, (spec.describe(), err, dev.latency_tolerance)
    assert len(worst) == 6


@pytest.mark.toolchain
def test_measured_latency_does_not_depend_on_weights_or_pixels():
    """The kernels run in constant time: the search measures an ArchSpec with seeded random weights on one
    synthetic image and stands for the trained model on any image (within 3%: weights change the C a
    little, e.g. the width of thresholds)."""
    from validation.latency import measure_latency, random_weights

    spec = ArchSpec((1, 28, 28), 10, (ConvBlock(12, 3, pool=2, pool_stride=1, fusion="rowbuffer"),
                                      ConvBlock(2, 2, padding=1), DenseBlock(16)))
    pixels = np.random.default_rng(9).integers(0, 256, (2, 1, 28, 28), dtype=np.uint8)
    for name in ("cortex-m0", "curie"):
        dev = device(name)
        a = measure_latency(spec, dev)
        b = measure_latency(random_weights(spec, 5), dev, pixels)
        assert a["latency_ms"] == pytest.approx(a["cycles"] / (dev.clock_mhz * 1000))
        assert abs(b["cycles"] / a["cycles"] - 1) <= 0.03, (name, a["cycles"], b["cycles"])

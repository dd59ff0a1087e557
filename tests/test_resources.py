"""Memory and latency models against hand-computed examples."""
from pathlib import Path

import pytest
import yaml

from ebnn_core import ArchSpec, ConvBlock, DenseBlock, Device, DeviceError, latency_ms, memory_plan, op_counts, total_ops
from ebnn_core.resources import COST_KEYS, latency_terms
from ebnn_core.resources import arena_plan

CONF = Path(__file__).resolve().parent.parent / "conf" / "device"


def device(name: str) -> Device:
    return Device.from_dict(yaml.safe_load((CONF / f"{name}.yaml").read_text()))


@pytest.mark.parametrize("name", ["curie", "cortex-m4", "cortex-m0", "avr", "host"])
def test_every_device_config_loads(name):
    d = device(name)
    assert d.name == name and d.clock_mhz > 0


def test_conv1_on_curie_by_hand():
    spec = ArchSpec((1, 28, 28), 10, (ConvBlock(12, 3),))
    m = memory_plan(spec, device("curie"))
    # conv on raw pixels: 12 filters x 3 kernel rows x 1 chunk (3 taps) = 36 bytes; bound 9*255 fits
    # int16: 24 B; 12 flip bits -> 4 B. classifier: 10 rows of 26*26*12 = 8112 bits, each padded to 254
    # words = 10160 B; scale+offset 80 B
    assert m.params_bytes == 36 + 24 + 4 + 10160 + 80 == 10304
    assert m.activation_bytes == 1016  # 8112 bits = 254 words, one buffer
    assert (m.scratch_bytes, m.slack_bytes, m.input_bytes, m.stack_bytes) == (0, 8, 784, 256)
    assert m.arena_bytes == 1016 + 8
    assert m.ram_bytes == 10304 + 1016 + 8 + 784 + 256  # params in RAM on the Curie
    assert m.flash_bytes == 10304 and m.model_bytes == 10304 + 1016 + 8
    assert m.layers[0].threshold_ctype == "int16_t"


def _small(fusion: str) -> ArchSpec:
    return ArchSpec((1, 8, 8), 3, (ConvBlock(4, 3, padding=1, pool=2, fusion=fusion), DenseBlock(5)),
                    input_mode="binary")


def test_binary_pooled_dense_in_flash_by_hand():
    m = memory_plan(_small("rowbuffer"), device("cortex-m4"))
    # conv 4 filters x 1 word (9 bits padded) + 8 + 4, dense 5 rows x 2 words + 12 (5 int16 thresholds
    # padded to a word) + 4, classifier 3 rows x 1 word + 24
    assert m.params_bytes == 16 + 8 + 4 + 40 + 12 + 4 + 12 + 24 == 120
    # arena: input bits 8 B, conv out 8 B, dense out 4 B -> largest consecutive pair 16 B
    assert m.activation_bytes == 16 and m.arena == ((0, 8), (8, 8), (0, 4))
    assert m.scratch_bytes == 8  # two rows of 8 x 4 channels = 64 bits
    assert m.ram_bytes == 16 + 8 + 8 + 64 + 256  # params in flash; 8 bytes of read slack
    assert m.flash_bytes == 120 and m.model_bytes == 120 + 16 + 8 + 8
    assert memory_plan(_small("unfused"), device("cortex-m4")).scratch_bytes == 32  # 8x8x4 bits
    assert memory_plan(_small("recompute"), device("cortex-m4")).scratch_bytes == 0


def test_weight_layouts_follow_the_runtime():
    d = device("host")
    mlp = memory_plan(ArchSpec((1, 28, 28), 10, (DenseBlock(136),)), d)
    assert mlp.layers[0].weight_bytes == 4 * 17 * 196 == 136 * 784 // 8  # no padding: 136 = 17 x 8
    odd = memory_plan(ArchSpec((3, 9, 9), 2, (ConvBlock(9, 3),)), d)
    # conv on pixels: a byte per (filter, kernel row, 4 of the row's 9 taps): 9 * 3 * 3 = 81 -> 84
    assert odd.layers[0].weight_bytes == 84
    binary = memory_plan(ArchSpec((3, 9, 9), 2, (ConvBlock(9, 3),), input_mode="binary"), d)
    assert binary.layers[0].weight_bytes == 9 * 4  # each filter's 27 bits padded to a word


def test_int32_thresholds_when_pixel_sums_exceed_int16():
    spec = ArchSpec((3, 16, 16), 2, (ConvBlock(2, 7),))  # bound 49*3*255 = 37485 > 32767
    m = memory_plan(spec, device("host"))
    assert m.layers[0].threshold_ctype == "int32_t" and m.layers[0].threshold_bytes == 8


def test_arena_places_consecutive_layers_apart():
    size, places = arena_plan([10, 30, 5, 20])
    assert size == 40  # pairs: 40, 35, 25
    for (o1, s1), (o2, s2) in zip(places, places[1:]):
        assert o1 + s1 <= o2 or o2 + s2 <= o1  # no overlap
        assert max(o1 + s1, o2 + s2) <= size


def test_op_counts_by_hand():
    ops = total_ops(ArchSpec((1, 28, 28), 10, (ConvBlock(12, 3),)))
    assert ops.pixel_add == 12 * 26 * 26 * 9
    assert ops.xnor_word == 10 * 254
    assert ops.compare == 12 * 26 * 26 + 10


@pytest.mark.parametrize("fusion, positions, words", [("recompute", 36, 108), ("rowbuffer", 16, 48), ("unfused", 16, 48)])
def test_pool_fusion_changes_conv_work(fusion, positions, words):
    # 6x6 binary input, 3x3 conv -> 4x4, pool 2 stride 1 -> 3x3: recompute computes 9 windows x 4
    spec = ArchSpec((1, 6, 6), 2, (ConvBlock(1, 3, pool=2, pool_stride=1, fusion=fusion),), input_mode="binary")
    conv = op_counts(spec)[0]
    assert conv.compare == 36 + positions  # 36 input packing compares in binary mode
    assert conv.xnor_word == words and conv.pool_op == 9 * 4


def test_padding_skips_taps():
    spec = ArchSpec((1, 3, 3), 2, (ConvBlock(1, 3, padding=1),))
    # valid taps per axis for outputs 0,1,2: 2,3,2 -> (2+3+2)^2 = 49 pixel adds
    assert op_counts(spec)[0].pixel_add == 49


def test_latency_is_cycles_over_clock():
    spec = ArchSpec((1, 4, 4), 2, (), input_mode="binary")
    d = device("curie")
    terms = latency_terms(spec, d)  # 16 packed pixels, 2 classifier outputs of 1 word, 1 pass, 1 inference
    assert terms["pack_pixel"] == 16 and terms["dense_word"] == 2 and terms["output"] == 2 and terms["pass"] == 1
    cycles = sum(terms[k] * d.cycles[k] for k in COST_KEYS)
    assert latency_ms(spec, d) == pytest.approx(cycles / 32000.0)


def test_bad_device_names_key_and_value():
    d = yaml.safe_load((CONF / "curie.yaml").read_text())
    with pytest.raises(DeviceError, match=r"device.params_in must be one of .* but got 'rom'"):
        Device.from_dict({**d, "params_in": "rom"})
    with pytest.raises(DeviceError, match=r"device.cycles.xnor_word"):
        Device.from_dict({**d, "cycles": {**d["cycles"], "xnor_word": -1}})

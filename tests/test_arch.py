import json
import subprocess
import sys

import pytest

from ebnn_core import ArchSpec, ArchSpecError, ConvBlock, DenseBlock

SPEC = ArchSpec((1, 28, 28), 10, (ConvBlock(8, 3, padding=1, pool=2, fusion="rowbuffer"),
                                  ConvBlock(5, 3, stride=2), DenseBlock(32)), input_mode="binary")


def test_json_round_trip_and_equality():
    text = SPEC.to_json()
    back = ArchSpec.from_json(text)
    assert back == SPEC and hash(back) == hash(SPEC)
    assert json.loads(text)["blocks"][0]["fusion"] == "rowbuffer"


def test_hash_is_stable_across_processes():
    code = ("from ebnn_core import ArchSpec; import sys; "
            "print(ArchSpec.from_json(sys.argv[1]).short_hash())")
    out = subprocess.run([sys.executable, "-c", code, SPEC.to_json()], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == SPEC.short_hash()
    assert len(SPEC.short_hash()) == 12
    other = ArchSpec((1, 28, 28), 10, (ConvBlock(8, 3, padding=1, pool=2, fusion="recompute"),
                                       ConvBlock(5, 3, stride=2), DenseBlock(32)), input_mode="binary")
    assert other.short_hash() != SPEC.short_hash()


def test_shapes_non_square():
    spec = ArchSpec((3, 13, 9), 4, (ConvBlock(6, 4, stride=2, padding=1), ConvBlock(3, 2, pool=2, pool_stride=1)))
    sh = spec.shapes()
    assert sh[0].out_shape == (6, 6, 4)  # (13+2-4)//2+1 = 6, (9+2-4)//2+1 = 4
    assert sh[1].conv_shape == (3, 5, 3) and sh[1].out_shape == (3, 4, 2)
    assert sh[2].in_shape == (3, 4, 2) and sh[2].out_shape == (4, 1, 1)


@pytest.mark.parametrize("blocks, match", [
    ((ConvBlock(0, 3),), r"blocks\[0\] \(conv\): filters must be >= 1 but got 0"),
    ((ConvBlock(4, 3, pool=30),), r"blocks\[0\] \(conv\): pool window 30 larger than its 26x26"),
    ((ConvBlock(4, 3), ConvBlock(4, 40, padding=2)), r"blocks\[1\] \(conv\): kernel 40 larger than the padded 30x30"),
    ((ConvBlock(4, 3, fusion="magic"),), r"blocks\[0\] \(conv\): fusion must be one of .* but got 'magic'"),
    ((DenseBlock(8), ConvBlock(4, 3)), r"blocks\[1\] \(conv\): a conv block cannot follow a dense block"),
    ((DenseBlock(0),), r"blocks\[0\] \(dense\): units must be >= 1 but got 0"),
    ((ConvBlock(4, 3, padding=3),), r"padding 3 must be smaller than kernel 3"),
])
def test_validation_names_block_and_value(blocks, match):
    with pytest.raises(ArchSpecError, match=match):
        ArchSpec((1, 28, 28), 10, blocks)


def test_from_dict_rejects_unknown_keys_and_kinds():
    with pytest.raises(ArchSpecError, match=r"blocks\[0\]: kind must be one of"):
        ArchSpec.from_dict({"input_shape": [1, 8, 8], "classes": 2, "blocks": [{"kind": "lstm"}]})
    with pytest.raises(ArchSpecError, match=r"unknown keys \['filter'\]"):
        ArchSpec.from_dict({"input_shape": [1, 8, 8], "classes": 2, "blocks": [{"kind": "conv", "filter": 3}]})
    with pytest.raises(ArchSpecError, match="input_mode"):
        ArchSpec((1, 8, 8), 2, (), input_mode="float")


def test_describe_names_every_fusion_apart():
    descs = {ArchSpec((1, 8, 8), 2, (ConvBlock(4, 3, pool=2, fusion=f),)).describe() for f in
             ("recompute", "rowbuffer", "unfused")}
    assert descs == {"u8-C4k3P2r", "u8-C4k3P2b", "u8-C4k3P2u"}

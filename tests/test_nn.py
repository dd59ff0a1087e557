import torch

from ebnn_core import ArchSpec, ConvBlock, DenseBlock
from ebnn_core.nn import BNN, InputQuantizer, sign_ste


def test_sign_forward_never_zero():
    x = torch.tensor([-2.0, -1.0, -1e-9, 0.0, 1e-9, 1.0, 3.0])
    assert sign_ste(x).tolist() == [-1, -1, -1, 1, 1, 1, 1]


def test_ste_backward_clips_outside_unit_interval():
    x = torch.tensor([-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5], requires_grad=True)
    sign_ste(x).backward(torch.full_like(x, 2.0))
    assert x.grad.tolist() == [0.0, 2.0, 2.0, 2.0, 2.0, 2.0, 0.0]


def test_input_quantizer_modes():
    x = torch.tensor([0, 127, 128, 255], dtype=torch.uint8)
    assert InputQuantizer("binary")(x).tolist() == [-1, -1, 1, 1]
    assert torch.allclose(InputQuantizer("uint8")(x), torch.tensor([0, 127, 128, 255]) / 255.0)


def test_binary_layers_use_signed_weights_and_clip():
    spec = ArchSpec((1, 6, 6), 3, (ConvBlock(2, 3), DenseBlock(4)))
    m = BNN(spec)
    with torch.no_grad():
        m.blocks[0].conv.weight.mul_(10)
    m.clip_weights()
    assert m.blocks[0].conv.weight.abs().max() <= 1.0
    out = m(torch.randint(0, 256, (5, 1, 6, 6), dtype=torch.uint8))
    assert out.shape == (5, 3)
    # every hidden activation is exactly ±1
    acts = []
    m.blocks[1].register_forward_hook(lambda mod, i, o: acts.append(o))
    m.eval()(torch.randint(0, 256, (5, 1, 6, 6), dtype=torch.uint8))
    assert set(acts[0].unique().tolist()) <= {-1.0, 1.0}

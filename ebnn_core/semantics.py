"""The inference constants every implementation shares (PyTorch, NumPy reference, generated C).

sign(x) = +1 if x >= 0 else -1, everywhere; a +1 is stored as bit 1 (ebnn_core.bits).
"""
PIXEL_SCALE = 255  # uint8 input mode: the network sees pixel / PIXEL_SCALE; folding absorbs it
BINARY_INPUT_THRESHOLD = 128  # binary input mode: pixel >= 128 is +1, else -1
BN_EPS = 1e-5

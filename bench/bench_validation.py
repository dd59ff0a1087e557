"""Per preset and device: RAM measured on the emulated device against the memory model, and cycles (AVR,
simavr) or instructions (Cortex-M, Curie; unicorn) against the latency model. Prints the worst ratio per
device (AVR: simavr's exact cycles; Cortex-M, Curie: cycles from the unicorn trace and the core's cycle
table, validation/cycles.py). Random (seeded) weights: resources do not depend on training.

    .venv/bin/python bench/bench_validation.py [images]
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ebnn_core import reference_predict  # noqa: E402
from ebnn_core.data import load_mnist  # noqa: E402
from ebnn_core.folded import fold  # noqa: E402
from ebnn_core.nn import BNN  # noqa: E402
from ebnn_core.testing import randomize  # noqa: E402
from codegen import generate  # noqa: E402
from pipeline.config import arch_spec, compose, resolved  # noqa: E402
from tests.test_resources import device  # noqa: E402
from validation.check import validate_device  # noqa: E402

PRESETS = ["mlp-1", "mlp-2", "conv-1", "conv-2", "convpool-1", "convpool-2", "conv-1-le-i", "conv-1-le-ii"]
DEVICES = ["curie", "cortex-m0", "cortex-m4", "avr"]


def main(images: int = 2) -> None:
    x = load_mnist().test_x[:images]
    worst: dict[str, dict[str, float]] = {d: {} for d in DEVICES}
    print("| preset | device | RAM measured / modelled B | stack measured / modelled B | measured | latency model | ok |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in PRESETS:
            spec = arch_spec(resolved(compose("train", [f"arch={name}"])))
            fm = fold(randomize(BNN(spec), 0))
            ref = reference_predict(fm, x)
            for dn in DEVICES:
                d = device(dn)
                w = Path(tmp) / name / dn
                r = validate_device(fm, d, generate(fm, d, w / "lib"), w, None, x, ref, count_images=1)
                ram, lat = r.get("ram", {}), r.get("latency", {})
                if "total_measured" not in ram:
                    print(f"| {name} | {dn} | not built: {'; '.join(r['failures'])[:90]} | | | | no |")
                    continue
                ratio = ram["total_modelled"] / ram["total_measured"]
                worst[dn]["ram"] = max(worst[dn].get("ram", 0), ratio)
                if "cycles_measured" in lat:
                    meas = f"{lat['cycles_measured']} cycles"
                    lr = lat["cycles_modelled"] / lat["cycles_measured"]
                else:
                    meas = (f"{lat.get('cycles_estimated')} cycles from {lat.get('instructions_per_inference')} "
                            "instructions")
                    lr = lat["cycles_modelled"] / max(1, lat.get("cycles_estimated", 1))
                worst[dn]["latency"] = max(worst[dn].get("latency", 0), abs(np.log(lr)))
                print(f"| {name} | {dn} | {ram['total_measured']} / {ram['total_modelled']} | "
                      f"{ram['stack_measured']} / {ram['stack_modelled']} | {meas} | {lat['cycles_modelled']} cycles "
                      f"({lr:.2f}x) | {'yes' if r['ok'] else 'no: ' + '; '.join(r['failures'])[:60]} |", flush=True)
    for dn, w in worst.items():
        print(f"{dn}: worst modelled/measured RAM {w.get('ram', float('nan')):.3f}; worst latency model off by "
              f"{np.exp(w.get('latency', float('nan'))):.2f}x (modelled cycles vs simavr's, or the trace's estimate)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)

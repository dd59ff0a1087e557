"""Calibrate the latency model's per kernel path constants against emulator cycles; write them into
conf/device/<device>.yaml (`cycles:`), and report the worst relative error on the presets and on a set of
random ArchSpecs held out of the fit.

    .venv/bin/python bench/calibrate_latency.py --devices avr cortex-m0 cortex-m4 curie --fit 140 --held-out 200

Per device, each ArchSpec (the 8 presets of conf/arch/ plus random ones of the search space,
conf/space/default.yaml, on MNIST's 28x28 input, within the device's RAM budget or 16 KB) gets seeded
random weights (ebnn_core.testing.randomize + fold), its C library generated and built bare-metal
(validation.build), and is measured on the first `--images` MNIST test images:
- avr: simavr's exact cycle count (validation.run; images needing more RAM than the 2 KB part run on the
  atmega1284p, the same core);
- cortex-m0, cortex-m4, curie: cycles derived from the unicorn instruction trace (validation.count) with
  the per-core cycle tables of validation/cycles.py (stated there, from the cores' reference manuals;
  Lakemont: 1 per instruction + 1 per taken branch).
Then the constants of ebnn_core.resources.COST_KEYS are fitted by non-negative least squares on the
relative error (each row divided by its measured cycles) over the presets and the `--fit` random specs;
the `--held-out` random specs are not used in the fit. Measurements are cached by content under
~/.cache/ebnn-automl/latency, keyed on what the measurement depends on (the generated library's C and
headers, the harness and measuring code of validation/, the toolchain, the RAM budget, the images, the
seed), so a rerun only fits (--no-write: print, leave the device files alone).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ebnn_core import ArchSpec, Device, memory_plan, total_ops  # noqa: E402
from ebnn_core.resources import COST_KEYS, latency_terms  # noqa: E402
from validation.build import BuildError  # noqa: E402

INPUT_SHAPE, CLASSES = (1, 28, 28), 10
MAX_OPS = 2_500_000  # random specs above this many generic ops are skipped: emulation time


def load_device(name: str) -> Device:
    return Device.from_dict(yaml.safe_load((ROOT / "conf" / "device" / f"{name}.yaml").read_text()))


def presets() -> dict[str, ArchSpec]:
    out = {}
    for p in sorted((ROOT / "conf" / "arch").glob("*.yaml")):
        d = yaml.safe_load(p.read_text())
        out[d["name"]] = ArchSpec.from_dict({"input_shape": INPUT_SHAPE, "classes": CLASSES,
                                             "input_mode": d.get("input_mode", "uint8"), "blocks": d["blocks"]})
    return out


def random_specs(seed: int, count: int, device: Device, exclude: set[str]) -> list[ArchSpec]:
    """Random ArchSpecs of the default search space within the device's RAM budget (at least 16 KB)."""
    from search.space import RandomChooser, suggest_arch

    space = yaml.safe_load((ROOT / "conf" / "space" / "default.yaml").read_text())
    chooser = RandomChooser(seed)
    small = device.toolchain.get("family") == "avr"  # static data must fit the 2 KB part's data region
    budget = (device.ram_kb_total * 1024 - 192) if small else max(device.ram_kb or 16, 16) * 1024
    out: list[ArchSpec] = []
    seen = set(exclude)
    while len(out) < count:
        spec = suggest_arch(chooser, space, INPUT_SHAPE, CLASSES)
        h = spec.short_hash()
        mem = memory_plan(spec, device)
        ram = mem.ram_bytes - mem.stack_bytes if small else mem.ram_bytes
        if h in seen or ram > budget or total_ops(spec).total > MAX_OPS:
            continue
        seen.add(h)
        out.append(spec)
    return out


def measure(spec: ArchSpec, device: Device, images: np.ndarray, seed: int = 0) -> dict:
    """Cycles per inference (mean over the images) of the spec with seeded random weights on the device
    (validation.latency: built bare-metal, run under the device's emulator, cached by content)."""
    from validation.latency import measure_latency

    return measure_latency(spec, device, images, seed)


def fit(rows: list[dict[str, float]], measured: np.ndarray, objective: str = "lsq") -> dict[str, float]:
    """Non-negative cycle constants: minimax (the smallest worst relative error over the fit set, a linear
    program) or lsq (non-negative least squares on relative errors)."""
    a = np.array([[r[k] for k in COST_KEYS] for r in rows], dtype=float) / measured[:, None]
    b = np.ones(len(rows))
    scale = np.maximum(a.max(axis=0), 1e-12)  # column scaling for conditioning
    if objective == "minimax":
        from scipy.optimize import linprog

        n, k = a.shape
        an = a / scale
        # variables: x (k constants, >= 0) and t; minimise t with |an x - 1| <= t on every row
        cost = np.r_[np.zeros(k), 1.0]
        a_ub = np.block([[an, -np.ones((n, 1))], [-an, -np.ones((n, 1))]])
        b_ub = np.r_[b, -b]
        res = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=[(0, None)] * k + [(0, None)], method="highs")
        if not res.success:
            raise RuntimeError(f"minimax fit failed: {res.message}")
        x = res.x[:k] / scale
        return {key: float(v) for key, v in zip(COST_KEYS, x)}
    try:
        from scipy.optimize import nnls

        x, _ = nnls(a / scale, b, maxiter=50 * a.shape[1])
    except ImportError:
        x = np.clip(np.linalg.lstsq(a / scale, b, rcond=None)[0], 0, None)
    x = x / scale
    return {k: float(v) for k, v in zip(COST_KEYS, x)}


def predict(terms: dict[str, float], consts: dict[str, float]) -> float:
    return sum(terms[k] * consts[k] for k in COST_KEYS)


def _round(v: float) -> float | int:
    if v == 0:
        return 0
    r = float(f"{v:.4g}")
    return int(r) if r == int(r) and abs(r) >= 100 else r


def tolerance_of(*worst: float) -> float:
    """The stated error bound: the worst |error| seen outside the fit, rounded up to the next 5%."""
    return math.ceil(max(worst) * 20 - 1e-9) / 20


def write_cycles(device: str, consts: dict[str, float], tolerance: float, command: str, summary: str) -> None:
    """Replace the device file's latency section (`latency_tolerance:` and the last `cycles:` section, with
    the comment block before them)."""
    path = ROOT / "conf" / "device" / f"{device}.yaml"
    lines = path.read_text().splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.startswith(("cycles:", "latency_tolerance:")))
    while at > 0 and lines[at - 1].startswith("#"):
        at -= 1
    head = lines[:at]
    body = ["# Latency model: cycles per cost term (ebnn_core.resources.latency_terms), fitted by",
            f"#   {command}",
            f"# {summary}",
            "# latency_tolerance: the worst |estimate / measured - 1| outside the fit, rounded up to 5%",
            f"latency_tolerance: {tolerance}",
            "cycles:"]
    body += [f"  {k}: {_round(consts[k])}" for k in COST_KEYS]
    path.write_text("\n".join(head + body) + "\n")


def _check_set(args, dev: Device, images: np.ndarray, pre: dict, drawn: list[ArchSpec], consts: dict
               ) -> list[tuple[str, float]]:
    """(label, estimate/measured - 1) on `--check` random specs from `--check-seed`, none of them a preset or
    a spec the fit could have drawn: a second held-out set, judged with the constants just fitted."""
    excl = {s.short_hash() for s in pre.values()} | {s.short_hash() for s in drawn}
    out: list[tuple[str, float]] = []
    for spec in random_specs(args.check_seed, 3 * args.check, dev, excl):
        if len(out) == args.check:
            break
        try:
            m = measure(spec, dev, images, args.seed)
        except BuildError:
            continue
        out.append((f"check-{len(out)}", predict(latency_terms(spec, dev), consts) / m["cycles"] - 1.0))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", nargs="+", default=["avr", "cortex-m0", "cortex-m4", "curie"])
    ap.add_argument("--fit", type=int, default=140, help="random ArchSpecs in the fit")
    ap.add_argument("--held-out", type=int, default=200, help="random ArchSpecs held out of the fit")
    ap.add_argument("--images", type=int, default=2, help="MNIST test images per measurement")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", type=int, default=25,
                    help="a second held-out set: random ArchSpecs from another chooser seed, never in the fit")
    ap.add_argument("--check-seed", type=int, default=7777)
    ap.add_argument("--no-write", action="store_true", help="print only; leave conf/device/*.yaml alone")
    ap.add_argument("--objective", choices=["lsq", "minimax"], default="lsq",
                    help="lsq: least squares on relative errors; minimax: smallest worst error on the fit set (overfits: tried, worse held out)")
    args = ap.parse_args(argv)
    command = "bench/calibrate_latency.py " + " ".join(
        ["--devices", *args.devices, "--fit", str(args.fit), "--held-out", str(args.held_out),
         "--images", str(args.images), "--seed", str(args.seed), "--objective", args.objective,
         "--check", str(args.check), "--check-seed", str(args.check_seed)])
    from ebnn_core.data import load_mnist

    images = load_mnist().test_x[:args.images]
    pre = presets()
    worst: dict[str, tuple[float, float, float]] = {}
    for name in args.devices:
        dev = load_device(name)
        specs = random_specs(args.seed + 1, 2 * (args.fit + args.held_out), dev,
                             {s.short_hash() for s in pre.values()})
        results, n_random, n_pre = [], 0, 0
        candidates = [(name_, s, True) for name_, s in pre.items()] + [(None, s, False) for s in specs]
        for label, spec, is_preset in candidates:
            if not is_preset and n_random == args.fit + args.held_out:
                break
            try:
                m = measure(spec, dev, images, args.seed)
            except BuildError as e:  # AVR: static RAM beyond the 2 KB part's data region
                print(f"{name:10s} {label or 'random':14s} {spec.describe()[:60]:60s} skipped: {e.reason[:80]}")
                continue
            if is_preset:
                n_pre += 1
            else:
                label = f"random-{n_random}" if n_random < args.fit else f"held-{n_random - args.fit}"
                n_random += 1
            results.append((label, spec, m["cycles"], latency_terms(spec, dev)))
            print(f"{name:10s} {label:14s} {spec.describe()[:60]:60s} {m['cycles']:14.0f} cycles "
                  f"({m['seconds']} s)", flush=True)
        n_fit = n_pre + min(n_random, args.fit)
        held = results[n_fit:]
        consts = fit([r[3] for r in results[:n_fit]], np.array([r[2] for r in results[:n_fit]]), args.objective)
        consts = {k: float(_round(v)) for k, v in consts.items()}
        errs = [(label, predict(te, consts) / c - 1.0) for label, _, c, te in results]

        def worst_of(rows, j):
            return max((abs(r[j]) for r in rows), default=float("nan"))

        pre_err, fit_err, held_err = worst_of(errs[:n_pre], 1), worst_of(errs[:n_fit], 1), worst_of(errs[n_fit:], 1)
        for label, e in errs:
            print(f"  {name:10s} {label:14s} estimate/measured - 1 = {e:+.3f}")
        check = _check_set(args, dev, images, pre, specs, consts)
        check_err = worst_of(check, 1)
        for label, e in check:
            print(f"  {name:10s} {label:14s} estimate/measured - 1 = {e:+.3f}")
        print(f"{name}: worst |error| of the estimate: presets {pre_err:.3f}, fit set {fit_err:.3f}, "
              f"held-out {held_err:.3f}, check set {check_err:.3f}")
        print(f"{name}: stated tolerance {tolerance_of(pre_err, held_err, check_err):.2f}")
        print(f"{name}: constants {json.dumps({k: v for k, v in consts.items()})}", flush=True)
        worst[name] = (pre_err, held_err, check_err)
        if not args.no_write:
            src = ("simavr exact cycles (atmega1284p when static RAM exceeds the 2 KB part)" if name == "avr"
                   else measure(results[0][1], dev, images, args.seed)["source"])
            summary = (f"({src}; {n_pre} presets + {args.fit} random specs; worst |error| presets "
                       f"{pre_err:.1%}, {len(held)} held-out random specs {held_err:.1%}, {len(check)} check-set specs "
                       f"{check_err:.1%})")
            write_cycles(name, consts, tolerance_of(pre_err, held_err, check_err), command, summary)
    print("\nworst relative error per device (presets, held-out random ArchSpecs, check set):")
    for name, (p, h, c) in worst.items():
        print(f"  {name:10s} presets {p:6.1%}   held-out {h:6.1%}   check {c:6.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

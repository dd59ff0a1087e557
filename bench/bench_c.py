"""Instructions per inference of the generated C, per op of the model, against a naive baseline.

    .venv/bin/python bench/bench_c.py [--presets conv-1,mlp-1,...] [--images 10]

For each preset (random trained-looking weights; instruction counts hardly depend on them), the host
build (gcc -O2) runs under `valgrind --tool=callgrind` counting only inside ebnn_predict_scores. The
count per inference is divided by the model's op count (XNOR-popcount words + pixel adds + compares,
ebnn_core.resources.total_ops). The baseline is bench/naive_ebnn.c, the same API done one bit at a
time with a divide and a modulo per bit, as the original eBNN code did, linked with the same model.c;
both must print the same predictions and scores.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from codegen import generate  # noqa: E402
from ebnn_core import total_ops  # noqa: E402
from ebnn_core.data import load_mnist  # noqa: E402
from ebnn_core.folded import fold  # noqa: E402
from ebnn_core.nn import BNN  # noqa: E402
from ebnn_core.testing import randomize  # noqa: E402
from pipeline.config import arch_spec, compose, device, resolved  # noqa: E402

NAIVE = Path(__file__).resolve().parent / "naive_ebnn.c"
PRESETS = "mlp-1,mlp-2,conv-1,conv-2,convpool-1,convpool-2,conv-1-le-i,conv-1-le-ii"


def callgrind_instructions(exe: Path, images: Path, cwd: Path) -> int:
    out = cwd / f"{exe.name}.callgrind"
    subprocess.run(["valgrind", "--tool=callgrind", "--toggle-collect=ebnn_predict_scores",
                    f"--callgrind-out-file={out}", str(exe), str(images)], cwd=cwd, check=True,
                   capture_output=True)
    m = re.search(r"^totals:\s+(\d+)", out.read_text(), re.M)
    return int(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", default=PRESETS)
    ap.add_argument("--images", type=int, default=10)
    args = ap.parse_args()
    if not shutil.which("valgrind"):
        sys.exit("valgrind missing: scripts/setup.sh installs it")
    test = load_mnist().test_x[: args.images]
    print(f"{'preset':<14} {'ops':>9} {'instr/inf':>11} {'instr/op':>9} {'naive instr/inf':>16} "
          f"{'naive instr/op':>15} {'naive/ours':>11}")
    for name in args.presets.split(","):
        d = resolved(compose("codegen", [f"arch={name}", "device=host"]))
        spec = arch_spec(d)
        fm = fold(randomize(BNN(spec), 0))
        with tempfile.TemporaryDirectory() as tmp:
            dev = device(d)
            out = generate(fm, dev, Path(tmp) / "lib")
            shutil.copyfile(NAIVE, out / "naive_ebnn.c")
            (out / "images.u8").write_bytes(test.tobytes())
            cflags = [f for f in dev.toolchain.get("cflags", []) if f != "-O2"]
            for exe, extra in (("ours", ["ebnn.c"]), ("naive", ["-DEBNN_SPECIALIZE=0", "naive_ebnn.c"])):
                subprocess.run(["gcc", "-std=c99", "-O2", *cflags, "-I.", "main.c", "model.c", *extra, "-o", exe],
                               cwd=out, check=True)
            res = [subprocess.run([f"./{e}", "-s", "images.u8"], cwd=out, capture_output=True, text=True,
                                  check=True).stdout for e in ("ours", "naive")]
            if res[0] != res[1]:
                sys.exit(f"{name}: the naive baseline disagrees with the runtime")
            ours = callgrind_instructions(out / "ours", out / "images.u8", out) / args.images
            naive = callgrind_instructions(out / "naive", out / "images.u8", out) / args.images
        ops = total_ops(spec).total
        print(f"{name:<14} {ops:>9} {ours:>11.0f} {ours / ops:>9.2f} {naive:>16.0f} {naive / ops:>15.2f} "
              f"{naive / ours:>11.1f}")
    print("instr/op: instructions per inference over (XNOR-popcount words + pixel adds + compares); "
          "naive/ours: how many times more instructions the bit-at-a-time baseline needs")


if __name__ == "__main__":
    main()

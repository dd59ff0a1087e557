"""The command line: `python -m pipeline STAGE key=value ...`.

    python -m pipeline --help
    python -m pipeline train arch=conv-1 dataset=mnist device=curie epochs=1
    python -m pipeline train --cfg job arch=mlp-1      # Hydra's own flags work after the stage name

The stage name is taken off the arguments and used as the config name (conf/STAGE.yaml); the rest are
Hydra overrides. Input errors print one line naming the key and the value and exit with status 2.
SIGINT / SIGTERM during a search print one line `interrupted by SIGINT: ...` and exit 130 / 143.
"""
from __future__ import annotations

import sys

from .config import CONF_DIR, compose, stages
from .errors import StageFailed, UserError

# The one registry of stages: `--help`, the CLI, tests and dvc.yaml follow it (conf/<name>.yaml is each root
# config). Each entry: the stage function ("module:function", imported only when the stage runs) and its help.
STAGES = {
    "search": ("pipeline.search:search", "constrained multi-objective architecture search (Optuna + MLflow)"),
    "promote": ("pipeline.promote:promote", "retrain the Pareto front at full fidelity, score, register in MLflow"),
    "train": ("pipeline.train:train", "train one architecture preset, fold it, score it with the integer reference"),
    "codegen": ("pipeline.codegen:codegen", "FoldedModel -> self-contained C library for a device (templates + c_runtime)"),
    "validate": ("pipeline.validate:validate", "build, run and measure a model's C on the host and on emulated devices"),
    "report": ("pipeline.report:report", "the promoted front beside the paper's Table 1: tables and plots"),
}


def usage() -> str:
    lines = ["usage: python -m pipeline STAGE [key=value ...] [hydra flags]", "", "stages:"]
    for s in stages():
        lines.append(f"  {s:<10} {STAGES[s][1] if s in STAGES else ''}")
    lines += ["", f"configs: {CONF_DIR}", "example: python -m pipeline train arch=conv-1 dataset=mnist epochs=1"]
    return "\n".join(lines)


def run_stage(stage: str, cfg):
    import importlib

    if stage not in STAGES:
        raise UserError(f"stage={stage}: not implemented yet")
    module, func = STAGES[stage][0].split(":")
    return getattr(importlib.import_module(module), func)(cfg)


def _hydra_main(stage: str, args: list[str]) -> None:
    """Hand over to Hydra's own entry point for its flags (--cfg, --multirun, --info, ...)."""
    import hydra

    sys.argv = [f"pipeline {stage}"] + args

    @hydra.main(config_path=str(CONF_DIR), config_name=stage, version_base="1.3")
    def _task(cfg):
        return run_stage(stage, cfg)

    _task()


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    stage, rest = args[0], args[1:]
    try:
        if stage not in stages():
            raise UserError(f"stage={stage}: no such stage; choose one of {', '.join(stages())}")
        if any(a.startswith("-") for a in rest):
            _hydra_main(stage, rest)
        else:
            run_stage(stage, compose(stage, rest))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except StageFailed as e:
        for line in str(e).splitlines():
            print(f"failed: {line}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BaseException as e:
        from search.interrupts import Interrupted

        if isinstance(e, Interrupted):
            print(e.message, file=sys.stderr)
            return e.exit_code
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())

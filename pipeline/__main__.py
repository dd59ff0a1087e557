"""The command line: `python -m pipeline STAGE key=value ...`.

    python -m pipeline --help
    python -m pipeline train arch=conv-1 dataset=mnist device=curie epochs=1
    python -m pipeline train --cfg job arch=mlp-1      # Hydra's own flags work after the stage name

The stage name is taken off the arguments and used as the config name (conf/STAGE.yaml); the rest are
Hydra overrides. Input errors print one line naming the key and the value and exit with status 2.
"""
from __future__ import annotations

import sys

from .config import CONF_DIR, compose, stages
from .errors import StageFailed, UserError

STAGE_HELP = {
    "train": "train one architecture preset, fold it, score it with the integer reference",
    "search": "constrained multi-objective architecture search (Optuna + MLflow)",
    "codegen": "FoldedModel -> self-contained C library for a device (templates + c_runtime)",
    "validate": "build, run and measure a model's C on the host and on emulated devices",
}


def usage() -> str:
    lines = ["usage: python -m pipeline STAGE [key=value ...] [hydra flags]", "", "stages:"]
    for s in stages():
        lines.append(f"  {s:<10} {STAGE_HELP.get(s, '')}")
    lines += ["", f"configs: {CONF_DIR}", "example: python -m pipeline train arch=conv-1 dataset=mnist epochs=1"]
    return "\n".join(lines)


def run_stage(stage: str, cfg):
    if stage == "train":
        from .train import train

        return train(cfg)
    if stage == "search":
        from .search import search

        return search(cfg)
    if stage == "codegen":
        from .codegen import codegen

        return codegen(cfg)
    if stage == "validate":
        from .validate import validate

        return validate(cfg)
    raise UserError(f"stage={stage}: not implemented yet")


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
    return 0


if __name__ == "__main__":
    sys.exit(main())

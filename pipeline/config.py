"""Composing a stage's Hydra config from conf/ and checking the values a user can get wrong.

    cfg = compose("train", ["arch=conv-1", "epochs=1"])

Tests call this with the same overrides as the command line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import UserError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
GROUPS = ("device", "dataset", "arch", "paths", "experiment", "space", "sampler", "profile", "recipe")


def stages() -> list[str]:
    return sorted(p.stem for p in CONF_DIR.glob("*.yaml"))


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _check_group_overrides(overrides: list[str]) -> None:
    """Name the key and the value for a config group option that does not exist (device=nosuch)."""
    for ov in overrides:
        key, eq, value = ov.lstrip("+~").partition("=")
        if not eq or key not in GROUPS or value in ("null", ""):
            continue
        if not (CONF_DIR / key / f"{value}.yaml").is_file():
            raise UserError(f"{key}={value}: no such {key}; choose one of {', '.join(group_options(key))}")


def compose(stage: str, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if stage not in stages():
        raise UserError(f"stage={stage}: no such stage; choose one of {', '.join(stages())}")
    _check_group_overrides(overrides)
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name=stage):
            cfg = hydra_compose(config_name=stage, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{' '.join(overrides) or stage}: {msg}") from None
    return cfg


def resolved(cfg) -> dict[str, Any]:
    """The config as plain containers with interpolations resolved; a broken value is a UserError."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except OmegaConfBaseException as e:
        raise UserError(f"{getattr(e, 'full_key', '?')}: {str(e).splitlines()[0]}") from None


def positive_int(d: dict, key: str, allow_none: bool = False, key_prefix: str = "") -> int | None:
    v = d.get(key)
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise UserError(f"{key_prefix}{key}={v}: must be a positive integer")
    return v


def positive_number(d: dict, key: str, allow_none: bool = False, key_prefix: str = "") -> float | None:
    v = d.get(key)
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
        raise UserError(f"{key_prefix}{key}={v}: must be a positive number")
    return float(v)


def arch_spec(d: dict):
    """ArchSpec from the composed `arch` and `dataset` groups."""
    from ebnn_core import ArchSpec, ArchSpecError

    arch, ds = d["arch"], d["dataset"]
    try:
        return ArchSpec.from_dict({
            "input_shape": ds["input_shape"], "classes": ds["classes"],
            "input_mode": arch.get("input_mode", "uint8"), "blocks": arch.get("blocks") or [],
        })
    except (ArchSpecError, TypeError, ValueError) as e:
        raise UserError(f"arch={arch.get('name')}: {e}") from None


def device(d: dict):
    from ebnn_core import Device, DeviceError

    try:
        return Device.from_dict(d["device"])
    except (DeviceError, TypeError) as e:
        raise UserError(f"device={d['device'].get('name')}: {e}") from None


def recipe(d: dict, key: str):
    """The training recipe at `key` (dotted: `fidelity.recipe`) of the resolved config; absent: the default."""
    from ebnn_core.recipe import Recipe, RecipeError

    node: Any = d
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    try:
        return Recipe.from_dict(node, key)
    except (RecipeError, TypeError) as e:
        raise UserError(str(e)) from None

"""dvc repro over the project's own dvc.yaml, in a copy of the checkout (one epoch, one preset)."""
import os
import shutil
import subprocess

import yaml

from .conftest import ROOT


def _copy_checkout(dst):
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dst / f)
    (dst / ".venv").symlink_to(ROOT / ".venv")
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)


def test_dvc_repro_builds_and_then_is_up_to_date(tmp_path):
    _copy_checkout(tmp_path)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["train"]["epochs"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    dvc = [str(ROOT / ".venv" / "bin" / "dvc")]
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    run = dict(cwd=tmp_path, env=env, capture_output=True, text=True)
    r = subprocess.run(dvc + ["repro", "codegen@conv-1-le-ii"], **run)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "artifacts" / "train" / "conv-1-le-ii" / "metrics.json").is_file()
    assert (tmp_path / "artifacts" / "c" / "conv-1-le-ii" / "model.c").is_file()
    r = subprocess.run(dvc + ["repro", "codegen@conv-1-le-ii"], **run)
    assert r.returncode == 0 and "didn't change, skipping" in r.stdout, r.stdout
    r = subprocess.run(dvc + ["status", "codegen@conv-1-le-ii"], **run)
    assert r.returncode == 0 and "up to date" in r.stdout, r.stdout
    # a parameter change makes the training stage stale again
    params["train"]["epochs"] = 2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    r = subprocess.run(dvc + ["status", "train@conv-1-le-ii"], **run)
    assert "train.epochs" in r.stdout, r.stdout

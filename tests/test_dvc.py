"""dvc repro over the project's own dvc.yaml, in a copy of the checkout: the whole chain
search -> promote -> codegen -> validate -> report on the smoke profile."""
import json
import os
import shutil
import subprocess

import pytest
import yaml

from .conftest import ROOT


def _copy_checkout(dst):
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dst / f)
    (dst / ".venv").symlink_to(ROOT / ".venv")
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)


def test_params_study_is_the_name_the_search_gives():
    from pipeline.config import compose, resolved
    from pipeline.search import study_name

    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    d = resolved(compose("search", [f"device={p['device']}", f"ram_kb={p['ram_kb']}",
                                    f"profile={p['search']['profile']}"]))
    assert study_name(d) == p["study"]


def test_dvc_stages_are_the_registered_chain():
    from pipeline.__main__ import STAGES

    stages = list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
    assert stages == ["search", "promote", "codegen", "validate", "report"]
    assert set(stages) <= set(STAGES)


def test_a_fresh_clone_shows_the_plan_without_running_it(tmp_path):
    """`dvc repro --dry --force` lists the five stages' commands in order and runs none (plain --dry stops
    at the first missing dependency on a fresh clone: the run cache hashes every dependency, DVC #9021)."""
    _copy_checkout(tmp_path)
    r = subprocess.run([str(ROOT / ".venv" / "bin" / "dvc"), "repro", "--dry", "--force"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    cmds = [ln[2:] for ln in r.stdout.splitlines() if ln.startswith("> ")]
    assert [c.split()[3] for c in cmds] == ["search", "promote", "codegen", "validate", "report"], r.stdout
    assert all(c.startswith(".venv/bin/python -m pipeline ") for c in cmds)
    assert not (tmp_path / "artifacts").exists() and not (tmp_path / "dvc.lock").exists()


@pytest.mark.slow  # about 7 minutes on 2 cores: .ci/run runs it after the default suite
def test_dvc_repro_runs_the_whole_chain_then_is_up_to_date(tmp_path):
    _copy_checkout(tmp_path)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["search"]["profile"] = "smoke"
    params["promote"]["epochs"] = 1
    params["validate"]["images"] = 5
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    dvc = [str(ROOT / ".venv" / "bin" / "dvc")]
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    run = dict(cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    # a fresh clone shows its plan (also dvc repro --dry --force: the test above)
    r = subprocess.run(dvc + ["status"], **run)
    assert r.returncode == 0 and all(f"{s}:" in r.stdout for s in ("search", "promote", "codegen", "validate",
                                                                     "report")), r.stdout
    r = subprocess.run(dvc + ["repro"], **run)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    study, art = params["study"], tmp_path / "artifacts"
    promoted = json.loads((art / "promote" / study / "promoted.json").read_text())
    assert promoted["models"]
    for m in promoted["models"]:
        assert (art / "c" / study / m["arch_hash"] / "model.c").is_file()
        v = json.loads((art / "validate" / study / m["arch_hash"] / "validation.json").read_text())
        assert v["ok"] and v["devices"]["host"]["images_checked"] == 10000
    report = (art / "report" / study / "report.md").read_text()
    for row in ("MLP-1", "MLP-2", "Conv-1", "Conv-2", "ConvPool-1", "ConvPool-2", "Conv-1-LE-I", "Conv-1-LE-II"):
        assert f"| {row} |" in report
    c_files = {p: p.read_bytes() for p in (art / "c" / study).rglob("*.c")}
    r = subprocess.run(dvc + ["repro"], **run)
    assert r.returncode == 0 and "didn't change, skipping" in r.stdout and "Running stage" not in r.stdout, r.stdout
    r = subprocess.run(dvc + ["metrics", "show"], **run)
    assert r.returncode == 0 and "test_accuracy" in r.stdout and "ram_bytes" in r.stdout, r.stdout
    r = subprocess.run(dvc + ["plots", "show", "--json"], **run)
    assert r.returncode == 0, r.stderr
    # the same seed gives byte-identical C: regenerate from the promoted models
    shutil.rmtree(art / "c" / study)
    r = subprocess.run(dvc + ["repro", "-s", "codegen"], **run)
    assert r.returncode == 0, r.stderr
    assert {p: p.read_bytes() for p in (art / "c" / study).rglob("*.c")} == c_files

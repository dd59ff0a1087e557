"""The command line: help, input errors (one line, key and value, exit 2), and the train stage."""
import json

import pytest

from pipeline.config import compose

from .conftest import run_cli


def test_help_lists_stages():
    r = run_cli("--help")
    assert r.returncode == 0 and "train" in r.stdout and "usage" in r.stdout


@pytest.mark.parametrize("args, needle", [
    (["train", "device=nosuch"], "device=nosuch: no such device"),
    (["train", "arch=nosuch"], "arch=nosuch: no such arch"),
    (["train", "epochs=abc"], "epochs=abc: must be a positive integer"),
    (["train", "epochs=0"], "epochs=0: must be a positive integer"),
    (["train", "lr=-1"], "lr=-1: must be a positive number"),
    (["train", "nokey=1"], "nokey=1"),
    (["trian"], "stage=trian: no such stage"),
    (["train", "dataset=cifar10_easy", "dataset.root=/nonexistent/cifar"], "dataset.root=/nonexistent/cifar"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle):
    r = run_cli(*args)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_bad_block_in_arch_names_block(tmp_path):
    r = run_cli("train", "arch=conv-1", "arch.blocks.0.kernel=40")
    assert r.returncode == 2
    assert "arch=conv-1: blocks[0] (conv): kernel 40 larger than the padded 28x28 input" in r.stderr


def test_hydra_cfg_flag_after_stage():
    r = run_cli("train", "--cfg", "job", "arch=mlp-2", "ram_kb=7")
    assert r.returncode == 0, r.stderr
    assert "name: mlp-2" in r.stdout and "ram_kb: 7" in r.stdout


def test_every_arch_preset_is_valid_on_every_dataset():
    from pipeline.config import arch_spec, group_options, resolved

    for ds in ("mnist", "fashion_mnist", "cifar10_easy"):
        for arch in group_options("arch"):
            spec = arch_spec(resolved(compose("train", [f"arch={arch}", f"dataset={ds}"])))
            assert spec.blocks


def test_train_stage_writes_metrics(tmp_path):
    r = run_cli("train", "arch=conv-1-le-ii", "epochs=1", "train_subset=2000", "progress=false",
                f"paths.artifacts={tmp_path}")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "train" / "conv-1-le-ii"
    m = json.loads((out / "metrics.json").read_text())
    for key in ("test_accuracy", "reference_accuracy", "disagreements", "ram_bytes", "flash_bytes", "model_bytes",
                "latency_ms_est"):
        assert key in m
    assert m["test_accuracy"] > 0.5 and m["disagreements"] <= 10
    assert (out / "folded.npz").is_file() and (out / "arch.json").is_file()
    assert "reference_accuracy" in r.stdout  # the summary table


def test_hydra_multirun_after_stage(tmp_path):
    r = run_cli("train", "--multirun", "epochs=1", "train_subset=500", "arch=conv-1-le-ii,conv-1-le-i",
                "progress=false", f"paths.artifacts={tmp_path}", f"hydra.sweep.dir={tmp_path}/multirun", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for arch in ("conv-1-le-ii", "conv-1-le-i"):
        assert (tmp_path / "train" / arch / "metrics.json").is_file()

"""repro recipe from-timm: a timm args.yaml (the format train.py writes: yaml.safe_dump of its argparse
namespace, keys sorted) becomes a recipe block that validates; timm's silent defaults are written out, an
argument with no field is one line, exit 2."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from conftest import REPO

ARGS = Path(__file__).parent / "data" / "timm_args.yaml"


def _run(path, *extra):
    return subprocess.run([sys.executable, "-m", "repro", "recipe", "from-timm", str(path), "--dataset", "imagenet",
                           *extra], cwd=REPO, capture_output=True, text=True)


def test_a_deit_args_yaml_becomes_a_recipe_with_every_default_written_out(tmp_path):
    out = _run(ARGS, "--devices", "8")
    assert out.returncode == 0, out.stderr
    r = yaml.safe_load(out.stdout)["recipes"]["timm"]
    assert (r["optimizer"], r["lr"], r["weight_decay"], r["batch_size"]) == ("adamw", 0.0005, 0.05, 1024)
    assert r["weight_decay_skip"] == ["norm", "bias"]  # timm's filter_bias_and_bn, never left implicit
    assert r["label_smoothing"] == 0.1 and (r["mixup_alpha"], r["cutmix_alpha"]) == (0.8, 1.0)
    assert (r["schedule"], r["min_lr"], r["lr_step"], r["warmup_epochs"], r["warmup_lr"], r["warmup_at"]) == (
        "cosine", 1e-05, "epoch", 5, 1e-06, "start")
    assert (r["ema_decay"], r["drop_path"], r["grad_clip_norm"]) == (0.99996, 0.1, 1.0)
    assert r["augment"] == ["random_resized_crop", "hflip",
                            {"color_jitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4}}, "normalize",
                            {"random_erasing": {"p": 0.25, "scale": [0.02, 1 / 3], "ratio": [0.3, 3.3]}}]
    from repro.specs import Recipe

    Recipe.model_validate({k: v for k, v in r.items()})


def test_an_argument_without_a_field_is_one_line_exit_2(tmp_path):
    args = yaml.safe_load(ARGS.read_text())
    for change, name in (({"aa": "rand-m9-mstd0.5-inc1"}, "aa"), ({"layer_decay": 0.65}, "layer_decay"),
                         ({"jsd_loss": True}, "jsd_loss"), ({"sched": "plateau"}, "sched"),
                         ({"remode": "pixel"}, "remode")):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**args, **change}))
        out = _run(path)
        lines = out.stderr.splitlines()
        assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: {path}: {name}: "), out.stderr

"""Bring your own paper (issue 15): plugin files (a paper's own, --plugins, $REPRO_PLUGINS), installed
entry points, timm/torchvision models by name; plugins reach spawned workers; an edited plugin is a new
job with new counts; a bad plugin is one line, exit 2, nothing written."""
from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path

import pytest

from conftest import TOY_PAPER

# ECA (Wang et al., CVPR 2020): a k-wide 1-D convolution across channels of the pooled features
ECA = """\
from torch import nn
from repro.plugins import register_attention


@register_attention("eca_test")
class ECA(nn.Module):
    def __init__(self, channels, k_size={k}):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv1d(1, 1, kernel_size=k_size, padding=(k_size - 1) // 2, bias=False)
        self.gate = nn.Sigmoid()

    def forward(self, x, identity=None, context=None):
        y = self.conv(self.pool(x).squeeze(-1).transpose(-1, -2)).transpose(-1, -2).unsqueeze(-1)
        return x * self.gate(y)
"""

TABLE = """\
table: table1
title: "Plugin table"
columns:
  - {label: Params, metric: params}
  - {label: Error, metric: top1_err}
defaults: {recipe: tiny}
rows:
  - {label: ECA-ResNet-8, model: resnet_cifar, model_kwargs: {depth: 8, attention: eca_test},
     values: {Params: "78.1K", Error: "30.0"}}
  - {label: ResNet-18 (timm), model: timm/resnet18, values: {Params: "11.2M", Error: "?"}}
"""


def paper(root: Path, k: int = 3, plugin_line: str = "plugins: [eca.py]\n") -> Path:
    d = root / "plug"
    d.mkdir(parents=True, exist_ok=True)
    (d / "paper.yaml").write_text(TOY_PAPER.replace("paper: toy", "paper: plug") + plugin_line)
    (d / "table1.yaml").write_text(TABLE)
    (d / "eca.py").write_text(ECA.format(k=k))
    return root


def q(db: Path, sql: str):
    with sqlite3.connect(db) as con:
        return con.execute(sql).fetchall()


def test_a_papers_plugin_attention_plugs_into_a_builtin_backbone_and_its_edit_is_a_new_job(tmp_path, cli):
    specs = paper(tmp_path / "specs")
    db = tmp_path / "r.db"
    args = ("run", "plug/table1", "--kind", "profile", "--specs-dir", str(specs), "--db", f"sqlite:///{db}")
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    params = dict(q(db,
                    "select j.model, m.value from metrics m join jobs j on j.id = m.job_id where m.name = 'params'"))
    import repro_models

    base = sum(p.numel() for p in repro_models.create("resnet_cifar", num_classes=100, depth=8).parameters())
    # ECA adds one k-wide kernel per block: ResNet-8 has 3 blocks, k = 3
    assert params["resnet_cifar"] == base + 3 * 3
    assert params["timm/resnet18"] == 11_227_812  # timm's resnet18 with a 100-class head, counted exactly
    versions = [json.loads(v) for (v,) in q(db, "select versions from runs")]
    assert all(any(name == "eca.py" and fp.startswith("sha256:") for name,
                   fp in v["plugins"].items()) for v in versions)
    spec = json.loads(q(db, "select spec from jobs where model = 'timm/resnet18'")[0][0])
    assert spec["source"]["library"].startswith("timm==")
    # an edited plugin: a new job (the old result is not served), new counts
    paper(specs, k=5)
    again = cli(*args)
    assert again.returncode == 0 and "1 already done" in again.stdout, again.stdout  # the timm row only
    new = q(db, "select m.value from metrics m join jobs j on j.id = m.job_id where m.name = 'params' and "
                "j.model = 'resnet_cifar' order by m.id")
    assert [v for (v,) in new] == [params["resnet_cifar"], params["resnet_cifar"] + 3 * 2]


BAD = {
    "missing": ("plugins: [nowhere.py]\n", None, "plugins[0]: plugin {d}/nowhere.py: no such file"),
    "import-error": ("plugins: [broken.py]\n", "import numpy\nraise RuntimeError('half written')\n",
                     "plugin {d}/broken.py: fails to import: RuntimeError: half written"),
    "duplicate": ("plugins: [dup.py]\n", "from repro.plugins import register_attention\n"
                  "register_attention('se')(object)\n",
                  "plugin {d}/dup.py: registers attention 'se', which already exists (built-in)"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_plugin_is_one_line_exit_2_and_nothing_written(case, tmp_path, cli):
    line, source, expected = BAD[case]
    specs = paper(tmp_path / "specs", plugin_line=line)
    d = specs / "plug"
    if source is not None:
        (d / line.split("[")[1].split("]")[0]).write_text(source)
    db = tmp_path / "r.db"
    for args in (("specs", "check"), ("run", "plug/table1", "--db", f"sqlite:///{db}")):
        proc = cli(*args, "--specs-dir", str(specs))
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert lines[0].startswith("error: ") and expected.format(d=d) in lines[0], lines[0]
    assert not db.exists()


def test_plugins_option_env_and_a_clash_between_two_plugins(tmp_path, cli):
    one, two = tmp_path / "one.py", tmp_path / "two.py"
    model = textwrap.dedent("""\
        from torch import nn
        from repro.plugins import register_model

        @register_model("tiny_plugin_net")
        def tiny_plugin_net(num_classes=10):
            return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, num_classes))
        """)
    one.write_text(model)
    two.write_text(model)
    listed = cli("models", "list", "--plugins", str(one), "--format", "json")
    rows = {r["model"]: r for r in json.loads(listed.stdout)}
    assert rows["tiny_plugin_net"]["origin"] == "plugin one.py" and rows["se_r_resnet50"]["origin"] == "built-in"
    env = cli("models", "show", "tiny_plugin_net", "--format", "json", env={"REPRO_PLUGINS": str(one)})
    assert json.loads(env.stdout)["params"] == 3 * 32 * 32 * 10 + 10
    clash = cli("models", "list", "--plugins", str(one), "--plugins", str(two))
    assert clash.returncode == 2 and clash.stderr.strip() == \
        f"error: plugin {two}: registers model 'tiny_plugin_net', which already exists (plugin one.py)"


def test_an_installed_entry_point_registers_its_models(tmp_path, cli):
    """A tiny installed distribution: a *.dist-info with an entry point in the group repro.plugins, on
    the path of the subprocess (what `pip install my-attention-pkg` leaves in site-packages)."""
    site = tmp_path / "site"
    (site / "myattn").mkdir(parents=True)
    (site / "myattn" / "__init__.py").write_text(textwrap.dedent("""\
        from torch import nn
        from repro.plugins import register_attention

        @register_attention("entry_gate")
        class Gate(nn.Module):
            def __init__(self, channels):
                super().__init__()
                self.scale = nn.Parameter(nn.init.ones_(nn.Parameter(__import__("torch").empty(channels))))

            def forward(self, x, identity=None, context=None):
                return x * self.scale.view(1, -1, 1, 1)
        """))
    info = site / "myattn-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: myattn\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text("[repro.plugins]\nmyattn = myattn\n")
    env = {"PYTHONPATH": str(site)}
    shown = cli("models", "show", "resnet_cifar", "--num-classes", "10", "--format", "json", env=env)
    plain = json.loads(shown.stdout)["params"]
    code = ("import json, repro_models as m; from repro.plugin_loader import load_all; load_all(); "
            "net = m.create('resnet_cifar', num_classes=10, depth=8, attention='entry_gate'); "
            "print(json.dumps([sum(p.numel() for p in net.parameters()), "
            "m.registry.ORIGIN[('attention', 'entry_gate')]]))")
    import os
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=300)
    count, origin = json.loads(out.stdout)
    assert origin == "plugin myattn" and count > 0
    assert plain > 0


def test_repro_new_writes_a_paper_that_specs_check_accepts(tmp_path, cli):
    made = cli("new", "my-paper", "--dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in (tmp_path / "my-paper").iterdir()) == ["my_paper.py", "paper.yaml", "table1.yaml"]
    check = cli("specs", "check", "--specs-dir", str(tmp_path))
    assert check.returncode == 0 and "my-paper: 1 spec file(s), 9 published cells: ok" in check.stdout, check.stderr
    again = cli("new", "my-paper", "--dir", str(tmp_path))
    assert again.returncode == 2 and "exists already: nothing written" in again.stderr

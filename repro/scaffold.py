"""``repro new PAPER``: the files of a new paper, commented, that ``repro specs check`` accepts as written.

The guide that walks from a PDF's table to a report is docs/adding-a-paper.md.
"""
from __future__ import annotations

import re
from pathlib import Path

from .specs import DEFAULT_COUNTER_PROFILE

PAPER_YAML = """\
# {slug}: one folder per paper; this file holds what is paper-wide. Every key is checked
# (an unknown key is an error naming this file and the field). Format: specs/README.md in the repro checkout.
paper: {slug}                 # must equal the folder's name
title: "TITLE OF THE PAPER"
authors: "AUTHORS"
source: {slug}.pdf            # where the text lives (for the report's header)
counter_profile: {profile}     # how MACs are counted: thop-0.1 (today's thop; the default), thop-2001, thop-2004
                              # (`repro specs explain {slug}/table1` says which one gives the printed numbers)
tolerance: 0.5                # accuracy points within which a full-budget mean counts as reproduced
report_epoch: final           # final | best: the epoch whose numbers the paper reports
plugins: [{slug_py}.py]       # Python files of this folder that register models, attentions, datasets

# A dataset of your own (the built-ins are cifar10, cifar100, svhn, digits, imagenet, coco). Uncomment:
# datasets:
#   my-images:
#     kind: imagefolder       # <data dir>/my-images/{{train,test}}/<class>/*.png
#     num_classes: 10
#     image_size: 32

recipes:
  # The paper's training section, transcribed field by field; `assumed` names what the paper leaves open
  # (write each choice down under assumptions).
  cifar10:
    source: "Section ?: the sentence that gives this recipe"
    dataset: cifar10
    epochs: 200
    batch_size: 128
    lr: 0.1
    momentum: 0.9
    weight_decay: 5.0e-4
    milestones: [100, 150]
    gamma: 0.1
    augment: [random_crop_pad4, hflip, normalize]
    assumed: [momentum]

assumptions:
  - id: example
    text: "Where the paper is silent, say what you chose and why; the report shows it."
findings: []
"""

TABLE_YAML = """\
# One file per table, named as the table: the numbers exactly as printed (row and column labels as in the
# paper), and how each cell is produced. Merging is flat: defaults < column < row.
table: table1
title: "Table 1"
caption: "The caption as printed."
columns:
  - {{label: Params, metric: params}}          # counted: exact parameters
  - {{label: FLOPs, metric: macs}}             # counted: MACs under the paper's counter profile
  - {{label: Error, metric: top1_err}}         # trained: top-1 test error (%)
defaults:
  recipe: cifar10
rows:
  # a built-in backbone with a built-in attention at its single call site (your plugin's attention works
  # the same way once {slug_py}.py registers it)
  - label: ResNet-20
    model: resnet_cifar
    model_kwargs: {{depth: 20}}
    # replace each '?' (measured; the paper prints no number) by the number exactly as printed: "0.27M",
    # "8.75"; flag a doubtful reading: {{value: "8.75", uncertain: "why"}}
    values: {{Params: "?", FLOPs: "?", Error: "?"}}
  - label: SE-ResNet-20
    model: resnet_cifar
    model_kwargs: {{depth: 20, attention: se, attention_kwargs: {{reduction: 16}}}}
    values: {{Params: "?", FLOPs: "?", Error: "?"}}
  # an ecosystem model by name (never with downloaded weights)
  - label: ResNet-18 (timm)
    model: timm/resnet18
    values: {{Params: "?", FLOPs: "?", Error: "?"}}
"""

PLUGIN_PY = '''\
"""Plugins of {slug}: register models, attentions and datasets here (repro.plugins is all you import).

Example: an attention that plugs into every built-in backbone at its single call site::

    from torch import nn
    from repro.plugins import register_attention

    @register_attention("{slug_py}_gate")
    class Gate(nn.Module):
        def __init__(self, channels):
            super().__init__()

        def forward(self, x, identity=None, context=None):
            return x

then `model: resnet_cifar, model_kwargs: {{attention: {slug_py}_gate}}` in a table.
"""
'''


def new_paper(slug: str, directory: str | Path) -> list[Path]:
    """Write ``<directory>/<slug>/{paper.yaml, table1.yaml, <slug>.py}``; never overwrites a file."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", slug):
        raise ValueError(f"paper name {slug!r}: use lower-case letters, digits, '-' and '_' (it names a folder)")
    folder = Path(directory) / slug
    slug_py = slug.replace("-", "_")
    files = {folder / "paper.yaml": PAPER_YAML, folder / "table1.yaml": TABLE_YAML,
             folder / f"{slug_py}.py": PLUGIN_PY}
    existing = [p for p in files if p.exists()]
    if existing:
        raise FileExistsError(f"{existing[0]} exists already: nothing written")
    folder.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text.format(slug=slug, slug_py=slug_py, profile=DEFAULT_COUNTER_PROFILE))
    return list(files)

"""What every command shares: the Typer apps, common options and choices, input checks made before
any work, and the one printer of data (table | json | csv)."""
from __future__ import annotations

import csv
import json
import re
import sys
from enum import Enum

import typer
from rich.console import Console
from rich.table import Table



def _examples(*lines: str) -> str:
    """An epilog click prints as written (the \\b paragraph is not rewrapped)."""
    return "\b\n" + ("Examples:\n" if len(lines) > 1 else "Example:\n") + "\n".join(f"  {x}" for x in lines)


# -h as well as --help; completion on (--install-completion); a bare `repro` prints help and exits 0
# (click >= 8.2 exits 2 on `no_args_is_help`, so the callbacks below do it themselves).
CONTEXT = {"help_option_names": ["-h", "--help"]}
# rich_markup_mode=None: help text is printed literally (a `'.[postgres]'` in it would be eaten as
# markup) and flags are shown as flags, without typer's `<bool>` metavar.
_TYPER = dict(context_settings=CONTEXT, rich_markup_mode=None, pretty_exceptions_enable=False)


class _Group(typer.core.TyperGroup):
    """An argument with a metavar shows that name alone in help (typer appends the annotation's type:
    `TARGET <list[str]>`)."""

    def get_command(self, ctx, name):
        cmd = super().get_command(ctx, name)
        for param in getattr(cmd, "params", ()):
            if isinstance(param, typer.core.TyperArgument) and param.metavar:
                param.display_type_rich = lambda ctx=None: None
        return cmd


_TYPER["cls"] = _Group
app = typer.Typer(add_completion=True, help="Reproduce paper tables: specs -> jobs -> results.db -> reports.",
                  epilog=_examples("repro run se-r/table1 && repro diff se-r/table1"), **_TYPER)
specs_app = typer.Typer(help="Validate and inspect table specs.", epilog=_examples("repro specs check"), **_TYPER)
models_app = typer.Typer(help="List and inspect registered models.", epilog=_examples("repro models list --paper cra"),
                         **_TYPER)
data_app = typer.Typer(help="Datasets: the ones recipes can name, and tiny fakes in their real on-disk formats.",
                       epilog=_examples("repro data fake cifar100 /tmp/tiny"), **_TYPER)
app.add_typer(specs_app, name="specs")
app.add_typer(models_app, name="models")
app.add_typer(data_app, name="data")
recipe_app = typer.Typer(help="Recipes: write one from another tool's record of a run.",
                         epilog=_examples("repro recipe from-timm output/train/args.yaml --dataset imagenet"), **_TYPER)
app.add_typer(recipe_app, name="recipe")

# Output is literal text: `[budget full]` and `[thop-2004]` are not Rich markup, and numbers are not
# recoloured (highlight=False).
console = Console(markup=False, highlight=False)
if not console.is_terminal:  # piped output: do not squeeze tables into 80 columns
    console = Console(width=200, markup=False, highlight=False)

DbOpt = typer.Option(None, "--db", metavar="URL",
                     help="SQLAlchemy URL (default $REPRO_DB, else results.db in the first --specs-dir that is not "
                          "@builtin, else sqlite:///<repo>/results.db)")
SpecsOpt = typer.Option(None, "--specs-dir", metavar="DIR",
                        help="specs folder, repeatable; @builtin is the repo's (default $REPRO_SPECS, a list "
                             "separated like PATH, or <repo>/specs)")
TARGET_HELP = "<paper>, <paper>/<table>, <paper>/<table>/<row label> (quoted), or <table> with --paper"
ModelOpt = typer.Option(None, "--model", metavar="NAME", help="only the cells this model produces")
PluginsOpt = typer.Option(None, "--plugins", metavar="PATH",
                          help="a plugin file to import (repeatable; also $REPRO_PLUGINS and the papers' own)")


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


class Kind(str, Enum):
    profile = "profile"
    train = "train"
    detect = "detect"


class Engine_(str, Enum):  # the trainer's Engine is the class; this is the option's choice
    fast = "fast"
    reference = "reference"


class Precision(str, Enum):
    bf16 = "bf16"
    fp32 = "fp32"


BenchResultFields = ("job", "model", "dataset", "device", "engine", "precision", "compiled", "batch_size", "steps",
                     "img_per_s", "ref_img_per_s", "ratio", "ms_per_step", "peak_mem_mb", "projected_hours",
                     "data_img_per_s", "ref_data_img_per_s", "data_ratio", "config_key")


def FormatOpt(what: str = "output"):
    return typer.Option(Format.table, "--format", help=f"{what} format")


def _fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)  # one line, never wrapped
    raise typer.Exit(2)


def _catalog(specs_dir, plugins=None):
    from ..catalog import SpecsDirMissing, load_catalog

    try:
        return load_catalog(specs_dir, tuple(plugins or ()))
    except SpecsDirMissing as e:
        raise SpecsDirMissing(f"{e} (set --specs-dir or $REPRO_SPECS)") from None


# --- the root command: --version, bare `repro` --------------------------------------------

def _version() -> str:
    import subprocess
    from importlib import metadata

    try:
        version = metadata.version("repro")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a bare checkout
        version = "unknown"
    from ..paths import CHECKOUT as checkout

    git = ""
    if (checkout / ".git").exists():  # an installed copy has no commit to report
        try:
            git = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
                                 capture_output=True, text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return f"repro {version}" + (f" (git {git})" if git else "")


def _help_when_bare(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


def _show_version(value: bool) -> None:
    if value:
        print(_version())
        raise typer.Exit(0)


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context,
          version: bool = typer.Option(False, "--version", "-V", is_eager=True, callback=_show_version,
                                       help="print the package version and git commit, then exit")):
    _help_when_bare(ctx)


for _sub in (specs_app, models_app, data_app, recipe_app):
    _sub.callback(invoke_without_command=True)(_help_when_bare)


# --- input checks, before any work -------------------------------------------------------

def _device(value: str) -> str:
    """``--device``: refused at parse time unless auto, cpu, cuda or cuda:N; a GPU that is not there
    is refused before any job is claimed (a job would otherwise be left `running`)."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise typer.BadParameter(f"{value!r}: use auto, cpu, cuda or cuda:N", param_hint="'--device'")
    if value.startswith("cuda"):
        import torch

        index = int(value.partition(":")[2] or 0)
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if index >= count:
            have = f"{count} GPU(s) visible" if count else "no GPU visible (torch.cuda.is_available() is False)"
            raise typer.BadParameter(f"{value!r}: {have}; use --device cpu or auto", param_hint="'--device'")
    return value


def _check_db(explicit: str | None, *, write: bool, must_exist: bool = True, specs_dir=None) -> str:
    """The database URL, checked without creating anything (``repro.db.check_url``); one line otherwise.
    Without --db or $REPRO_DB, papers from a specs folder of the user's are stored beside them
    (``paths.own_db``), never in the checkout's results.db."""
    from ..db import DatabaseError, check_url
    from ..paths import own_db

    try:
        return check_url(own_db(explicit, specs_dir), write=write, must_exist=must_exist)
    except DatabaseError as e:
        _fail(str(e).replace("(running a campaign creates it)",
                             "(`repro run` creates it; or point --db/$REPRO_DB at one)"))


# --- printing data: one helper for table | json | csv ------------------------------------

def _plain(value):
    """Numbers as numbers: integers without a fraction, floats in their shortest repr (21.655)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _text(value, for_csv: bool = False) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):  # CSV keeps a list parseable; a table shows it for reading
        return json.dumps(value) if for_csv else ", ".join(str(v) for v in value)
    return str(value)


def _emit(rows: list[dict], fmt: Format, columns: list[str], title: str | None = None) -> None:
    if fmt == Format.json:
        print(json.dumps([{k: _plain(r.get(k)) for k in columns} for r in rows], indent=1))
    elif fmt == Format.csv:
        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow(columns)
        out.writerows([_text(r.get(k), for_csv=True) for k in columns] for r in rows)
    else:
        t = Table(title=title)
        for col in columns:
            t.add_column(col)
        for r in rows:
            t.add_row(*(_text(r.get(k)) for k in columns))
        console.print(t)

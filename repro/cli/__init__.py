"""The ``repro`` command line. It parses options and calls the library; nothing else lives here.

Bad input is refused before anything is written or any spec is loaded: option values are checked
when parsed (choices, ranges, ``--device``), the database URL and its driver before the first query.
Every refusal is one line ``error: ...`` on stderr with exit code 2.

One module per group of commands (``run``, ``results``, ``browse``) over ``common`` (the apps, options,
checks and printer); importing them registers their commands on ``app``.
"""
from __future__ import annotations

import atexit
import gc
import os
import sys

import typer

from ..specs import SpecError
from . import run, results, browse, travel  # noqa: F401,I001  (registers the commands, in the order help lists them)
from .common import app

__all__ = ["app", "main"]


def _usage_errors() -> tuple[type, ...]:
    """typer >= 0.2x vendors click and raises its own exception classes; older typer raises click's."""
    errors: list[type] = [getattr(typer, "TyperException", None)]
    try:
        import click

        errors.append(click.ClickException)
    except ImportError:  # pragma: no cover
        pass
    return tuple(e for e in errors if e is not None)


def main() -> None:
    # Registered first, so it runs after every other exit handler: the interpreter's last garbage
    # collection then skips the objects torch and a few hundred models leave behind (1-1.5 s of
    # every `repro run` otherwise; objects are still freed, just not traversed once more).
    atexit.register(gc.freeze)
    _fewer_collections()
    from ..events import print_warnings

    print_warnings()  # the library's warnings (a checkpoint moved aside, ...) as `warning: ...` lines
    try:
        # standalone_mode=False: usage errors reach us, to be printed as one line, not a box
        code = app(standalone_mode=False)
    except _usage_errors() as e:  # bad option value, unknown command or option: exit 2
        print(f"error: {e.format_message()}", file=sys.stderr)
        code = e.exit_code
    except typer.Abort:
        print("Aborted!", file=sys.stderr)
        code = 1
    except SpecError as e:  # pragma: no cover - commands catch their own
        print(f"error: {e}", file=sys.stderr)
        code = 2
    except BrokenPipeError:  # `repro ... | head`: the reader left; stop quietly
        code = 141
    except Exception as e:  # a database that cannot be reached is one line, wherever it is opened
        from ..db import DatabaseError

        if not isinstance(e, DatabaseError):
            raise
        print(f"error: {e}", file=sys.stderr)
        code = 2
    _quiet_exit(code if isinstance(code, int) else 0)


def _fewer_collections() -> None:
    """A command's own imports (SQLAlchemy, torch) add more long-lived objects, which the collector traversed
    again and again while they were made (with start-up's: ~110 of a `repro report`'s ~950 ms). What exists
    now is frozen (see ``repro.__main__``), and the youngest generation is collected per 10,000 allocations
    instead of 700."""
    gc.freeze()
    gc.set_threshold(10_000, *gc.get_threshold()[1:])


def _quiet_exit(code: int) -> None:
    """Exit without a BrokenPipeError at the interpreter's final flush when the reader of stdout left
    (`repro ... | head`): stdout is pointed at /dev/null first, as the Python docs on SIGPIPE advise."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = code or 141
    sys.exit(code)


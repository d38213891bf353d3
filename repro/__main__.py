"""``repro`` (the installed command) and ``python -m repro``: the command line of ``repro.cli``, imported
with the garbage collector paused.

Building the command line creates some 10^5 objects that live as long as the process (typer, pydantic's
validators for the specs); collecting while they are made finds nothing to free and cost every command
about 5% of its time. Collection resumes once they are imported, and ``repro.cli.main`` freezes them first
thing (never traversed again, as the ``gc.freeze`` docs advise for start-up objects). Importing ``repro.cli`` from
Python changes nothing.
"""
import gc


def main() -> None:
    paused = gc.isenabled()
    gc.disable()
    try:
        from repro.cli import main as cli
    finally:
        if paused:
            gc.enable()
    cli()  # which freezes what exists first thing (repro.cli.main)


if __name__ == "__main__":
    main()

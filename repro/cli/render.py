"""How the CLI shows a running campaign: the library's events (``repro.events``) as rich progress bars and
lines, and its typed facts (outcomes, progress, errors) as sentences. Messages are built here, at the edge."""
from __future__ import annotations

import sys

from ..events import Events, Tally
from ..states import JobOutcome, JobState

# Library options by field name -> the flag that sets them (errors name the field; users know the flag)
FLAGS = {"lease_seconds": "--lease-seconds", "jobs_per_gpu": "--jobs-per-gpu", "workers": "--workers",
         "extra": "--slurm-opt", "executor": "--executor", "seeds": "--seeds", "epochs": "--epochs",
         "max_jobs": "--max-jobs", "budget": "--budget"}


def option_error(option: str | None, message: str) -> str:
    """A library error about one of its options, in the CLI's words (the flag that sets it)."""
    if option == "max_jobs" and not message.startswith("must"):
        return f"{message}; --max-jobs N raises the cap"
    return f"{FLAGS.get(option, option)} {message}" if option else message


def outcome_line(o: JobOutcome) -> str:
    """``diverged <job>: loss became nan at epoch 2``, the same whichever executor ran the job."""
    return f"{o.state} {o.job}: {o.why}" if o.why else f"{o.state} {o.job}"


def counts_line(c) -> str:
    """``ran 1 job here; 3 finished by other workers; 0 failed, 0 diverged`` (a ``campaign.RunCounts``)."""
    line = (f"ran {c.ran_here} job{'' if c.ran_here == 1 else 's'} here; {c.by_others} finished by other workers; "
            f"{c.failed} failed, {c.diverged} diverged")
    return line + (f"; {c.unfinished} unfinished" if c.unfinished else "")


def tally_line(t: Tally) -> str:
    shown = [JobState.DONE, JobState.RUNNING, JobState.BLOCKED, JobState.FAILED, JobState.DIVERGED]
    counts = ", ".join(f"{t.counts[s]} {s}" for s in shown if t.counts.get(s)) or "none started"
    return f"{t.finished}/{t.total} finished: {counts}; {t.workers_alive} worker(s) alive"


class RichEvents(Events):
    """One bar per training job of an in-process worker (epoch, loss, ETA), and the campaign's lines."""

    def __init__(self, console):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn  # when shown

        self.console = console
        # markup=False: "[smoke, seed 0]" in a description is text, not a Rich style tag
        self.bar = Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                            TextColumn("{task.fields[info]}", markup=False),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        self.bar.start()
        return self

    def __exit__(self, *exc):
        self.bar.stop()

    def workers_started(self, devices):
        gpus = sorted({d for d in devices if d.startswith("cuda")})
        if gpus:
            self.console.print(f"{len(devices)} worker(s) on {len(gpus)} GPU(s): {', '.join(devices)}")

    def tasks_submitted(self, cluster, task_ids, log_dir):
        self.console.print(f"submitted {len(task_ids)} {cluster} task(s): {', '.join(task_ids)} (logs in {log_dir})")

    def job_started(self, job):
        from ..progress import total_units

        desc = f"{job.kind:7s} {job.model} [{job.budget}" + (f", seed {job.seed}]" if job.seed is not None else "]")
        self.tasks[job.id] = self.bar.add_task(desc, total=total_units(job.spec) or 1, info="")

    def job_step(self, job, epoch, step, steps):
        if step % 10 and step != steps:  # the bar redraws a few times a second at most anyway
            return
        self.bar.update(self.tasks[job.id], completed=epoch - 1 + step / steps,
                        info=f"epoch {epoch} step {step}/{steps}")

    def job_iteration(self, job, iteration, total, loss):
        self.bar.update(self.tasks[job.id], completed=iteration, info=f"iteration {iteration}/{total} loss {loss:.3f}")

    def job_epoch(self, job, r):
        self.bar.update(self.tasks[job.id], completed=r.epoch,
                        info=f"epoch {r.epoch} loss {r.train_loss:.3f} test err {r.test_top1_err:.2f}%")

    def job_ended(self, job, outcome):
        t = self.tasks[job.id]
        self.bar.update(t, completed=self.bar.tasks[t].total)

    def tally(self, tally):
        self.console.print(tally_line(tally))

    def worker_lost(self, fate, unfinished):
        print(f"warning: {fate}; {unfinished} job(s) not finished", file=sys.stderr, flush=True)

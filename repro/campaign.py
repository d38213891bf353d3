"""A campaign: plan -> register -> run -> summary. What ``repro run`` does, callable from Python.

- ``plan``: load the specs, resolve the targets, expand them into content-hashed jobs (nothing written);
- ``register``: create the database if needed, record the published cells and the jobs, and work out what
  is left to run (done jobs are skipped, diverged ones kept unless asked, jobs whose data is missing held back);
- ``run``: retry what failed before (once, here), hand the rest to an executor and collect each job's
  typed outcome into a ``CampaignSummary``.

The library never prints: progress goes to an ``events.Events`` object, warnings to the ``repro`` logger.
Options carry the same defaults as the CLI's (the CLI passes only what the user set).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace

from .options import CampaignOptions
from .plan import PlanError, PlannedJob, parse_budget, select, split_missing_data, target_papers
from .plan import plan as plan_jobs
from .specs import Catalog, Paper
from .states import JobOutcome, JobState, waiting_state


@dataclass
class CampaignPlan:
    catalog: Catalog
    targets: list[tuple[Paper, str]]
    jobs: list[PlannedJob]
    budget: str

    @property
    def static_only(self) -> bool:
        return all(j.kind == "profile" for j in self.jobs)


@dataclass
class Registered:
    """A plan written to the database: what was there already, and what is left to run."""

    plan: CampaignPlan
    db_url: str
    data_dir: str
    checkpoint_dir: str
    artifact_dir: str
    states: dict[str, JobState]  # before this campaign touched them
    todo: list[PlannedJob]
    held_back: dict[str, tuple[str, int]]  # dataset -> (why it cannot be read, jobs held back)

    @property
    def done(self) -> int:
        return sum(1 for j in self.plan.jobs if self.states.get(j.id) == JobState.DONE)

    @property
    def diverged_kept(self) -> int:
        """Diverged jobs this campaign does not run again (a result of the recipe)."""
        return sum(1 for j in self.plan.jobs if self.states.get(j.id) == JobState.DIVERGED
                   and j not in self.todo)


@dataclass(frozen=True)
class RunCounts:
    """What became of the jobs one invocation set out to run: ``ran_here`` its own workers ran to an end
    (done, failed or diverged), ``by_others`` other invocations' workers finished meanwhile; ``failed``
    (run or not: an upstream job failed) and ``diverged`` of all of them, and ``unfinished`` left so.
    Invocations sharing a database each count their own: their ``ran_here`` add up to the jobs run."""

    ran_here: int = 0
    by_others: int = 0
    failed: int = 0
    diverged: int = 0
    unfinished: int = 0

    def __add__(self, other: "RunCounts") -> "RunCounts":
        """Two rounds of one invocation (adaptive seeds): the jobs of each, added; what is unfinished is the
        later round's."""
        return RunCounts(self.ran_here + other.ran_here, self.by_others + other.by_others,
                         self.failed + other.failed, self.diverged + other.diverged, other.unfinished)


@dataclass
class CampaignSummary:
    registered: Registered
    retried: int = 0  # failed (and, when asked, diverged) jobs made pending again
    outcomes: dict[str, JobOutcome] = field(default_factory=dict)
    detached: bool = False
    adaptive: object | None = None  # --seeds MIN..MAX: an ``adaptive.AdaptiveSummary``
    counts: RunCounts | None = None  # None until run (and when detached: its workers are still running)

    @property
    def failed(self) -> list[JobOutcome]:
        return [o for o in self.outcomes.values() if not o.ok]

    @property
    def ok(self) -> bool:
        """Every job that was run ended done, and none was held back for missing data."""
        return not self.failed and not self.registered.held_back


def plan(opts: CampaignOptions) -> CampaignPlan:
    """The jobs of the targets (``SpecError`` or ``PlanError`` on bad input); writes nothing."""
    from .catalog import load_catalog, paper_folders, specs_roots

    budget = parse_budget(opts.budget, opts.epochs)
    # only the papers the targets name are loaded (a broken spec of another paper does not stop this campaign)
    folders = paper_folders(specs_roots(opts.specs_dir))
    catalog = load_catalog(opts.specs_dir, opts.plugins, only=target_papers(list(opts.targets), opts.paper, folders))
    selection = select(catalog, list(opts.targets), opts.paper, opts.model)
    targets = selection.tables
    if opts.seeds_max is not None and opts.seeds_max < opts.seeds:
        raise PlanError(f"MAX {opts.seeds_max} is below MIN {opts.seeds}", "seeds")
    jobs = plan_jobs(catalog, targets, budget=budget, seeds=opts.seeds, kinds=set(opts.kinds) if opts.kinds else None,
                     max_jobs=opts.max_jobs, cells=selection.cells)
    return CampaignPlan(catalog, targets, jobs, budget)


def known_states(plan: CampaignPlan, db_url: str) -> dict[str, JobState] | None:
    """The planned jobs' states in an existing database, or None when there is none (nothing created)."""
    from .db import Database, exists

    if not exists(db_url):
        return None
    database = Database(db_url, create=False)
    try:
        return database.job_states(j.id for j in plan.jobs)
    finally:
        database.dispose()


def plan_states(jobs: list[PlannedJob], known: dict[str, JobState]) -> dict[str, JobState | str]:
    """What each planned job is at: the database's answer where it holds the job; for a job it does not hold
    yet, the state the queue would give it (``states.waiting_state``: ``blocked`` while an upstream job, whose
    weights it starts from, is not done, ``failed`` when one failed or diverged), else ``new``."""
    out: dict[str, JobState | str] = {}
    for j in jobs:
        if j.id in known:
            out[j.id] = known[j.id]
            continue
        state, _ = waiting_state(known, j.upstream)
        out[j.id] = "new" if state == JobState.PENDING else state
    return out


def register(plan: CampaignPlan, opts: CampaignOptions) -> Registered:
    """Write the published cells and the jobs; what is left to run."""
    from .db import Database
    from .paths import db_url, resolve
    from .plan import published_rows

    url = db_url(opts.db)
    database = Database(url)
    try:
        states = database.job_states(j.id for j in plan.jobs)
        database.sync_published(*published_rows(plan.catalog, plan.targets))
        database.add_jobs({**j.row(), "upstream": j.upstream} for j in plan.jobs)  # upstream jobs come first
    finally:
        database.dispose()
    finished = (JobState.DONE,) if opts.retry_diverged else (JobState.DONE, JobState.DIVERGED)
    todo = [j for j in plan.jobs if states.get(j.id) not in finished]
    data_dir = str(resolve("data", opts.data_dir))
    held_back: dict[str, tuple[str, int]] = {}
    if not opts.download:
        todo, held_back = split_missing_data(todo, data_dir)
    checkpoints = resolve("checkpoints", opts.checkpoint_dir)
    # artifacts live beside the checkpoints (shared storage on a cluster, like them) unless told otherwise
    artifacts = opts.artifact_dir or (checkpoints.parent / "artifacts" if opts.checkpoint_dir else resolve("artifacts"))
    return Registered(plan, url, data_dir, str(checkpoints), str(artifacts), states, todo, held_back)


def worker_options(registered: Registered, opts: CampaignOptions):
    from .worker import WorkerOptions

    # plugins: every plugin file the plan's registries needed, which each worker and Slurm task imports too
    return WorkerOptions(db_url=registered.db_url, data_dir=registered.data_dir, download=opts.download,
                         device=opts.device, checkpoint_dir=registered.checkpoint_dir,
                         loader_workers=opts.loader_workers, engine=opts.engine, precision=opts.precision,
                         compile=opts.compile, keep_checkpoints=opts.keep_checkpoints, threads=opts.threads,
                         lease_seconds=opts.lease_seconds, plugins=tuple(registered.plan.catalog.plugins),
                         artifact_dir=registered.artifact_dir, decode=opts.decode)


def run(registered: Registered, opts: CampaignOptions, events=None) -> CampaignSummary:
    """Run what is left; each job's outcome, whichever executor ran it. Adaptive seeds (``seeds_max``): in
    rounds, each queueing the next seed of the cells still open (``repro.adaptive``)."""
    if opts.seeds_max is not None:
        from .adaptive import run_rounds

        return run_rounds(registered, opts, events, run_once)
    return run_once(registered, opts, events)


def run_once(registered: Registered, opts: CampaignOptions, events=None) -> CampaignSummary:
    """Run ``registered.todo`` once on the executor."""
    summary = CampaignSummary(registered)
    ids = [j.id for j in registered.todo]
    if not ids:  # before the executors' imports (torch): a campaign with nothing left answers at once
        return summary
    from . import executor
    from .db import Database

    wopts = replace(worker_options(registered, opts), invocation=uuid.uuid4().hex[:12])
    executor.check(wopts, opts.execution)  # before anything changes state
    database = Database(registered.db_url)
    try:
        summary.retried = database.reset_failed(ids, diverged=opts.retry_diverged)
        report = executor.run(ids, wopts, opts.execution, events)
        summary.outcomes = report.outcomes
        summary.detached = opts.execution.detach and opts.execution.executor != "local"
        if not summary.detached:
            summary.counts = run_counts(report.outcomes, database.owners(ids), wopts.invocation)
    finally:
        database.dispose()
    return summary


def run_counts(outcomes: dict[str, JobOutcome], owners: dict[str, str | None], invocation: str) -> RunCounts:
    """``outcomes`` counted: by whose worker ran each finished job (``owners``: the jobs' owner strings),
    and how the jobs ended. A job failed unrun (its upstream failed) was run by nobody."""
    from .options import started_by

    here = others = 0
    for job, o in outcomes.items():
        if o.unfinished or o.upstream or not owners.get(job):
            continue
        if started_by(owners[job], invocation):
            here += 1
        else:
            others += 1
    states = [o.state for o in outcomes.values()]
    return RunCounts(ran_here=here, by_others=others, failed=states.count(JobState.FAILED),
                     diverged=states.count(JobState.DIVERGED),
                     unfinished=sum(1 for o in outcomes.values() if o.unfinished))


def run_campaign(opts: CampaignOptions, events=None) -> CampaignSummary:
    """plan -> register -> run, as ``repro run`` does with the same options."""
    return run(register(plan(opts), opts), opts, events)


def with_targets(opts: CampaignOptions, targets) -> CampaignOptions:
    return replace(opts, targets=tuple([targets] if isinstance(targets, str) else targets))

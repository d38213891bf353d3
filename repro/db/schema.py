"""The schema of the results database (SQLAlchemy 2.x declarative tables), documented here and only here.

Tables
------
papers            one row per paper spec (slug, title, authors, source text file).
spec_tables       one row per table/figure spec (paper, name, title, caption, kind).
published_cells   every number the paper prints, as printed (``printed``) and parsed (``value``
                  in the printed unit), with metric, flags (uncertain / not_reproducible / cited)
                  and ``config_key``: the job configuration that produces it (NULL when cited).
                  These three tables are the transcription a database was run with: ``repro diff
                  --against`` reads the other database's to show numbers transcribed differently
                  since, cells whose configuration changed, and cells added since.
jobs              one row per fully resolved job; ``id`` is the hash of the job (model, kwargs,
                  dataset, recipe, budget, seed), ``config_key`` the hash without budget and seed
                  (what a published cell points at). ``state``: a ``repro.states.JobState``
                  (diverged: the loss became nan/inf, a result, not retried unless asked).
                  ``owner``/``heartbeat_at`` implement claiming: a worker takes a job with one
                  conditional UPDATE, so two processes never run the same job. While it runs,
                  ``progress_done`` of ``progress_total`` ``progress_unit`` (epoch | iteration).
                  ``upstream``: the jobs whose final weights it starts from (``init_from``); it is
                  ``blocked`` until they are done, and ends ``failed`` unrun, with ``failed_upstream``
                  naming the one that failed or diverged, if one does.
runs              every attempt at a job: status (a ``repro.states.RunStatus``), error (a failure's
                  exception line, for people), where a diverged attempt diverged (``diverged_value``
                  nan | inf at ``diverged_unit`` ``diverged_at``, with ``diverged_lr``), start/end,
                  host, pid, device, git commit and dirty flag, package versions, the epoch it
                  resumed from; how the job ran: ``engine`` (fast | reference), ``precision``
                  (bf16 | fp32), ``compiled``, CPU ``threads``; ``data`` (how its data was read: the
                  JPEG decoder, a mean/std computed from the training set) and ``init_from`` (the
                  weights it started from: upstream job and artifact SHA-256, or a local file's).
input_benchmarks  the input pipeline alone (``repro bench --data``): the fast and the reference ImageNet
                  input's images per CPU-second on the same JPEGs in one run, and the cores one GPU needs
                  at a GPU rate (measured by ``repro bench`` on CUDA, else stated); the estimate reads it.
artifacts         what a finished job keeps beyond its checkpoints (its final weights, ``kind``
                  weights): SHA-256, path (content-addressed, under the artifact folder), size; one per
                  (job, kind). Another job's ``init_from`` loads it after checking the hash.
checkpoints       every checkpoint file an attempt wrote (job, run, path, SHA-256, epoch or iteration):
                  only a file this database recorded, with the same bytes, is ever resumed.
metrics           final numbers of a job (name, value in base units, detail such as the counter
                  profile or parameter convention); one row per (job, name).
benchmarks        throughput measured by ``repro bench``: job config, model, device name, engine,
                  precision, compiled, batch size, steps, images/s, ms/step, peak memory, projected
                  hours of the full recipe, when, git commit. The GPU-hour estimate uses these.
model_counts      a cache of counts by model configuration: ``config_key`` is the hash of the
                  profile-job configuration {model, kwargs, input size, counter profile} (equal to a
                  profile job's ``config_key``), ``code`` a hash of the model and counting source, ``key``
                  the hash of both (so a model fix is a cache miss); macs and params. ``repro models
                  count`` fills it; the GPU-hour estimate reads it (a report never builds a model).
origins           where imported runs came from (``repro import``): the bundle's SHA-256 (one row per bundle),
                  the user's ``--label``, the exporting host, repro and code version, when imported. A run
                  with ``origin_id`` NULL was measured by this database's own workers.
replicas          another origin's measurement of a job this database already holds: (job, origin, metric
                  name) -> value. The job stays one sample in verdicts (``metrics``); replicas are what the
                  replication check compares it with.
seed_plans        the adaptive seed plan a configuration was run with (``repro run --seeds MIN..MAX``): its MIN
                  and MAX; the newest plan wins. A trained cell with a plan is judged at its last look's error
                  rate (``compare.look_alpha``) and the report says why it stopped.
curve_points      per-epoch training curve of a job: train loss, train/test top-1/top-5 error,
                  lr, seconds; one row per (job, epoch), rewritten if an epoch is redone after a
                  resume.

alembic_version   the schema's revision (Alembic; ``repro.db.migrate``): a new database is created from
                  these classes at the head revision, an older one is upgraded by ``migrations/versions``.

A change to these classes is a new revision in ``migrations/versions`` (and ``migrate.HEAD``): the test
``test_migrations_from_empty_equal_the_declared_schema`` fails until the two agree.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, Enum, Float, ForeignKey, Integer, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..states import Divergence, JobState, RunStatus


def utcnow() -> dt.datetime:
    """Naive UTC, as every DateTime column stores it."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _state_type(enum: type) -> Enum:
    """A state column: VARCHAR holding the enum's value (no native enum, no constraint, so an older
    database's column is the same type), read back as the enum."""
    return Enum(enum, native_enum=False, create_constraint=False, length=16, validate_strings=True,
                values_callable=lambda e: [m.value for m in e])


class Base(DeclarativeBase):
    pass


class PaperRow(Base):
    __tablename__ = "papers"
    slug: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    authors: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(256))


class TableRow(Base):
    __tablename__ = "spec_tables"
    __table_args__ = (UniqueConstraint("paper", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    paper: Mapped[str] = mapped_column(ForeignKey("papers.slug"))
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(Text)
    caption: Mapped[str | None] = mapped_column(Text, nullable=True)


class PublishedCell(Base):
    __tablename__ = "published_cells"
    __table_args__ = (UniqueConstraint("paper", "table_name", "section", "row", "column"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    paper: Mapped[str] = mapped_column(String(64), index=True)
    table_name: Mapped[str] = mapped_column(String(64))
    section: Mapped[str] = mapped_column(String(128), default="")
    row: Mapped[str] = mapped_column(String(256))
    column: Mapped[str] = mapped_column(String(128))
    metric: Mapped[str] = mapped_column(String(32))
    printed: Mapped[str] = mapped_column(String(32))
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    uncertain: Mapped[str | None] = mapped_column(Text, nullable=True)
    not_reproducible: Mapped[str | None] = mapped_column(Text, nullable=True)
    cited: Mapped[str | None] = mapped_column(Text, nullable=True)
    config_key: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    config_key: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(128))
    budget: Mapped[str] = mapped_column(String(32))
    seed: Mapped[int | None] = mapped_column(Integer, nullable=True)
    spec: Mapped[dict] = mapped_column(JSON)
    state: Mapped[JobState] = mapped_column(_state_type(JobState), default=JobState.PENDING, index=True)
    owner: Mapped[str | None] = mapped_column(String(256), nullable=True)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    progress_done: Mapped[int | None] = mapped_column(Integer, nullable=True)
    progress_total: Mapped[int | None] = mapped_column(Integer, nullable=True)
    progress_unit: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # job ids whose weights it starts from
    upstream: Mapped[list | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    failed_upstream: Mapped[str | None] = mapped_column(String(64), nullable=True)  # why it ended failed unrun
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    status: Mapped[RunStatus] = mapped_column(_state_type(RunStatus))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    diverged_value: Mapped[str | None] = mapped_column(String(8), nullable=True)
    diverged_unit: Mapped[str | None] = mapped_column(String(16), nullable=True)
    diverged_at: Mapped[int | None] = mapped_column(Integer, nullable=True)
    diverged_lr: Mapped[float | None] = mapped_column(Float, nullable=True)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    host: Mapped[str] = mapped_column(String(256))
    pid: Mapped[int] = mapped_column(Integer)
    device: Mapped[str] = mapped_column(String(128))
    git_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    git_dirty: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    versions: Mapped[dict] = mapped_column(JSON)
    resumed_from_epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    engine: Mapped[str | None] = mapped_column(String(16), nullable=True)
    precision: Mapped[str | None] = mapped_column(String(16), nullable=True)
    compiled: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    threads: Mapped[int | None] = mapped_column(Integer, nullable=True)
    data: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # how the data was read (decode, computed mean/std)
    init_from: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # the weights it started from (job, sha256)
    origin_id: Mapped[int | None] = mapped_column(ForeignKey("origins.id"), nullable=True)  # NULL: measured here


class InputBenchmark(Base):
    __tablename__ = "input_benchmarks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(String(64), index=True)
    config_key: Mapped[str] = mapped_column(String(64), index=True)
    dataset: Mapped[str] = mapped_column(String(64))
    device: Mapped[str] = mapped_column(String(128))
    decode: Mapped[str] = mapped_column(String(16))
    split: Mapped[str] = mapped_column(String(8))
    images: Mapped[int] = mapped_column(Integer)
    img_per_cpu_s: Mapped[float] = mapped_column(Float)  # the fast input, images per CPU-second (one core)
    ref_img_per_cpu_s: Mapped[float] = mapped_column(Float)  # the reference (PIL) input, same files, same run
    gpu_img_per_s: Mapped[float] = mapped_column(Float)  # the GPU rate the cores are sized for
    cores_per_gpu: Mapped[float] = mapped_column(Float)
    ref_cores_per_gpu: Mapped[float] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    git_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ArtifactRow(Base):
    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("job_id", "kind"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    kind: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class CheckpointRow(Base):
    __tablename__ = "checkpoints"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    step: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Benchmark(Base):
    __tablename__ = "benchmarks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(String(64), index=True)
    config_key: Mapped[str] = mapped_column(String(64), index=True)
    model: Mapped[str] = mapped_column(String(128))
    config: Mapped[dict] = mapped_column(JSON)
    device: Mapped[str] = mapped_column(String(128))
    engine: Mapped[str] = mapped_column(String(16))
    precision: Mapped[str] = mapped_column(String(16))
    compiled: Mapped[bool] = mapped_column(Boolean, default=False)
    batch_size: Mapped[int] = mapped_column(Integer)
    steps: Mapped[int] = mapped_column(Integer)
    img_per_s: Mapped[float] = mapped_column(Float)
    ms_per_step: Mapped[float] = mapped_column(Float)
    peak_mem_mb: Mapped[float | None] = mapped_column(Float, nullable=True)
    projected_hours: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    git_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Metric(Base):
    __tablename__ = "metrics"
    __table_args__ = (UniqueConstraint("job_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    name: Mapped[str] = mapped_column(String(32))
    value: Mapped[float] = mapped_column(Float)
    detail: Mapped[str | None] = mapped_column(String(128), nullable=True)


class CurvePoint(Base):
    __tablename__ = "curve_points"
    __table_args__ = (UniqueConstraint("job_id", "epoch"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    epoch: Mapped[int] = mapped_column(Integer)
    train_loss: Mapped[float] = mapped_column(Float)
    train_top1_err: Mapped[float] = mapped_column(Float)
    train_top5_err: Mapped[float] = mapped_column(Float)
    test_top1_err: Mapped[float] = mapped_column(Float)
    test_top5_err: Mapped[float] = mapped_column(Float)
    lr: Mapped[float] = mapped_column(Float)
    seconds: Mapped[float] = mapped_column(Float)


class OriginRow(Base):
    __tablename__ = "origins"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bundle_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str | None] = mapped_column(String(128), nullable=True)
    host: Mapped[str] = mapped_column(String(256))
    repro_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    code_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    imported_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Replica(Base):
    __tablename__ = "replicas"
    __table_args__ = (UniqueConstraint("job_id", "origin_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    origin_id: Mapped[int] = mapped_column(ForeignKey("origins.id"))
    name: Mapped[str] = mapped_column(String(32))
    value: Mapped[float] = mapped_column(Float)


class SeedPlan(Base):
    __tablename__ = "seed_plans"
    config_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    min_seeds: Mapped[int] = mapped_column(Integer)
    max_seeds: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class ModelCount(Base):
    __tablename__ = "model_counts"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    config_key: Mapped[str] = mapped_column(String(64), index=True)
    code: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(128))
    model_kwargs: Mapped[dict] = mapped_column(JSON)
    input_size: Mapped[list] = mapped_column(JSON)
    counter_profile: Mapped[str] = mapped_column(String(32))
    macs: Mapped[int] = mapped_column(BigInteger)
    params: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


def divergence_of(value, unit, at, lr) -> Divergence | None:
    """A run's ``diverged_*`` columns as the typed fact (None: the run did not diverge, or the database
    predates the columns and its run ``error`` says it in words)."""
    return Divergence(value, unit, at, lr) if value is not None else None

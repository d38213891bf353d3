"""The results database, one module per concern:

- ``schema``     the tables (the schema is documented there and only there)
- ``connect``    URLs, engines, ``DatabaseError``, ``exists``
- ``migrate``    the schema's revision: create at head, upgrade older databases (Alembic, ``migrations/``)
- ``queue``      jobs and their leases (claim, heartbeat, the fence, ``LeaseLost``)
- ``results``    fenced writes of a job's runs, curves, checkpoint records and metrics; benchmarks, counts
- ``reads``      what reports and ``repro status`` read
- ``published``  papers, table specs and published cells
- ``database``   ``Database``, composed of the concerns above

Everything callers use is importable from ``repro.db`` itself.
"""
from .connect import DatabaseError, check_url, exists, make_engine, parse_url, safe_url, sqlite_path
from .database import Database
from .migrate import SchemaChanged
from .queue import LeaseLost
from .schema import (Base, Benchmark, CheckpointRow, CurvePoint, Job, Metric, ModelCount, PaperRow, PublishedCell,
                     Run, TableRow, utcnow)

__all__ = ["Base", "Benchmark", "CheckpointRow", "CurvePoint", "Database", "DatabaseError", "Job", "LeaseLost",
           "Metric", "ModelCount", "PaperRow", "PublishedCell", "Run", "SchemaChanged", "TableRow", "check_url",
           "exists", "make_engine", "parse_url", "safe_url", "sqlite_path", "utcnow"]

"""``Database``: one object over the storage concerns, each a mixin of its own module (``queue``,
``results``, ``reads``, ``published``) sharing this object's engine and sessions. Opening it is the one
place that connects, checks the connection and brings the schema to head (``migrate``).

Mixins rather than per-concern objects: every caller keeps calling ``db.claim(...)``, ``db.complete(...)``,
``db.results_for(...)`` on one object (a worker, the executors, reports and tests hold one ``Database``),
while each concern's code and queries live in a module of their own and share one engine and one
connection pool. Per-concern objects would mean ``db.queue.claim`` at every call site, or forwarding code.
"""
from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from ..paths import db_url
from .connect import DatabaseError, cause, make_engine, where
from .published import Published
from .queue import Queue
from .reads import Reads
from .results import Results


class Database(Published, Queue, Results, Reads):
    """Thin access layer; the trainer never sees it (it reports through callbacks).

    Opening checks the connection once, so an unreachable server, a wrong password or a missing
    driver is one ``DatabaseError`` naming the host and the cause, not a traceback mid-run. It creates
    the schema where there is none (``create=False``: never) and upgrades an older one (``repro.db.migrate``)."""

    def __init__(self, url: str | None = None, *, create: bool = True):
        from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

        from .migrate import open_schema

        self.url = db_url(url)
        engine = make_engine(self.url)
        try:
            self.engine: Engine = open_schema(engine, create=create)
        except DBAPIError as e:
            engine.dispose()
            verb = "connect to" if isinstance(e,
                                              (OperationalError, InterfaceError)) else "create or upgrade the schema in"
            raise DatabaseError(f"cannot {verb} {where(engine.url)}: {cause(e)}") from None
        except DatabaseError:
            engine.dispose()
            raise
        self.Session = sessionmaker(self.engine, expire_on_commit=False)

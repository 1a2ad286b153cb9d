"""The SQLAlchemy 2 dialect: SQLAlchemy's SQLite dialect speaking through ``producer.dbapi``.

Registered under the URL scheme ``srdb://`` (an entry point), so after ``pip install srdb``:

    engine = create_engine("srdb:///shop")                            # settings from the environment
    engine = create_engine("srdb:///shop?bucket=b&queue_url=https://...&region=eu-west-1")

The query string takes any ``Settings`` field, plus ``as_of`` (a read-only engine on an old
snapshot), ``timeout`` (seconds to wait for each job), ``job_timeout`` and ``create=false`` (writes to a
database that does not exist fail instead of creating it). SQL is SQLite's. Sessions and
``engine.begin()`` run optimistic serializable transactions (producer.dbapi, producer.transaction):
a rollback undoes what it should, and a commit that lost to another fails with
``OperationalError`` (``SerializationFailure``). ``isolation_level="AUTOCOMMIT"`` makes every
statement one job, committed when it returns.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from sqlalchemy.dialects.sqlite.base import SQLiteDialect
from sqlalchemy.engine import URL
from sqlalchemy.engine.interfaces import IsolationLevel

_FLOATS = ("timeout", "job_timeout")


class SrdbDialect(SQLiteDialect):
    driver = "srdb"
    supports_statement_cache = True
    # executemany is srdb's batch path: one job with every parameter set.
    use_insertmanyvalues_wo_returning = False

    @classmethod
    def import_dbapi(cls) -> ModuleType:
        from producer import dbapi

        return dbapi

    def create_connect_args(self, url: URL) -> tuple[list[Any], dict[str, Any]]:
        if not url.database:
            raise ValueError("an srdb URL names its database: srdb:///NAME")
        options: dict[str, Any] = dict(url.query)
        for name in _FLOATS:
            if name in options:
                options[name] = float(options[name])
        as_of = options.get("as_of")
        if isinstance(as_of, str) and as_of.isdigit():
            options["as_of"] = int(as_of)
        if "create" in options:
            if options["create"] not in ("true", "false"):
                raise ValueError("create in an srdb URL is true or false")
            options["create"] = options["create"] == "true"
        return [], {"database": url.database, **options}

    def _get_server_version_info(self, connection: Any) -> tuple[int, ...]:
        return tuple(self.dbapi.sqlite_version_info)  # type: ignore[union-attr]

    def get_isolation_level(self, dbapi_connection: Any) -> IsolationLevel:
        # Transactions are optimistic and serializable (producer/transaction.py); AUTOCOMMIT makes
        # every statement a job of its own, committed when it returns.
        return "AUTOCOMMIT" if dbapi_connection.autocommit else "SERIALIZABLE"

    def get_isolation_level_values(self, dbapi_connection: Any) -> list[IsolationLevel]:
        return ["SERIALIZABLE", "AUTOCOMMIT"]

    def set_isolation_level(self, dbapi_connection: Any, level: Any) -> None:
        if level not in ("SERIALIZABLE", "AUTOCOMMIT"):
            raise ValueError(f"srdb offers SERIALIZABLE (its transactions) and AUTOCOMMIT; not {level!r}")
        dbapi_connection.autocommit = level == "AUTOCOMMIT"

    def do_ping(self, dbapi_connection: Any) -> bool:
        return not dbapi_connection.closed

    def is_disconnect(self, e: Exception, connection: Any, cursor: Any) -> bool:
        return False


dialect = SrdbDialect

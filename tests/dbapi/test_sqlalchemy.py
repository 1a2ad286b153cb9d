"""SQLAlchemy Core and ORM, and pandas, through the srdb:// dialect against a live local stack."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    func,
    insert,
    inspect,
    select,
)
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

import producer.dbapi as srdb
from shared.settings import ENV_PREFIX, Settings

VALUES = [
    (1, 2**62 + 7, 3.141592653589793, "plain", b"\x00\x01\xff"),
    (2, -(2**40), -0.5, "Grüße, 世界, emoji 🎉, quote ' and \"", b""),
    (3, None, None, None, None),
]


def url(settings: Settings, database: str, **extra: str) -> URL:
    """Every setting in the query string, as a user would write it."""
    query = {k.removeprefix(ENV_PREFIX).lower(): v for k, v in settings.to_env().items()}
    return URL.create("srdb", database=database, query={**query, **extra})


@pytest.fixture
def engine(settings: Settings, serving: Any) -> Engine:
    return create_engine(url(settings, "alchemy"))


def test_the_url_scheme_finds_the_dialect_and_its_settings(settings: Settings) -> None:
    engine = create_engine(url(settings, "shop", timeout="12.5", as_of="3"))
    assert engine.dialect.driver == "srdb"
    _args, kwargs = engine.dialect.create_connect_args(engine.url)
    assert kwargs["database"] == "shop" and kwargs["bucket"] == settings.bucket
    assert kwargs["timeout"] == 12.5 and kwargs["as_of"] == 3


def test_core_round_trips_every_type(engine: Engine) -> None:
    meta = MetaData()
    things = Table("things", meta, Column("id", Integer, primary_key=True), Column("big", BigInteger),
                   Column("real", Float), Column("text", Text), Column("blob", LargeBinary))
    meta.create_all(engine)
    assert inspect(engine).has_table("things")
    with engine.begin() as conn:
        conn.execute(insert(things), [dict(zip(("id", "big", "real", "text", "blob"), v, strict=True))
                                      for v in VALUES])
    with engine.connect() as conn:
        rows = conn.execute(select(things).order_by(things.c.id)).all()
        assert [tuple(r) for r in rows] == VALUES
        assert conn.execute(select(func.count()).select_from(things)).scalar_one() == 3
        big = conn.execute(select(things.c.id).where(things.c.big > 2**61)).scalars().all()
        assert big == [1]
    assert [c["name"] for c in inspect(engine).get_columns("things")] == ["id", "big", "real", "text", "blob"]


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    books: Mapped[list[Book]] = relationship(back_populates="author", order_by="Book.id")


class Book(Base):
    __tablename__ = "books"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str]
    copies: Mapped[int] = mapped_column(BigInteger)
    cover: Mapped[bytes | None]
    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"))
    author: Mapped[Author] = relationship(back_populates="books")


def test_orm_round_trip(engine: Engine) -> None:
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        ada = Author(name="Ada", books=[Book(title="Notes", copies=2**33, cover=b"\x89PNG"),
                                        Book(title="Ünïcödé", copies=1, cover=None)])
        session.add(ada)
        session.commit()
        assert ada.id is not None and all(b.id is not None for b in ada.books)
    with Session(engine) as session:
        found = session.scalars(select(Author).where(Author.name == "Ada")).one()
        assert [(b.title, b.copies, b.cover) for b in found.books] == [
            ("Notes", 2**33, b"\x89PNG"), ("Ünïcödé", 1, None)]
        found.books[1].copies += 41
        session.commit()
    with Session(engine) as session:
        assert session.scalars(select(Book.copies).where(Book.title == "Ünïcödé")).one() == 42
        session.add(Author(name="Ada"))
        with pytest.raises(IntegrityError, match="UNIQUE constraint failed"):
            session.commit()


def test_bad_sql_is_a_programming_error(engine: Engine) -> None:
    from sqlalchemy import text

    with engine.connect() as conn, pytest.raises(ProgrammingError, match="syntax error"):
        conn.execute(text("SELEC nothing"))


@pytest.mark.slow
def test_pandas_round_trip_of_100000_rows(engine: Engine) -> None:
    n = 100_000
    frame = pd.DataFrame({
        "id": range(n),
        "big": [i * 2**33 for i in range(n)],
        "ratio": [i / 7 for i in range(n)],
        "label": [f"row {i} ✓" for i in range(n)],
    })
    written = frame.to_sql("frame", engine, index=False)
    assert written == n
    back = pd.read_sql("SELECT * FROM frame ORDER BY id", engine)
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    assert back["big"].iloc[-1] == (n - 1) * 2**33


def rollback_script(engine: Engine) -> list[str]:
    """The same unit-of-work script the issue ran against sqlite:/// and srdb:///."""
    people = Table("people", MetaData(), Column("id", Integer, primary_key=True), Column("name", String, unique=True))
    people.metadata.create_all(engine)
    with Session(engine) as session:
        session.execute(insert(people).values(name="bob"))
        session.commit()
        session.execute(insert(people).values(name="carl"))
        session.flush()
        session.rollback()  # a flushed insert, rolled back
        session.execute(insert(people).values(name="dave"))
        with pytest.raises(IntegrityError):
            session.execute(insert(people).values(name="bob"))
        session.rollback()  # an IntegrityError, then rollback: dave goes too
    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.execute(insert(people).values(name="eve"))
        raise RuntimeError("an exception inside engine.begin()")
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(select(people.c.name).order_by(people.c.id))]


def test_rollback_ends_as_on_sqlite(engine: Engine, tmp_path: Any) -> None:
    on_sqlite = rollback_script(create_engine(f"sqlite:///{tmp_path / 'plain.db'}"))
    assert on_sqlite == ["bob"]
    assert rollback_script(engine) == on_sqlite


def test_a_serialization_failure_is_an_operational_error_and_autocommit_stays_available(
        engine: Engine, settings: Settings) -> None:
    counter = Table("counter", MetaData(), Column("id", Integer, primary_key=True), Column("n", Integer))
    counter.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(counter).values(id=1, n=0))
    with pytest.raises(OperationalError) as caught, engine.begin() as first:
        first.execute(select(counter.c.n)).scalar_one()
        first.execute(counter.update().values(n=counter.c.n + 1))
        with engine.begin() as second:  # commits first: the other transaction's base is gone
            second.execute(counter.update().values(n=counter.c.n + 10))
    assert isinstance(caught.value.orig, srdb.SerializationFailure)
    assert "run it again" in str(caught.value.orig)
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    with autocommit.connect() as conn:
        conn.execute(counter.update().values(n=counter.c.n + 100))
    with engine.connect() as conn:
        assert conn.execute(select(counter.c.n)).scalar_one() == 110

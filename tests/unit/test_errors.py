"""Every error carries its own meaning: its fate, its CLI exit code and its PEP 249 class."""

from __future__ import annotations

import producer.dbapi as srdb
from shared import errors


def every_error() -> list[type[errors.SrdbError]]:
    found, pending = [], [errors.SrdbError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_every_error_names_a_driver_exception_and_an_exit_code() -> None:
    for cls in every_error():
        assert issubclass(getattr(srdb, cls.dbapi), srdb.Error), cls
        assert cls.exit_code in range(1, 6), cls


def test_a_job_error_document_finds_its_class_by_name() -> None:
    assert errors.error_class("ConstraintViolation") is errors.ConstraintViolation
    assert errors.error_class("BadValue").dbapi == "DataError"
    assert errors.error_class("LockTimeout").exit_code == errors.EXIT_UNAVAILABLE
    assert errors.error_class("SomethingNewer") is errors.SrdbError


def test_srdbs_client_error_does_not_share_botocores_name() -> None:
    assert not hasattr(errors, "ClientError")

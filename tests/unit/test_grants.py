"""The grants' rules, on documents built by hand (the worker's use of them: tests/integration/test_grants.py)."""

from __future__ import annotations

import pytest

from shared.errors import ClientSideError, Forbidden, StorageError
from shared.grants import Grants

Q1, Q2 = "arn:aws:sqs:us-east-1:123456789012:one", "arn:aws:sqs:us-east-1:123456789012:two"


def grants() -> Grants:
    g = Grants()
    g.grant("analysts", database="sales*", access="read", queues=[Q1])
    g.grant("analysts", database="scratch", access="write")
    g.grant("etl", database="*", access="write", queues=[Q1], senders=["AROAETL:*"])
    return g


def test_no_group_means_open_and_the_widest_access_of_the_matching_groups_wins() -> None:
    Grants().check("", "", "anything", writes=True)
    g = grants()
    g.check(Q1, "AIDAANALYST", "sales_eu", writes=False)
    g.check(Q1, "AIDAANALYST", "scratch", writes=True)
    g.check(Q1, "AROAETL:nightly", "sales_eu", writes=True)  # etl's write beats analysts' read
    with pytest.raises(Forbidden, match="access group analysts may only read database sales_eu; this job writes"):
        g.check(Q1, "AIDAANALYST", "sales_eu", writes=True)
    with pytest.raises(Forbidden, match="access group analysts has no grant on database hr"):
        g.check(Q1, "AIDAANALYST", "hr", writes=False)
    with pytest.raises(Forbidden, match="queue two belongs to no access group"):
        g.check(Q2, "AROAETL:nightly", "sales", writes=False)


def test_senders_narrow_a_group() -> None:
    g = Grants()
    g.grant("etl", database="*", access="write", queues=[Q1], senders=["AROAETL:*"])
    with pytest.raises(Forbidden, match="sender AIDAOTHER is not among the senders of access group"):
        g.check(Q1, "AIDAOTHER", "x", writes=False)
    with pytest.raises(Forbidden, match=r"sender \(unknown\)"):
        g.check(Q1, "", "x", writes=False)


def test_edits_round_trip_and_bad_documents_are_named() -> None:
    g = grants()
    assert Grants.from_bytes(g.to_bytes()) == g
    g.revoke("analysts", "scratch")
    assert g.groups["analysts"].databases == {"sales*": "read"}
    g.revoke("etl")
    assert list(g.groups) == ["analysts"]
    with pytest.raises(ClientSideError, match="has no grant on nope"):
        g.revoke("analysts", "nope")
    with pytest.raises(ClientSideError, match="access must be read or write"):
        g.grant("analysts", database="x", access="admin")
    with pytest.raises(StorageError, match="grants 'admin'"):
        Grants.from_bytes(b'{"groups": {"g": {"databases": {"*": "admin"}}}}')
    with pytest.raises(StorageError, match="does not parse"):
        Grants.from_bytes(b"[]")

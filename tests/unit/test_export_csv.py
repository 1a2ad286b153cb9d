"""CSV exports keep NULL and the empty string apart (``--null-string``), and quote what must be quoted."""

from __future__ import annotations

import csv
import io

import pytest

from producer.bulk import CsvStyle, export_lines
from shared.errors import ClientSideError
from shared.job.values import encode_row


def exported(rows: list[list[object]], style: CsvStyle) -> str:
    return b"".join(export_lines(["a", "b"], [encode_row(r) for r in rows], "csv", style)).decode()  # type: ignore[arg-type]


def test_null_and_the_empty_string_never_meet() -> None:
    text = exported([[None, ""], ["x", None]], CsvStyle())
    assert text == 'a,b\n,""\nx,\n'
    assert exported([[None, ""]], CsvStyle(null_string="\\N", header=False)) == '\\N,""\n'
    assert exported([["\\N", 1]], CsvStyle(null_string="\\N", header=False)) == '"\\N",1\n'  # text, not NULL


def test_what_csv_readers_need_quoted_is_quoted_and_reads_back() -> None:
    rows = [["a,b", 'say "hi"'], ["two\nlines", " padded "], [b"\x01\xff", 2.5]]
    text = exported(rows, CsvStyle())
    assert list(csv.reader(io.StringIO(text))) == [["a", "b"], ["a,b", 'say "hi"'], ["two\nlines", " padded "],
                                                     ["01ff", "2.5"]]
    tsv = exported([["a\tb", 1]], CsvStyle(delimiter="\t", quote="'", header=False))
    assert tsv == "'a\tb'\t1\n"


def test_a_style_that_could_not_be_read_back_is_refused() -> None:
    for bad in ({"delimiter": ",,"}, {"delimiter": '"'}, {"null_string": "a,b"}):
        with pytest.raises(ClientSideError):
            CsvStyle(**bad)  # type: ignore[arg-type]

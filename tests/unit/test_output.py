from __future__ import annotations

import json

from producer.cli import parse_param
from producer.cli.load import typed
from producer.cli.output import csv_text, json_document, rows_text, table
from shared.job.result import JobResult, JobState


def test_a_table_that_fits_is_boxed_and_aligned_by_what_a_terminal_shows() -> None:
    text = table(["id", "city"], [[90210, "東京"], [-855.13, "Zürich"], [1, None]], width=40)
    lines = text.splitlines()
    assert lines[3] == "│   90210 │ 東京   │"  # two cells a character: the borders line up
    assert lines[4] == "│ -855.13 │ Zürich │" and "NULL" in lines[5]


def test_a_table_too_wide_switches_to_expanded_display_and_hides_nothing() -> None:
    text = table(["id", "note"], [[90210, "x" * 200], [22, None]], width=40)
    assert "…" not in text and "x" * 200 in text and "90210" in text
    assert text.splitlines()[:3] == ["-[ RECORD 1 ]", "id   | 90210", "note | " + "x" * 200]


def test_json_keeps_types_and_tags_blobs() -> None:
    result = JobResult("j", JobState.SUCCEEDED, columns=["a", "b"], rowcount=1)
    doc = json.loads(json_document(result, [[2**40, {"$blob": "AAE="}]]))
    assert doc["rows"] == [[2**40, {"$blob": "AAE="}]]
    assert doc["state"] == "SUCCEEDED" and doc["error"] is None


def test_csv_output() -> None:
    assert csv_text(["a", "b"], [[1, "x,y"], [None, {"$blob": "AAE="}]]) == 'a,b\n1,"x,y"\n,x\'0001\''


def test_params_from_the_command_line() -> None:
    assert [parse_param(v) for v in ["5", "1.5", "null", '"5"', "abc", "[1]"]] == [5, 1.5, None, "5", "abc", "[1]"]


def test_csv_values_are_typed() -> None:
    assert [typed(v) for v in ["1", "-2", "1.5", "1e3", "", "abc", "007x"]] == [1, -2, 1.5, 1000.0, None, "abc",
                                                                                 "007x"]


def test_values_with_line_breaks_print_as_sqlite3_prints_them() -> None:
    rows = [[1, "two\nlines"], [22, "one"]]
    assert table(["n", "text"], rows, 80).splitlines() == [
        "┌────┬───────┐",
        "│ n  │ text  │",
        "├────┼───────┤",
        "│  1 │ two   │",
        "│    │ lines │",
        "│ 22 │ one   │",
        "└────┴───────┘"]
    assert rows_text(["n", "text"], rows, "list", headers=False) == "1|two\nlines\n22|one"

"""``srdb shell`` driven as a person drives it: through a pseudo-terminal, typing and reading the screen."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

pytestmark = pytest.mark.e2e


def prompt(text: str = "srdb:sh>") -> re.Pattern[str]:
    """A new prompt of the line editor: it turns bracketed paste on as each prompt begins (the prompt it
    draws again when a line is accepted does not), then draws the prompt amid cursor moves."""
    return re.compile(re.escape("\x1b[?2004h") + r"(?:\x1b\[[0-9;?]*[A-Za-z])*" + re.escape(text))


PROMPT = prompt()


@pytest.fixture
def shell(stack: Path, tmp_path: Path) -> Iterator[pexpect.spawn]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SRDB_")}
    env["HOME"] = str(tmp_path)
    env["TERM"] = "xterm"
    env["PROMPT_TOOLKIT_NO_CPR"] = "1"  # pexpect's terminal answers no cursor position request
    child = pexpect.spawn(sys.executable, ["-m", "producer.cli", "shell", "--db", "sh"], cwd=str(stack), env=env,
                          encoding="utf-8", timeout=30, dimensions=(40, 100))
    child.expect_exact("Statements end with ';'")
    child.expect(PROMPT)
    yield child
    child.close(force=True)


def run(child: pexpect.spawn, line: str) -> str:
    """Type a line, wait for the next prompt, return what the screen showed in between."""
    child.sendline(line)
    child.expect(PROMPT)
    return str(child.before)


def test_a_session_at_the_shell(shell: pexpect.spawn, tmp_path: Path) -> None:
    shell.sendline("CREATE TABLE birds (id INTEGER PRIMARY KEY,")
    shell.expect_exact("...>")
    run(shell, "  name TEXT NOT NULL);")
    assert "birds" in run(shell, ".tables")
    assert "3 rows changed" in run(shell, "INSERT INTO birds (name) VALUES ('wren'), ('kite'), ('Ωmega');")
    screen = run(shell, "SELECT id, name FROM birds ORDER BY id;")
    assert "│  1 │ wren  │" in screen and "│  3 │ Ωmega │" in screen
    run(shell, ".mode csv")
    assert "id,name\r\n1,wren\r\n2,kite" in run(shell, "SELECT id, name FROM birds ORDER BY id LIMIT 2;")
    run(shell, ".mode json")
    assert '[{"id": 3, "name": "Ωmega"}]' in run(shell, "SELECT id, name FROM birds WHERE id = 3;")
    run(shell, ".timer on")
    assert "Run Time: total" in run(shell, "SELECT count(*) FROM birds;")
    run(shell, ".timer off")
    assert "Error: SqlError: no such table: fish" in run(shell, "SELECT * FROM fish;")
    assert "Error: ConstraintViolation: NOT NULL constraint failed: birds.name" in run(
        shell, "INSERT INTO birds (name) VALUES (NULL);")
    assert "CREATE TABLE birds (id INTEGER PRIMARY KEY,\r\n  name TEXT NOT NULL);" in run(shell, ".schema birds")
    script = tmp_path / "more.sql"
    script.write_text("INSERT INTO birds (name) VALUES ('owl');\nSELECT name FROM birds WHERE id = 4;\n")
    assert '"owl"' in run(shell, f".read {script}")
    assert "unknown command .frobnicate" in run(shell, ".frobnicate")
    shell.sendline(".quit")
    shell.expect(pexpect.EOF)
    assert "SELECT count(*) FROM birds;" in (tmp_path / ".srdb_history").read_text()


def test_history_recalls_earlier_lines(shell: pexpect.spawn) -> None:
    assert "│ 41 │" in run(shell, "SELECT 41;")
    shell.send("\x1b[A")  # the up arrow brings the last line back; edit it and run it
    shell.send("\b\b2;\r")  # "SELECT 41;" becomes "SELECT 42;"
    shell.expect(PROMPT)
    assert "│ 42 │" in shell.before


def test_ctrl_c_cancels_the_wait_and_keeps_the_shell(shell: pexpect.spawn) -> None:
    shell.sendline("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c;")
    shell.expect_exact("Ctrl-C cancels it")  # said once a wait passes a second
    shell.sendintr()
    shell.expect(PROMPT)
    assert "Error: cancelled job" in shell.before
    assert "│ 7 │" in run(shell, "SELECT 7;")
    shell.sendline("SELECT 'half typed")
    shell.expect_exact("...>")
    shell.sendintr()  # at the prompt, Ctrl-C drops the statement being typed
    shell.expect(PROMPT)
    assert "│ 8 │" in run(shell, "SELECT 8;")
    shell.sendeof()
    shell.expect(pexpect.EOF)


def test_the_prompt_shows_as_of_mode_and_a_bad_as_of_is_refused(shell: pexpect.spawn) -> None:
    run(shell, "CREATE TABLE v (a);")
    assert "not a version number" in run(shell, ".as_of someday")
    shell.sendline(".as_of 1")
    shell.expect(prompt("srdb:sh@1>"))
    run(shell, ".as_of off")
    assert "│        0 │" in run(shell, "SELECT count(*) FROM v;")


def test_begin_commit_and_rollback_at_the_prompt(shell: pexpect.spawn) -> None:
    run(shell, "CREATE TABLE tx (n);")
    shell.sendline("BEGIN;")
    shell.expect(prompt("srdb:sh*>"))
    shell.sendline("INSERT INTO tx VALUES (1);")
    shell.expect(prompt("srdb:sh*>"))
    shell.sendline("SELECT count(*) AS c FROM tx;")
    shell.expect(prompt("srdb:sh*>"))
    assert "│ 1 │" in str(shell.before)  # the transaction sees its own write
    run(shell, "ROLLBACK;")
    assert "│ 0 │" in run(shell, "SELECT count(*) AS c FROM tx;")
    shell.sendline("BEGIN; INSERT INTO tx VALUES (2); COMMIT;")
    shell.expect(PROMPT)
    assert "│ 2 │" in run(shell, "SELECT n FROM tx;")
    assert "no transaction is active" in run(shell, "COMMIT;")


def drawn(text: str) -> str:
    """A pattern for ``text`` as the editor draws it: it may redraw mid-word, with escape sequences between."""
    return r"(?:\x1b\[[0-9;?]*[A-Za-z])*".join(re.escape(ch) for ch in text)


def test_tab_completes_dot_commands_tables_and_columns(shell: pexpect.spawn) -> None:
    run(shell, "CREATE TABLE wrens (id INTEGER PRIMARY KEY, wingspan REAL);")
    run(shell, "INSERT INTO wrens (wingspan) VALUES (15.5);")  # by now the names have been fetched again
    shell.send(".ta\t")  # .ta<Tab> becomes .tables
    shell.expect_exact(".tables")
    assert "wrens" in run(shell, "")
    shell.send("SELECT wing\t")  # a column
    shell.expect(drawn("wingspan"))
    shell.send(" FROM wr\t")  # a table
    shell.expect(drawn("wrens"))
    assert "15.5" in run(shell, ";")  # both were completed, or the statement would fail


def test_a_statement_typed_over_lines_is_recalled_as_one(shell: pexpect.spawn) -> None:
    shell.sendline("SELECT 6 *")
    shell.expect_exact("...>")
    assert "│     42 │" in run(shell, "7 AS answer;")
    shell.send("\x1b[A")  # the up arrow brings back the whole statement, both lines
    shell.expect_exact("7 AS answer;")
    shell.send("\r")
    shell.expect(PROMPT)
    assert "│ answer │" in shell.before and "│     42 │" in shell.before

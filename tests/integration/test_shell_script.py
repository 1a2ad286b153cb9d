"""The shell in script mode, against a worker serving the queue: ``.read`` runs a file's lines as if typed
(dot-commands as commands, never as SQL), and an output file that refuses writes is said so, no traceback."""

from __future__ import annotations

import io
from pathlib import Path

from producer.cli.shell.repl import Shell
from producer.client import Client
from worker.batch import Worker


def test_read_runs_dot_commands_as_commands(client: Client, serving: Worker, tmp_path: Path) -> None:
    script = tmp_path / "setup.sql"
    script.write_text(".mode csv\n.headers off\nCREATE TABLE t (a);\nINSERT INTO t VALUES (1), (2);\n"
                      "SELECT a FROM t ORDER BY a;\n")
    out, err = io.StringIO(), io.StringIO()
    shell = Shell(client, "scripted", out=out, err=err, history_file=None, timeout=30, interactive=False)
    assert shell.run_lines([f".read {script}", "SELECT count(*) FROM t;"]) == 0, err.getvalue()
    assert out.getvalue().split() == ["1", "2", "2"]


def test_an_output_file_that_refuses_writes_is_an_error_not_a_traceback(client: Client, serving: Worker,
                                                                        tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    shell = Shell(client, "scripted2", out=out, err=err, history_file=None, timeout=30, interactive=False)
    assert shell.run_lines([".output /dev/full", "SELECT 42;"]) == 1
    assert "cannot write /dev/full" in err.getvalue() and "Traceback" not in err.getvalue()
    assert "42" in out.getvalue()  # the result still reaches the screen


def test_a_wait_inside_a_transaction_says_what_it_waits_for(client: Client) -> None:
    """No worker serves the queue: the statement after BEGIN waits, and after a second the shell says for
    which job and in what state (a COMMIT waits through the same path), then gives up at --timeout."""
    out, err = io.StringIO(), io.StringIO()
    shell = Shell(client, "waits", out=out, err=err, history_file=None, timeout=2.5, interactive=True)
    shell.run_lines(["BEGIN;", "SELECT 1;"])
    said = err.getvalue()
    assert "waiting for job " in said and "(QUEUED, " in said and "Ctrl-C cancels it" in said, said
    assert "WaitTimeout" in said

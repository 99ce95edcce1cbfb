"""The ``synfin`` command line: a thin click layer over the packages that do the work.

Errors are reported here, once, as one line naming the problem and the fix, with the exit code
of their class (collector/errors.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from synfin.cli.lab import lab_command
from synfin.cli.replay import replay
from synfin.cli.run import run
from synfin.cli.stream import record, watch
from synfin.cli.support import (
    OneLineErrors,
    reports_errors,
    tracefs_option,
)
from synfin.cli.trace import trace_command
from synfin.cli.web import web_command
from synfin.errors import EXIT_FAILURE, EXIT_OK
from synfin.kernel import doctor as doctor_checks


@click.group(
    cls=OneLineErrors,
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "SYNFIN"},
)
@click.version_option(package_name="synfin")
def main() -> None:
    """Watch TCP handshakes and teardowns with eBPF, in the textbook's states."""


@main.command()
@tracefs_option
@reports_errors
def doctor(tracefs_root: Path | None) -> None:
    """Check that synfin can run here, and say what it observes and what it infers."""
    checks = doctor_checks.run_checks(tracefs_root)
    for check in checks:
        click.echo(check.line())
    ok = doctor_checks.passed(checks)
    click.echo(
        "synfin can run here." if ok else "synfin cannot run here until the FAIL lines are fixed."
    )
    sys.exit(EXIT_OK if ok else EXIT_FAILURE)


main.add_command(watch)
main.add_command(record)
main.add_command(replay)
main.add_command(run)
main.add_command(lab_command)
main.add_command(trace_command)
main.add_command(web_command)

"""Errors synfin reports to a person, and the exit codes the CLI gives them.

Every error names the problem and, where there is one, the fix. The CLI prints it once, on
one line, and exits with the code of its class; nothing below the CLI prints errors itself.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1  # a check failed (doctor) or the command could not finish its work
EXIT_USAGE = 2  # bad flags or arguments (click's own code)
EXIT_ENVIRONMENT = 3  # this host cannot run synfin as it is (tracefs, bcc, privileges, kernel)


class SynfinError(Exception):
    """A problem a person can act on."""

    exit_code = EXIT_FAILURE

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} (fix: {fix})" if fix else problem)


class EnvironmentProblem(SynfinError):
    """The host lacks something synfin needs."""

    exit_code = EXIT_ENVIRONMENT

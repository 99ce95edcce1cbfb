"""What the scraper gets, and what synfin never does."""

from __future__ import annotations

import ast

from tests.paths import REPO

COLLECTOR = REPO / "collector"


def test_no_shell_is_ever_invoked() -> None:
    """Every subprocess gets an argument list; nothing goes through a shell."""
    for path in COLLECTOR.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                assert name not in (
                    "os.system",
                    "os.popen",
                    "subprocess.getoutput",
                    "subprocess.getstatusoutput",
                ), f"{path.name}: {name}"
                for keyword in node.keywords:
                    if keyword.arg == "shell":
                        assert (
                            isinstance(keyword.value, ast.Constant) and keyword.value.value is False
                        ), f"{path.name}: shell="

"""The import rule: each package of synfin imports only the layers beneath it.

The data path runs kernel -> records -> engine -> ladder -> views, with the exporter, the lab
and the command line on top. The pure layers (records, engine, ladder, views) never touch the
kernel or bcc, so they replay recordings and run in these unit tests anywhere; the analysis
(engine, ladder) never imports a view. The rule is checked on the source as text (every import
statement, inside functions and TYPE_CHECKING blocks too), and shown failing on a copy.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

from tests.paths import REPO

SOURCE = REPO / "collector"
BASE = {"errors", "units", "probes"}
# What each package may import from synfin, besides itself and BASE.
ALLOWED: dict[str, set[str]] = {
    "records": set(),
    "engine": {"records"},
    "ladder": {"records", "engine"},
    "views": {"records", "engine", "ladder"},
    "kernel": {"records"},
    "exporter": {"kernel", "records", "engine"},
    "lab": {"kernel", "records", "engine", "ladder", "views"},
    "web": {"records", "engine", "ladder", "views", "exporter"},
    "cli": {"kernel", "records", "engine", "ladder", "views", "exporter", "lab", "web"},
}
# Third-party modules that belong to one layer only.
OWNED = {"bcc": {"kernel"}, "prometheus_client": {"exporter"}}


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in a file, relative imports made absolute."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module == "synfin" or (node.level == 0 and module.startswith("synfin.")):
                # `from synfin import x`: x may be a package or a module
                found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, module))
    return found


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "synfin" and len(parts) > 1 else None


def violations(source: Path) -> list[str]:
    problems = []
    for path in sorted(source.rglob("*.py")):
        relative = path.relative_to(source)
        if len(relative.parts) < 2:
            continue  # top-level modules (errors, units) are the base every layer may use
        layer = relative.parts[0]
        allowed = ALLOWED[layer] | BASE | {layer}
        for line, module in imports_of(path):
            target = layer_of(module)
            top = module.split(".")[0]
            if target is not None and target not in allowed:
                problems.append(f"{relative}:{line}: {layer} imports {module}")
            if top in OWNED and layer not in OWNED[top]:
                problems.append(f"{relative}:{line}: {layer} imports {top}")
    return problems


def test_every_package_imports_only_the_layers_beneath_it() -> None:
    assert violations(SOURCE) == []


def test_every_package_has_a_rule() -> None:
    packages = {p.name for p in SOURCE.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(ALLOWED)


def test_a_pure_layer_reaching_for_the_kernel_is_caught(tmp_path: Path) -> None:
    copy = tmp_path / "collector"
    shutil.copytree(SOURCE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    events = copy / "records" / "events.py"
    events.write_text(events.read_text() + "\nfrom synfin.kernel import loader\n")
    rules = copy / "ladder" / "rules.py"
    rules.write_text(rules.read_text() + "\nfrom synfin.views import watch\n")
    layout = copy / "views" / "watch.py"
    layout.write_text(layout.read_text() + "\n\ndef f() -> None:\n    import bcc\n")
    found = violations(copy)
    assert any(p.startswith("records/events.py") and "synfin.kernel.loader" in p for p in found)
    assert any(p.startswith("ladder/rules.py") and "synfin.views.watch" in p for p in found)
    assert any(p.startswith("views/watch.py") and p.endswith("imports bcc") for p in found)
    assert len(found) == 3

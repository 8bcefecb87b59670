"""The listener builds its HTTP front end; the front end must not import the listener back
(not even for type checking): an import cycle makes either module impossible to read alone."""

import ast
from pathlib import Path

from cloudchat_cli.services.webhooks import httpfront


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_http_front_end_does_not_import_the_listener():
    modules = imported_modules(Path(httpfront.__file__))
    assert "cloudchat_cli.services.webhooks.listener" not in modules
    assert not any(m.startswith("cloudchat_cli.services.webhooks.listener") for m in modules)

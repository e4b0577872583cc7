"""The walls of the house (docs/architecture.md), checked on the source itself.

- The inner ring: a module of ``gateway.core`` imports only ``gateway.core`` at module level
  (an import inside a function or under ``TYPE_CHECKING`` is not a dependency of the ring).
- No circle between the top-level rooms.
- A channel is its folder plus one line: outside the text-message channel and format folders
  (and migrations, which are history), at most four files of ``gateway/`` name it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"


def _module(path: Path) -> str:
    parts = path.relative_to(GATEWAY.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _room(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "gateway" or len(parts) < 2:
        return None
    return parts[1]


def _module_level_imports(path: Path) -> Iterator[str]:
    """The modules imported when ``path`` is imported (not those imported by its functions)."""
    module = _module(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]

    def walk(nodes: list[ast.stmt]) -> Iterator[str]:
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                yield from walk(node.orelse)
                continue
            if isinstance(node, ast.Import):
                yield from (alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - (node.level - 1)]
                    yield ".".join(base + ([node.module] if node.module else []))
                else:
                    yield node.module or ""
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    yield from walk(getattr(node, field, None) or [])

    yield from walk(ast.parse(path.read_text(encoding="utf-8")).body)


def _sources() -> list[Path]:
    return sorted(p for p in GATEWAY.rglob("*.py") if "migrations" not in p.parts)


def test_core_imports_only_core_at_module_level() -> None:
    outward = [
        f"{_module(path)} imports {imported}"
        for path in _sources()
        if _room(_module(path)) == "core"
        for imported in _module_level_imports(path)
        if _room(imported) not in (None, "core")
    ]
    assert outward == []


def _room_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in _sources():
        source = _room(_module(path))
        if source is None:
            continue
        for imported in _module_level_imports(path):
            target = _room(imported)
            if target is not None and target != source:
                graph.setdefault(source, set()).add(target)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one room (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(room: str) -> None:
        index[room] = low[room] = len(index)
        stack.append(room)
        on_stack.add(room)
        for other in sorted(graph.get(room, ())):
            if other not in index:
                visit(other)
                low[room] = min(low[room], low[other])
            elif other in on_stack:
                low[room] = min(low[room], index[other])
        if low[room] == index[room]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == room:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for room in sorted(graph):
        if room not in index:
            visit(room)
    return found


def test_no_circle_between_rooms() -> None:
    assert _circles(_room_graph()) == []


def test_the_circle_finder_finds_circles() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_a_channel_is_named_outside_its_folders_at_most_four_times() -> None:
    own = ("channels/sms", "formats/sms")
    naming = sorted(
        str(path.relative_to(GATEWAY))
        for path in GATEWAY.rglob("*")
        if path.is_file() and path.suffix in (".py", ".html", ".js", ".css", ".toml", ".txt")
        and "migrations" not in path.parts
        and not any(str(path.relative_to(GATEWAY)).startswith(folder) for folder in own)
        and re.search(r"sms", path.read_text(encoding="utf-8", errors="replace"), re.I)
    )
    assert len(naming) <= 4, naming

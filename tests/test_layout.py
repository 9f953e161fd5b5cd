"""The layout's rules, read from the source: `car` never imports sim2real, calibration or racer, and
no package has an import cycle, between modules or between their folders.

Imports are read with ast, those inside functions too (a late import still ties two modules)."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every absolute module name `path` imports (for `from a.b import c`: a.b, and a.b.c where that is a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def modules(package: str) -> dict[str, set[str]]:
    """Module -> the modules of `package` it imports."""
    found = {module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}
    return {name: {m for m in imported(path) if m in found and m != name} for name, path in found.items()}


def folders(package: str) -> dict[str, set[str]]:
    """The same graph one level down: `car.graph.stack` counts as `car.graph`, `car.clock` as itself."""
    def folder(name: str) -> str:
        return ".".join(name.split(".")[:2])
    graph: dict[str, set[str]] = {}
    for name, targets in modules(package).items():
        graph.setdefault(folder(name), set()).update(folder(t) for t in targets if folder(t) != folder(name))
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of `graph` as [a, b, ..., a], or [] when it has none."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        path.pop()
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_the_cycle_finder_finds_a_cycle_and_only_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_the_car_package_never_imports_sim2real_calibration_or_racer() -> None:
    outside = sorted(f"{module_name(p)} imports {m}" for p in (ROOT / "car").rglob("*.py") for m in imported(p)
                     if m.split(".")[0] in ("sim2real", "calibration", "racer"))
    assert outside == []


@pytest.mark.parametrize("package", ["car", "racer", "sim2real", "calibration"])
def test_no_import_cycle_between_modules(package: str) -> None:
    cycle = find_cycle(modules(package))
    assert not cycle, f"import cycle: {' -> '.join(cycle)}"


@pytest.mark.parametrize("package", ["car", "racer", "sim2real", "calibration"])
def test_no_import_cycle_between_folders(package: str) -> None:
    cycle = find_cycle(folders(package))
    assert not cycle, f"import cycle between folders: {' -> '.join(cycle)}"


def test_the_graph_reads_real_imports() -> None:
    """The rules above hold of the graph these functions read; this pins that it is the code's."""
    car = folders("car")
    assert {"car.camera", "car.policy", "car.control", "car.actuators", "car.transport"} <= car["car.graph"]
    assert "car.transport" in car["car.console"]
    assert "car.graph" not in car["car.console"]  # the console is a node: it reaches the others only over the bus
    assert "racer.processes" in folders("racer")["racer.commands"]

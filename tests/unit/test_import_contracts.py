"""The acyclic import contract of `make lint` (devkit/import_contracts.py) fails on a cycle."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import grimp
import pytest

from devkit.import_contracts import AcyclicContract, find_cycles


@pytest.fixture
def package(tmp_path: Path) -> Iterator[Path]:
    """An empty package `cyclic` on sys.path; tests write its modules."""
    root = tmp_path / "cyclic"
    (root / "inner").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "inner" / "__init__.py").write_text("")
    sys.path.insert(0, str(tmp_path))
    yield root
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m == "cyclic" or m.startswith("cyclic.")]:
        del sys.modules[name]


def write(root: Path, modules: dict[str, str]) -> grimp.ImportGraph:
    for name, source in modules.items():
        (root / f"{name.replace('.', '/')}.py").write_text(source)
    return grimp.build_graph("cyclic", cache_dir=None)


def contract() -> AcyclicContract:
    return AcyclicContract("no cycles", {}, {"packages": ["cyclic"]})


def test_a_cycle_through_three_modules_breaks_the_contract_and_is_named(package: Path) -> None:
    graph = write(
        package,
        {
            "a": "from cyclic import b\n",
            "b": "from cyclic.inner import c\n",
            "inner.c": "import typing\nif typing.TYPE_CHECKING:\n    from cyclic import a\n",
            "d": "from cyclic import a\n",  # imports the cycle, is not in it
        },
    )

    check = contract().check(graph, verbose=False)

    assert not check.kept
    assert check.metadata["cycles"] == [["cyclic.a", "cyclic.b", "cyclic.inner.c"]]


def test_a_module_importing_itself_is_a_cycle(package: Path) -> None:
    graph = write(package, {"a": "import cyclic.a\n"})

    assert find_cycles(graph, graph.modules) == [["cyclic.a"]]


def test_imports_that_only_point_one_way_keep_the_contract(package: Path) -> None:
    graph = write(
        package,
        {
            "a": "from cyclic import b\nfrom cyclic.inner import c\n",
            "b": "from cyclic.inner import c\n",
            "inner.c": "import json\n",
        },
    )

    check = contract().check(graph, verbose=False)

    assert check.kept
    assert check.metadata["cycles"] == []

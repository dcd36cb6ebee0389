"""An import-linter contract that import-linter lacks: no import cycle among modules.

import-linter's own `acyclic_siblings` checks cycles between the children of a package;
this one checks every module of the named packages, type-checking imports included (a
cycle hidden behind `if TYPE_CHECKING` is still two modules that cannot be read apart).
Used by `lint-imports` (pyproject.toml, [tool.importlinter]); tests/unit/test_import_contracts.py
shows it fails on a cycle.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


class AcyclicContract(Contract):
    """Configuration: `packages`, the packages whose modules must import no cycle."""

    type_name = "acyclic"

    packages = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        names: list[str] = self.packages  # type: ignore[assignment]
        modules = {m for p in names for m in (p, *graph.find_descendants(p))}
        cycles = find_cycles(graph, modules)
        return ContractCheck(kept=not cycles, metadata={"cycles": cycles})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for cycle in check.metadata["cycles"]:
            output.print_error(" -> ".join([*cycle, cycle[0]]), bold=False)
            output.new_line()


def find_cycles(graph: ImportGraph, modules: Iterable[str]) -> list[list[str]]:
    """One cycle for each group of `modules` that import each other (a strongly connected
    component, Tarjan's algorithm, without recursion), as the modules in import order."""
    within = set(modules)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def imported(module: str) -> list[str]:
        return sorted(m for m in graph.find_modules_directly_imported_by(module) if m in within)

    for root in sorted(within):
        if root in index:
            continue
        work: list[tuple[str, Any]] = [(root, iter(imported(root)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, successors = work[-1]
            successor = next(successors, None)
            if successor is None:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[module])
                if low[module] == index[module]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == module:
                            break
                    cycle = _cycle_in(graph, sorted(component))
                    if cycle:
                        cycles.append(cycle)
            elif successor not in index:
                index[successor] = low[successor] = len(index)
                stack.append(successor)
                on_stack.add(successor)
                work.append((successor, iter(imported(successor))))
            elif successor in on_stack:
                low[module] = min(low[module], index[successor])
    return sorted(cycles)


def _cycle_in(graph: ImportGraph, component: list[str]) -> list[str] | None:
    """A cycle through the component's first module, or None when it is alone and does
    not import itself."""
    first = component[0]
    members = set(component)
    if len(component) == 1:
        return [first] if first in graph.find_modules_directly_imported_by(first) else None
    # Any path from a member back to `first` stays inside the component.
    successor = min(m for m in graph.find_modules_directly_imported_by(first) if m in members)
    chain = graph.find_shortest_chain(importer=successor, imported=first)
    assert chain is not None  # both in one strongly connected component
    return [first, *chain[:-1]]

"""Command tables: name → (help, where), each command's code imported only when it is chosen.

`where` names a module, or an object in one (`"package.module:NAME"`), that has
`add_arguments(parser)` and `run(args) -> int`. `add_commands` turns a table into argparse
subcommands whose arguments are added when argparse meets the name on the command line, so
`tracemill --help` imports none of them (and never Ray) and `tracemill bench load --help` only
the load benchmark. A group (`tracemill bench`) is a command whose `add_arguments` adds a table
of its own; the deepest command chosen is the one that runs.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, cast

__all__ = ["Command", "Entry", "RUN", "add_commands", "load", "run_chosen"]

RUN = "_tracemill_where"  # the namespace attribute holding the chosen command's `where`


class Command(NamedTuple):
    help: str
    where: str


class Runnable(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


@dataclass(frozen=True)
class Entry:
    """A command in a module that holds several (`where = "module:NAME"`)."""

    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def load(where: str) -> Runnable:
    module, _, name = where.partition(":")
    found = importlib.import_module(module)
    return cast(Runnable, getattr(found, name) if name else found)


class _LazySubcommands(argparse._SubParsersAction):  # type: ignore[type-arg]
    """Subparsers whose arguments come from the table when argparse picks one."""

    def __init__(self, *args: Any, table: Mapping[str, Command], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._table = table
        self._filled: set[str] = set()

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Sequence[Any] | str | None, option_string: str | None = None) -> None:
        name = values[0] if isinstance(values, Sequence) and values else None
        command = self._table.get(name) if isinstance(name, str) else None
        if command is not None:
            if name not in self._filled:
                load(command.where).add_arguments(self._name_parser_map[name])
                self._filled.add(name)
            setattr(namespace, RUN, command.where)  # a nested table, parsed next, overrides it
        super().__call__(parser, namespace, values, option_string)


def add_commands(parser: argparse.ArgumentParser, table: Mapping[str, Command], dest: str) -> None:
    """Add `table` to `parser` as required subcommands (`args.<dest>` is the name chosen)."""
    sub = parser.add_subparsers(dest=dest, required=True, metavar="{" + ",".join(table) + "}",
                                action=_LazySubcommands, table=table)
    for name, command in table.items():
        sub.add_parser(name, help=command.help, description=command.help,
                       formatter_class=argparse.RawDescriptionHelpFormatter)


def run_chosen(args: argparse.Namespace) -> int:
    return load(getattr(args, RUN)).run(args)

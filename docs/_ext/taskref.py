"""The task reference, made from the tasks themselves: the help ``fab --list`` prints and each option's help.

``fab``'s tasks are ``fabfile.ns``, Invoke's (this machine's) are ``tasks.ns``: each task's
docstring (its first line is what ``--list`` shows) and the options Invoke makes of its
arguments, with their flags, defaults and ``help={...}`` texts.
"""
from __future__ import annotations

import inspect

from invoke import Collection, Task

from fabfile.paths import PROJECT
from mdtable import cell, table


def flags(argument) -> str:
    """An option as typed: ``--with-data`` / ``-w``, or ``DATE`` for a positional argument."""
    if argument.positional:
        return f"`{argument.name.upper()}`"
    return " ".join(f"`{'--' if len(name) > 1 else '-'}{name}`" for name in argument.names)


def shown_default(argument) -> str:
    """An option's default as a cell: a flag's is off, none is a dash, a path in the checkout relative."""
    if argument.kind is bool:
        return "off" if not argument.default else "on"
    if argument.default is None:
        return "—"
    return f"`{str(argument.default).replace(f'{PROJECT}/', '')}`"  # a path in this checkout: relative to it


def task_section(command: str, name: str, task: Task) -> str:
    """One task: its name as typed, its docstring, its options."""
    doc = inspect.cleandoc(task.__doc__ or "")
    first, _, rest = doc.partition("\n")
    out = [f"### `{command} {name}`\n", cell(first) + "\n"]
    if rest.strip():
        out.append(cell(" ".join(rest.split())) + "\n")
    arguments = task.get_arguments()
    if arguments:
        out.append(table(("option", "default", "help"),
                         [(flags(a), shown_default(a), cell(a.help or "")) for a in arguments]))
    return "\n".join(out)


def render_collection(command: str, collection: Collection) -> str:
    """Every task of a collection, sorted by name."""
    return "\n".join(task_section(command, name, collection[name]) for name in sorted(collection.task_names))


def render() -> str:
    """The reference as Markdown: ``fab``'s tasks, then ``invoke``'s."""
    import fabfile
    import tasks
    return "\n".join([
        "(tasks-fab)=\n## Remote: `fab -H NAME TASK`\n", render_collection("fab", fabfile.ns),
        "(tasks-invoke)=\n## This machine: `invoke TASK`\n", render_collection("invoke", tasks.ns),
    ])

"""Optional positional arguments for Invoke tasks: ``restore`` and ``restore DATE`` both work.

Invoke 2 has none: a positional argument without a value makes the parser stop with "did not
receive required positional arguments", and one with a default is never filled (the parser
fills only arguments whose value is None). ``optional_positional(task, "date")`` marks the
argument; the parser then fills it when a word is given and, at the end of the task's
arguments, lets it go unfilled (the task gets its default, None). Flags are unaffected.
"""
from __future__ import annotations

from invoke.parser.parser import ParseMachine

_complete_context = ParseMachine.complete_context


def _complete_with_optional_positionals(machine: ParseMachine) -> None:
    context = machine.context
    if context is not None:
        context.positional_args = [arg for arg in context.positional_args
                                   if not (getattr(arg, "optional_positional", False) and arg.value is None)]
    _complete_context(machine)


ParseMachine.complete_context = _complete_with_optional_positionals


def optional_positional(task_object, *names: str):
    """``task_object`` with the positional arguments ``names`` made optional; the task itself."""
    arguments_of = task_object.get_arguments

    def get_arguments(*args, **kwargs):
        arguments = arguments_of(*args, **kwargs)
        for argument in arguments:
            if argument.name in names:
                argument.optional_positional = True
        return arguments

    task_object.get_arguments = get_arguments
    return task_object

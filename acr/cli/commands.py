"""How acr's commands are built: each one's options are a library function's parameters.

As anomalib derives its subcommands from its ``Engine``'s signatures, a :class:`Command` reads
its function's type hints, defaults and docstring (jsonargparse's ``add_function_arguments``),
so every default and help line is written once, in the library, and a ``--config FILE`` YAML
takes the same keys as the flags. A parameter typed as a settings dataclass (an engine's) is a
group of options, ``--fingerprint.peaks_per_second``, listed alone by ``--fingerprint.help``.
A failure a user can fix is one line, ``acr COMMAND: error: ...``, and exit status 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json as json_module
import sys
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import docstring_parser
from jsonargparse import ActionConfigFile, ArgumentParser

from acr.audio import AudioError
from acr.data.manifests import ManifestError
from acr.database.schema import DatabaseError
from acr.files import write_json
from acr.retrieval.engine import IndexDirectoryError
from acr.runs.sweep import SweepError


@dataclass(frozen=True)
class Command:
    """A subcommand whose options are ``function``'s parameters.

    ``show`` prints what the function returned; its parameters after the first are the
    function's arguments of the same name, or else options of their own (``json``, say).
    ``positional`` names parameters given without a flag, in order, and
    ``variadic`` one that takes any number of values (``acr recognize --index DIR a.wav
    b.wav``). ``extend`` adds options that depend on the command line itself (a data source's
    own settings); their values reach the function as the dict ``options_into``.
    """

    function: Callable[..., Any]
    show: Callable[..., None] | None = None
    positional: tuple[str, ...] = ()
    variadic: str | None = None
    config_flag: str = "--config"
    extend: Callable[[ArgumentParser, Sequence[str]], None] | None = None
    options_into: str | None = None

    @property
    def description(self) -> str:
        doc = docstring_parser.parse(self.function.__doc__ or "")
        return "\n\n".join(part for part in (doc.short_description, doc.long_description) if part)

    @property
    def _shown(self) -> list[str]:
        """What ``show`` takes besides the result."""
        if self.show is None:
            return []
        return list(inspect.signature(self.show).parameters)[1:]

    @property
    def _show_options(self) -> set[str]:
        """``show``'s own options: its parameters that are not the function's."""
        return set(self._shown) - set(inspect.signature(self.function).parameters)

    def parser(self, prog: str, argv: Sequence[str] = ()) -> ArgumentParser:
        parser = ArgumentParser(prog=prog, description=self.description)
        parser.add_argument(
            self.config_flag, action=ActionConfigFile, help="YAML file with these options"
        )
        hints = typing.get_type_hints(self.function)
        helps = parameter_help(self.function)
        defaults = inspect.signature(self.function).parameters
        for name in self.positional:
            default = defaults[name].default
            optional = (
                {} if default is inspect.Parameter.empty else {"nargs": "?", "default": default}
            )
            parser.add_argument(name, type=hints[name], help=helps.get(name), **optional)
        if self.variadic:
            required = defaults[self.variadic].default is inspect.Parameter.empty
            nargs = "+" if required else "*"
            parser.add_argument(self.variadic, nargs=nargs, type=str, help=helps.get(self.variadic))
        skipped = {*self.positional, *([self.variadic] if self.variadic else [])}
        skipped |= {self.options_into} if self.options_into else set()
        parser.add_function_arguments(self.function, skip=skipped, fail_untyped=True)
        if self._show_options:
            others = set(inspect.signature(self.show).parameters) - self._show_options
            parser.add_function_arguments(self.show, skip=others, fail_untyped=True)
        for name, hint in hints.items():
            if dataclasses.is_dataclass(hint) and name not in skipped | {"return"}:
                # A field declared None takes a preset chosen by other fields (the hash width's
                # landmark settings) when the dataclass is made; the default instance holds the
                # presets of its own defaults, which would override those of the user's choice.
                parser.set_defaults(
                    {
                        f"{name}.{field.name}": None
                        for field in dataclasses.fields(hint)
                        if field.default is None
                    }
                )
                parser.add_argument(
                    f"--{name}.help",
                    action=_GroupHelp,
                    settings=hint,
                    help=f"show only the {name} options and exit",
                )
        if self.extend is not None:
            self.extend(parser, argv)
        return parser

    def run(self, prog: str, argv: Sequence[str]) -> int:
        """Parse ``argv``, call the function and show its result; 1 on a user error."""
        parser = self.parser(prog, argv)
        try:
            values = dict(vars(parser.instantiate(parser.parse_args(list(argv)))))
        except (TypeError, ValueError) as error:  # a settings dataclass refused its values
            print(f"{prog}: error: {error}", file=sys.stderr)
            return 1
        values.pop(self.config_flag.lstrip("-"), None)
        shown = {name: values.pop(name) for name in self._show_options}
        parameters = inspect.signature(self.function).parameters
        arguments = {name: values.pop(name) for name in list(values) if name in parameters}
        shown |= {name: arguments[name] for name in self._shown if name in arguments}
        if self.options_into:
            arguments[self.options_into] = {k: v for k, v in values.items() if v is not None}
        try:
            result = self.function(**arguments)
            if self.show is not None:
                self.show(result, **shown)
        except USER_ERRORS as error:
            print(f"{prog}: error: {error}", file=sys.stderr)
            return 1
        return 0


def json_output(report: Any, json: str | None) -> bool:
    """A ``--json`` option: '-' prints only the JSON (True: print nothing else), a path gets it
    written there (atomically)."""
    if json == "-":
        print(json_module.dumps(report, indent=2))
        return True
    if json:
        write_json(json, report)
    return False


def parameter_help(function: Callable[..., Any]) -> dict[str, str]:
    """Each parameter's help line, from the function's docstring ``Args:`` section."""
    doc = docstring_parser.parse(function.__doc__ or "")
    return {param.arg_name: " ".join((param.description or "").split()) for param in doc.params}


class _GroupHelp(argparse.Action):
    """``--NAME.help``: the options of one settings dataclass, with their defaults."""

    def __init__(self, option_strings: list[str], settings: type, **kwargs: Any) -> None:
        self.settings = settings
        kwargs.update(dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0)
        super().__init__(option_strings, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        group = option_string.removesuffix(".help").lstrip("-")
        only = ArgumentParser(prog=f"{parser.prog} --{group}.*")
        only.add_class_arguments(self.settings, group)
        only.print_help()
        parser.exit()


class CommandGroup(dict):
    """Subcommands under one name (``acr data inspect|prepare|...``)."""

    def run(self, prog: str, argv: Sequence[str]) -> int:
        if not argv or argv[0] in ("-h", "--help") or argv[0] not in self:
            width = max(map(len, self))
            lines = [f"usage: {prog} {{{','.join(self)}}} [options]", ""]
            lines += [f"  {name:<{width}}  {command.description.splitlines()[0]}"
                      for name, command in self.items()]  # fmt: skip
            print("\n".join(lines))
            if argv and argv[0] not in ("-h", "--help"):
                print(f"{prog}: error: unknown command {argv[0]!r}", file=sys.stderr)
                return 2
            return 0
        return self[argv[0]].run(f"{prog} {argv[0]}", argv[1:])


# What a user can cause and fix: a one-line error, never a traceback.
# (A PipelineError is a ValueError: naming it here would import the pipeline and Lightning.)
USER_ERRORS = (IndexDirectoryError, ManifestError, AudioError, FileNotFoundError, ValueError,
               SweepError, DatabaseError)  # fmt: skip

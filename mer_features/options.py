"""Options as frozen dataclasses with field metadata, and the command line generated from them.

A settings class (:class:`~mer_features.pipeline.options.ExtractOptions`, a modality's options
such as :class:`~mer_features.modalities.video.VideoOptions`) declares each option once, with
:func:`option`: its default, its flag, its help and how the help shows the default. The class
checks its own bounds in ``__post_init__`` and raises
:class:`~mer_features.errors.ParameterError` naming the Python parameter in backticks;
:func:`add_options` turns the fields into argparse options (help with the default on every
one), :func:`given` reads back what a command line gave, and :func:`with_flags` rewrites a
library message so that it names the flags instead of the parameters.

:class:`ArgumentParser` is argparse's with the habits of both programs: no abbreviated flags
(``allow_abbrev=False`` on every sub-command too), and a misspelt flag or command named first,
with the closest known one ("did you mean --modality?"), even when a required option is missing
as well. ``mer_heads`` can build its parsers with the same class.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import MISSING, Field, field, fields
from typing import Any


def option(default: Any = MISSING, flag: str | tuple[str, ...] | None = None,
           help: str | Callable[[], str] = "", *,
           default_factory: Callable[[], Any] | None = None, choices: Any = None,
           metavar: str | None = None, default_text: str | Callable[[], str] | None = None,
           required: bool = False, switch: Any = MISSING, parse: Callable[[str], Any] | None = None,
           append: bool = False, collect: Callable[[list[Any]], Any] | None = None) -> Any:
    """A dataclass field with what the command line needs to offer it.

    flag : ``--name`` (or several spellings, ``("-o", "--option")``); None keeps the field off
        the command line.
    help : one phrase (or a function returning it, for help made from a registry);
        :func:`cli_help` adds the default.
    choices : a tuple, or a function returning one (a registry's names).
    default_text : how the help shows the default (a function is called when the help is
        built); by default the value itself, nothing for None or a switch.
    required : the command line requires the flag (the Python default stays).
    switch : the flag takes no value and sets the field to this value (``True`` for
        ``--overwrite``, ``False`` for ``--no-progress``).
    parse : text -> value for argparse (default: from the field's type: int, float or str);
        raise ``argparse.ArgumentTypeError`` for text that is not a value at all. Ranges are
        the class's own check, not the parser's.
    append, collect : the flag may repeat; ``collect`` turns the list of values into the
        field's value (``-o K=V -o K2=V2`` -> a dict).
    """
    metadata = {"flag": flag, "help": help, "choices": choices, "metavar": metavar,
                "default_text": default_text, "required": required, "switch": switch,
                "parse": parse, "append": append, "collect": collect}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def flags_of(f: Field) -> tuple[str, ...]:
    """The command-line spellings of field ``f`` (empty when it has none)."""
    flag = f.metadata.get("flag")
    if not flag:
        return ()
    return (flag,) if isinstance(flag, str) else tuple(flag)


def flag_map(*classes: type) -> dict[str, str]:
    """Parameter name -> its long flag, over the fields of ``classes``."""
    out: dict[str, str] = {}
    for cls in classes:
        for f in fields(cls):
            spellings = flags_of(f)
            if spellings:
                out[f.name] = spellings[-1]
    return out


def with_flags(message: str, flags: Mapping[str, str]) -> str:
    """``message`` with every parameter named in backticks (`` `seed` ``) that ``flags`` knows
    replaced by its flag (``--seed``): how the command line shows a library message."""
    return re.sub(r"`([A-Za-z_][A-Za-z0-9_]*)`",
                  lambda m: flags.get(m.group(1), m.group(0)), message)


def cli_help(f: Field) -> str:
    """The help of the option of field ``f``: its phrase and its default."""
    meta = f.metadata
    text = meta["help"]() if callable(meta["help"]) else meta["help"]
    if meta["required"]:
        return f"{text} (required)" if text else "(required)"
    default = meta["default_text"]
    if callable(default):
        default = default()
    if default is None:
        if meta["switch"] is not MISSING or f.default is MISSING or f.default is None:
            default = ""
        elif isinstance(f.default, float):
            default = f"{f.default:g}"
        else:
            default = str(f.default)
    return f"{text} (default {default})" if default else text


def add_options(parser: Any, cls: type, *, skip: Iterable[str] = (),
                only: Iterable[str] | None = None) -> None:
    """One option per field of the settings class ``cls`` that has a flag (less ``skip``, or
    only those in ``only``). An option not given is left out of the parsed namespace, so the
    class's own default applies (:func:`given`)."""
    skip, only = set(skip), None if only is None else set(only)
    for f in fields(cls):
        spellings = flags_of(f)
        if not spellings or f.name in skip or (only is not None and f.name not in only):
            continue
        meta = f.metadata
        kwargs: dict[str, Any] = {"dest": f.name, "help": cli_help(f),
                                  "default": argparse.SUPPRESS}
        if meta["required"]:
            kwargs["required"] = True
        if meta["switch"] is not MISSING:
            kwargs.update(action="store_const", const=meta["switch"])
        else:
            choices = meta["choices"]() if callable(meta["choices"]) else meta["choices"]
            kwargs.update(type=meta["parse"] or _parser_of(f), choices=choices,
                          metavar=meta["metavar"])
            if meta["append"]:
                kwargs["action"] = "append"
        parser.add_argument(*spellings, **kwargs)


def _parser_of(f: Field) -> Callable[[str], Any]:
    kind = str(f.type).split("|")[0].strip()
    return {"int": int, "float": float}.get(kind, str)


def given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` that the command line gave, by name (``collect`` applied)."""
    out: dict[str, Any] = {}
    for f in fields(cls):
        if f.metadata.get("flag") and hasattr(args, f.name):
            value = getattr(args, f.name)
            collect = f.metadata.get("collect")
            out[f.name] = collect(value) if collect is not None else value
    return out


# ---------------------------------------------------------------------------------------------
# The parser


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser without abbreviations, naming a misspelt flag or command first.

    ``--modalty audio`` (with ``--modality`` required and missing) says
    ``unrecognized argument --modalty; did you mean --modality?`` instead of only that
    ``--modality`` is required; ``--feature`` is not taken for ``--features``. Sub-command
    parsers made with ``add_subparsers().add_parser`` are of the same class.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Sequence[str] | None = None,
                         namespace: argparse.Namespace | None = None
                         ) -> tuple[argparse.Namespace, list[str]]:
        args = list(sys.argv[1:] if args is None else args)
        self._refuse_unknown(args)
        return super().parse_known_args(args, namespace)

    def _refuse_unknown(self, args: list[str]) -> None:
        """Stop at the first flag (before this parser's sub-command, if it has one) that no
        option of this parser spells, and at an unknown sub-command."""
        known = [s for action in self._actions for s in action.option_strings]
        commands = next((a.choices for a in self._actions
                         if isinstance(a, argparse._SubParsersAction)), None)
        for token in args:
            if token == "--":
                return
            if commands is not None and not token.startswith("-"):
                if token not in commands and self._positionals_before_command() == 0:
                    hint = _suggest(token, list(commands)) or "."
                    self.error(f"unknown command '{token}'{hint} The commands are "
                               f"{', '.join(commands)}.")
                return  # the rest belongs to the sub-command
            if not _looks_like_flag(token):
                continue
            name = token.split("=", 1)[0] if token.startswith("--") else token
            if name in known or (not token.startswith("--") and token[:2] in known):
                continue
            self.error(f"unrecognized argument {name}{_suggest(name, known)}")

    def _positionals_before_command(self) -> int:
        return sum(1 for a in self._actions if not a.option_strings
                   and not isinstance(a, argparse._SubParsersAction))


def _looks_like_flag(token: str) -> bool:
    """A token argparse would read as an option: starts with '-', is not a negative number,
    has no space (argparse takes '-5 dB' as a value)."""
    return (token.startswith("-") and len(token) > 1 and " " not in token
            and re.fullmatch(r"-\d+(\.\d*)?([eE][-+]?\d+)?|-\.\d+", token) is None)


def _suggest(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, [k for k in known if k.startswith("--")] or known,
                                      n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


__all__ = ["ArgumentParser", "add_options", "cli_help", "flag_map", "flags_of", "given",
           "option", "with_flags"]

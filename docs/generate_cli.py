"""Refresh the ``--help`` blocks of docs/cli.md from the parsers themselves.

docs/cli.md holds, for every command, a block between two markers::

    <!-- BEGIN generated: mer-features extract --help -->
    ```text
    usage: mer-features extract ...
    ```
    <!-- END generated -->

This script rewrites every such block with the command's current ``--help`` (100 columns wide),
so the option lists in the docs are exactly what the parsers accept. It does not write prose:
a command without a block is listed, with the block to paste under its heading.

    .venv/bin/python docs/generate_cli.py           # rewrite the blocks
    .venv/bin/python docs/generate_cli.py --check   # exit 1 if a block is stale or missing

tests/test_docs.py checks, independently of this script, that every command and option named in
the docs exists and that every option of every command appears in its block.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

CLI_MD = Path(__file__).resolve().parent / "cli.md"
WIDTH = "100"
BLOCK = re.compile(r"(<!-- BEGIN generated: (?P<prog>[a-z0-9 -]+?) --help -->\n)(?P<body>.*?)"
                   r"(<!-- END generated -->)", re.S)


def parsers() -> dict[str, argparse.ArgumentParser]:
    """Every command of both programs by its full name (``mer-features manifest ravdess``)."""
    os.environ["COLUMNS"] = WIDTH  # argparse wraps help to the terminal's width
    from mer_features.cli import build_parser as features_parser
    from mer_heads.cli import build_parser as heads_parser

    found: dict[str, argparse.ArgumentParser] = {}
    for root in (features_parser(), heads_parser()):
        for prog, parser in walk(root):
            found[prog] = parser
    return found


def walk(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(prog, parser) of ``parser`` and of its sub-commands, recursively."""
    yield parser.prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from walk(sub)


def render(text: str, helps: dict[str, str]) -> tuple[str, list[str]]:
    """``text`` with every generated block refreshed, and the unknown commands it names."""
    unknown: list[str] = []

    def one(match: re.Match) -> str:
        prog = match.group("prog")
        if prog not in helps:
            unknown.append(prog)
            return match.group(0)
        return f"{match.group(1)}```text\n{helps[prog].rstrip()}\n```\n{match.group(4)}"

    return BLOCK.sub(one, text), unknown


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="change nothing; exit 1 if a block is stale or a command has none")
    args = ap.parse_args(argv)
    helps = {prog: parser.format_help() for prog, parser in parsers().items()}
    text = CLI_MD.read_text(encoding="utf-8")
    new, unknown = render(text, helps)
    documented = {m.group("prog") for m in BLOCK.finditer(text)}
    missing = [prog for prog in helps if prog not in documented]
    for prog in unknown:
        print(f"docs/cli.md has a block for '{prog}', which is not a command", file=sys.stderr)
    for prog in missing:
        print(f"docs/cli.md has no block for '{prog}'; add under its heading:\n"
              f"<!-- BEGIN generated: {prog} --help -->\n<!-- END generated -->",
              file=sys.stderr)
    if args.check:
        stale = new != text
        if stale:
            print("docs/cli.md's --help blocks are stale: run .venv/bin/python "
                  "docs/generate_cli.py", file=sys.stderr)
        return 1 if stale or missing or unknown else 0
    if new != text:
        CLI_MD.write_text(new, encoding="utf-8")
        print(f"rewrote the --help blocks of {CLI_MD}")
    return 1 if missing or unknown else 0


if __name__ == "__main__":
    sys.exit(main())

"""The docs cannot rot: their examples run, and what they name exists.

* docs/python-api.md's Python blocks run in order, as written, in an empty folder (slow: they
  build a demo corpus and extract features).
* Every ``mer-features``/``mer-heads`` command line in the README and docs names a real
  sub-command and real options; every option of every command appears in its ``--help`` block
  of docs/cli.md (``.venv/bin/python docs/generate_cli.py`` refreshes the blocks).
* The registries (encoders and their options, noise keys, heads, corpus importers, modalities)
  and the store's attributes, datasets, added fingerprint fields and hash-cache sentence are
  documented.
* Every relative link between the README and docs pages resolves, anchors included.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = [README, *sorted(DOCS.glob("*.md")), ROOT / "benchmarks" / "RESULTS.md",
         ROOT / "manifests" / "README.md"]

FENCE = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```", re.M | re.S)
SPAN = re.compile(r"`([^`\n]+)`")
PROGRAM = re.compile(r"(?:^|(?<=[\s\"'(]))(mer-features|mer-heads|mer_features\.cli|mer_heads\.cli)"
                     r"(?=\s|$)")
OPTION = re.compile(r"^(--?[A-Za-z][\w-]*)")
STOP = {"|", "\\|", "||", "&&", ";", ">", "2>", ">>"}


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def prose(text: str) -> str:
    """``text`` without its fenced code blocks."""
    return FENCE.sub("", text)


# ---------------------------------------------------------------------------------------------
# Runnable examples


def python_blocks(path: Path) -> list[str]:
    return [m.group("body") for m in FENCE.finditer(read(path)) if m.group("lang") == "python"]


@pytest.mark.slow
def test_python_api_examples_run_in_order(tmp_path: Path) -> None:
    blocks = python_blocks(DOCS / "python-api.md")
    assert len(blocks) >= 5, "docs/python-api.md lost its examples"
    script = "\n".join(f"# --- docs/python-api.md, block {i} ---\n{code}"
                       for i, code in enumerate(blocks, 1))
    (tmp_path / "examples.py").write_text(script, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout, whatever is installed
    done = subprocess.run([sys.executable, "examples.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (
        f"docs/python-api.md's examples failed (exit {done.returncode}); the script is "
        f"{tmp_path / 'examples.py'}:\n{done.stderr[-4000:]}")
    assert "12 extracted" in done.stdout  # the first extraction printed its summary line
    assert (tmp_path / "runs" / "demo" / "run.json").is_file()
    assert (tmp_path / "runs" / "robustness" / "robustness.json").is_file()


# ---------------------------------------------------------------------------------------------
# Commands and options


def commands() -> dict[str, argparse.ArgumentParser]:
    """Every command of both programs by full name: 'mer-features', 'mer-features extract',
    'mer-features manifest ravdess', 'mer-heads fit', ..."""
    from mer_features.cli import build_parser as features_parser
    from mer_heads.cli import build_parser as heads_parser

    found: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser) -> None:
        found[parser.prog] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)

    walk(features_parser())
    walk(heads_parser())
    return found


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


def command_lines(text: str) -> list[str]:
    """Shell lines and inline code of a page (Python blocks excepted), continuations joined."""
    lines: list[str] = []
    for block in FENCE.finditer(text):
        if block.group("lang") in ("", "bash", "sh", "shell", "console", "text"):
            lines.extend(block.group("body").replace("\\\n", " ").splitlines())
    lines.extend(SPAN.findall(prose(text)))
    return lines


def named_commands(line: str) -> list[tuple[str, list[str]]]:
    """(program, tokens after it up to a pipe or comment) of each command in ``line``."""
    out = []
    for match in PROGRAM.finditer(line):
        program = "mer-features" if "features" in match.group(1) else "mer-heads"
        tokens = []
        for token in line[match.end():].split():
            if token in STOP or token.startswith("#"):
                break
            tokens.append(token)
        out.append((program, tokens))
    return out


def check_command(program: str, tokens: list[str], known: dict[str, argparse.ArgumentParser]
                  ) -> list[str]:
    """What is wrong with one command line ("" problems when all is well)."""
    parser = known[program]
    problems, prog = [], program
    words = iter(tokens)
    for token in words:
        word = token.strip("[](){},.:;\"'")
        option = OPTION.match(word)
        subs = subcommands(parser)
        if option:
            name = option.group(1)
            if name not in option_strings(parser):
                problems.append(f"'{prog}' has no option {name}")
        elif subs:
            if not re.fullmatch(r"[a-z][a-z0-9-]*", word):
                return problems  # a placeholder such as COMMAND or <corpus>: nothing to check
            if word not in subs:
                problems.append(f"'{prog}' has no sub-command '{word}'")
                return problems
            parser, prog = subs[word], f"{prog} {word}"
    return problems


def test_every_command_and_option_named_in_the_docs_exists() -> None:
    known = commands()
    problems, seen = [], 0
    for page in PAGES:
        for line in command_lines(read(page)):
            for program, tokens in named_commands(line):
                seen += 1
                problems += [f"{page.relative_to(ROOT)}: `{program} {' '.join(tokens)}`: {p}"
                             for p in check_command(program, tokens, known)]
    assert seen > 50, "no command lines found: the scanner is broken"
    assert not problems, "\n".join(problems)


HELP_BLOCK = re.compile(r"<!-- BEGIN generated: (?P<prog>[a-z0-9 -]+?) --help -->\n"
                        r"(?P<body>.*?)<!-- END generated -->", re.S)


def test_cli_md_lists_every_command_and_every_option() -> None:
    blocks = {m.group("prog"): m.group("body") for m in HELP_BLOCK.finditer(read(DOCS / "cli.md"))}
    problems = []
    for prog, parser in commands().items():
        if prog not in blocks:
            problems.append(f"no --help block for '{prog}'")
            continue
        tokens = set(re.findall(r"(?<![\w-])--?[A-Za-z][\w-]*", blocks[prog]))
        for action in parser._actions:
            if action.help == argparse.SUPPRESS:
                continue
            problems += [f"'{prog}': option {s} is not in its block" for s in
                         action.option_strings if s not in tokens]
    extra = sorted(set(blocks) - set(commands()))
    problems += [f"block for '{prog}', which is not a command" for prog in extra]
    assert not problems, ("\n".join(problems) + "\nRun .venv/bin/python docs/generate_cli.py, "
                          "and describe new commands and options in the docs.")


# ---------------------------------------------------------------------------------------------
# Registries and the store


def test_registries_are_documented() -> None:
    from mer_features.corpora import known_corpora
    from mer_features.encoders import known_encoders
    from mer_features.encoders.base import _REGISTRY  # the classes: making one may load weights
    from mer_features.noise import noise_keys
    from mer_heads.heads import known_heads

    encoders, noise = read(DOCS / "encoders.md"), read(DOCS / "noise.md")
    heads = read(DOCS / "heads.md")
    manifests = read(DOCS / "manifests.md") + read(DOCS / "corpora.md")
    problems = []
    for modality in ("audio", "text", "video"):
        for spec in known_encoders(modality):
            name, _, argument = spec.partition(":")
            shown = f"`{name}:<folder or hub id>`" if argument else f"`{name}`"
            if shown not in encoders:
                problems.append(f"encoders.md: {modality} encoder {shown} is not described")
            config = _REGISTRY[(modality, name)].Config
            problems += [f"encoders.md: option `{f.name}` of {modality} encoder '{name}' is "
                         "not described" for f in dataclasses.fields(config)
                         if f"`{f.name}`" not in encoders]
    problems += [f"noise.md: noise key `{k.name}` is not described" for k in noise_keys()
                 if f"| `{k.name}` |" not in noise]
    problems += [f"heads.md: head `{h}` is not described" for h in known_heads()
                 if f"| `{h}` |" not in heads]
    problems += [f"manifests.md/corpora.md: corpus importer `{c}` is not described"
                 for c in known_corpora()
                 if f"### `{c}`" not in manifests]
    from mer_features.modalities import known_modalities

    api = read(DOCS / "python-api.md")
    problems += [f"python-api.md: modality `{m}` is not described" for m in known_modalities()
                 if f"| `{m}` |" not in api]
    assert not problems, "\n".join(problems)


def test_store_md_matches_the_store() -> None:
    from mer_features.fingerprint import ADDED_FIELDS, CACHE_TRUSTS
    from mer_features.store.checksums import CHECKSUM, checksum_columns
    from mer_features.store.schema import StoreHeader

    store = read(DOCS / "store.md")
    flat = " ".join(store.split())
    problems = []
    if " ".join(CACHE_TRUSTS.split()) not in flat:
        problems.append("store.md does not quote fingerprint.CACHE_TRUSTS word for word")
    header = StoreHeader(modality="audio", encoder="x", encoder_version="1", fields={},
                         utterance_shape=(1,), frame_dim=1, frame_rate=None)
    problems += [f"store.md: root attribute `{a}` is not described" for a in header.attrs()
                 if f"`{a}`" not in store]
    datasets = [*checksum_columns([]), CHECKSUM, "frames/offset", "frames/length"]
    problems += [f"store.md: dataset /{d} is not in the layout" for d in datasets
                 if f"/{d} " not in store]
    for modality, path, value in ADDED_FIELDS:
        row = f"| {modality} | `{'.'.join(path)}` | `{str(value).replace('|', chr(92) + '|')}` |"
        if row not in store:
            problems.append(f"store.md: the added fingerprint field {'.'.join(path)} ({modality})"
                            " is not in the table of fields added later")
    assert not problems, "\n".join(problems)


def test_setup_and_test_commands_are_what_ci_runs() -> None:
    ci = read(ROOT / ".ci" / "run")
    readme = read(README)
    for command in ("make setup", "make test"):
        assert command in ci and (f"{command} " in readme or f"{command}\n" in readme), command
    assert "make test-quick" in readme


# ---------------------------------------------------------------------------------------------
# Links


LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def slugs(text: str) -> set[str]:
    """GitHub's anchors of a page's headings."""
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", prose(text), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower().replace("`", "")).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in found:
            n += 1
            candidate = f"{slug}-{n}"
        found.add(candidate)
    return found


def test_relative_links_resolve() -> None:
    problems, checked = [], 0
    for page in PAGES:
        text = read(page)
        for target in LINK.findall(prose(text)):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            checked += 1
            path, _, anchor = target.partition("#")
            where = (page.parent / path).resolve() if path else page
            if not where.exists():
                problems.append(f"{page.relative_to(ROOT)}: link to '{target}': no such file")
            elif anchor and where.suffix == ".md" and anchor not in slugs(read(where)):
                problems.append(f"{page.relative_to(ROOT)}: link to '{target}': no heading "
                                f"'#{anchor}' in {where.relative_to(ROOT)}")
    assert checked > 30, "no links found: the scanner is broken"
    assert not problems, "\n".join(problems)

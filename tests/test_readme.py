"""The README's commands run as written: every ``roadvision ...`` line in its code blocks parses
against the real CLI (subcommands, options, argument counts, option values), every option named
in its tables exists on that command, every ``make`` target exists, every relative link and
anchor resolves.

Parsing uses the CLI's own click command (``make_context``), which checks everything a shell
run would check before the command's body starts, without running it.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer.main

from roadvision.cli import app

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
ROOT = typer.main.get_command(app)

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_SHELL = ("bash", "sh", "shell", "console", "")


def _code_blocks(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in _FENCE.finditer(text)]


def _prose(text: str) -> str:
    return _FENCE.sub("", text)


def _shell_commands(text: str) -> list[str]:
    """Command lines of the shell code blocks: continuations joined, comments dropped."""
    commands = []
    for lang, body in _code_blocks(text):
        if lang not in _SHELL:
            continue
        for line in body.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip().removeprefix("$ ")
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def _roadvision_lines(text: str) -> list[str]:
    return [c for c in _shell_commands(text) if c.split()[0] == "roadvision"]


def parse_command(line: str) -> None:
    """Parse ``roadvision ...`` as the CLI would; raises a click UsageError when it does not."""
    args = shlex.split(line)[1:]
    ctx = ROOT.make_context("roadvision", args, resilient_parsing=False)
    command = ROOT
    while hasattr(command, "commands"):
        rest = [*ctx._protected_args, *ctx.args] if hasattr(ctx, "_protected_args") \
            else [*ctx.protected_args, *ctx.args]
        name, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)


def _leaf(words: list[str]):
    """The command a list of words names, and the words after it."""
    command = ROOT
    while hasattr(command, "commands") and words and words[0] in command.commands:
        command, words = command.commands[words[0]], words[1:]
    return command, words


def _option_names(command) -> set[str]:
    names = {name for p in command.params for name in (*p.opts, *p.secondary_opts)}
    return names | {"--help"}  # click adds --help to every command outside params


def inline_option_problems(text: str) -> list[str]:
    """Options named in inline ``roadvision ...`` spans (tables, prose) that the command lacks."""
    problems = []
    for span in re.findall(r"`(roadvision [^`]+)`", _prose(text)):
        words = span.split()[1:]
        command, rest = _leaf(words)
        if hasattr(command, "commands") and not (rest and rest[0].startswith("-")):
            problems.append(f"`{span}`: {rest[:1] or words} is not a subcommand")
            continue
        for word in rest:
            option = word.split("=", 1)[0]
            if option.startswith("--") and option not in _option_names(command):
                problems.append(f"`{span}`: no option {option}")
    return problems


def test_readme_has_commands_to_check():
    assert len(_roadvision_lines(README)) >= 10
    assert "make demo" in _shell_commands(README) and "make test" in _shell_commands(README)


@pytest.mark.parametrize("line", _roadvision_lines(README))
def test_code_block_command_parses(line):
    parse_command(line)


def test_table_commands_name_existing_options():
    assert inline_option_problems(README) == []


def test_the_checks_fail_on_a_removed_option_or_command():
    from typer._click.exceptions import UsageError

    with pytest.raises(UsageError, match="--labelz"):
        parse_command("roadvision data import --format folder SRC --out DIR --labelz x.csv")
    with pytest.raises(UsageError):
        parse_command("roadvision data importt --format folder SRC --out DIR")
    with pytest.raises(UsageError):
        parse_command("roadvision data split DIR")  # --out is required
    text = "| `roadvision serve --model URI --max-widows 3` | x |\n| `roadvision modle list` | |"
    assert len(inline_option_problems(text)) == 2


def test_make_targets_exist():
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", makefile, re.M))
    named = set(re.findall(r"(?<![\w/.-])make ([a-z][\w-]*)", README))
    assert named, "the README names no make target"
    assert named - targets == set()


def test_demo_flags_exist():
    source = (REPO / "roadvision" / "demo.py").read_text()
    flags = set(re.findall(r"roadvision\.demo((?: --[\w-]+(?: \w+)?)+)", README))
    named = {f for group in flags for f in re.findall(r"--[\w-]+", group)}
    named |= set(re.findall(r"`(--[\w-]+)`", README.split("roadvision.demo", 1)[1][:400]))
    assert named
    for flag in named:
        assert f'"{flag}"' in source, f"README names demo flag {flag}, which demo.py lacks"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_relative_links_and_anchors_resolve():
    anchors = {_slug(h) for h in re.findall(r"^#+ (.+)$", _prose(README), re.M)}
    links = re.findall(r"\]\(([^)\s]+)\)", _prose(README))
    assert links
    for link in links:
        if re.match(r"^[a-z]+:", link):
            continue
        path, _, anchor = link.partition("#")
        if path:
            assert (REPO / path).exists(), f"README links to {path}, which does not exist"
        elif anchor:
            assert anchor in anchors, f"README links to #{anchor}; headings give {anchors}"

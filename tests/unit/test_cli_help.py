"""Every command's --help ends with an example, and the examples name commands and options that exist."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from typing import Any

import typer.main
from typer.testing import CliRunner

from training.cli import app

COMMAND = re.compile(r"\breco ([^`#(,;]*)")


def _is_group(command: Any) -> bool:
    return hasattr(command, "commands")  # typer's groups (it carries its own click)


def _commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for name, command in group.commands.items():
        if _is_group(command):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def _invocations(text: str) -> Iterator[list[str]]:
    """The `reco …` invocations of a help text, as tokens after `reco` (continued lines joined)."""
    for line in text.replace("\\\n", " ").splitlines():
        for match in COMMAND.finditer(line):
            words = match.group(1).replace(')"', " ").replace("\\", " ")
            yield [w.strip(",.") for w in shlex.split(words)]


def test_every_command_ends_its_help_with_an_example() -> None:
    root = typer.main.get_command(app)
    commands = list(_commands(root))
    assert len(commands) >= 15
    for path, command in commands:
        assert command.epilog and "Example" in command.epilog, path
        shown = CliRunner().invoke(app, [*path, "--help"], terminal_width=80)
        assert shown.exit_code == 0 and "Example" in shown.output, path


def test_the_examples_name_commands_and_options_that_exist() -> None:
    root = typer.main.get_command(app)
    texts = [root.epilog or ""] + [command.epilog or "" for _, command in _commands(root)]
    checked = 0
    for tokens in (t for text in texts for t in _invocations(text)):
        command = root
        while tokens and _is_group(command) and tokens[0] in command.commands:
            command, tokens = command.commands[tokens[0]], tokens[1:]
        assert not _is_group(command), f"reco {' '.join(tokens)}: no such command"
        options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        for token in tokens:
            if token.startswith("--"):
                assert token.split("=")[0] in options, (command.name, token)
        checked += 1
    assert checked >= 20

"""The README's promises: its "Using it" example runs as written, its command table lists every command."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from tierstore.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else None]


def subcommands(parser: argparse.ArgumentParser, prefix: str = "tierstore") -> dict[str, argparse.ArgumentParser]:
    """Every runnable command, by its full name ('tierstore trace gen'), with its parser."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = subcommands(sub, f"{prefix} {name}")
                found.update(nested or {f"{prefix} {name}": sub})
    return found


def test_using_it_example_runs_as_written(tmp_path, monkeypatch, capsys):
    code = re.search(r"```python\n(.*?)```", section("Using it"), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md (Using it)", "exec"), {"__name__": "readme"})
    assert "'hits'" in capsys.readouterr().out
    assert (tmp_path / "emb" / "data.mdb").is_file()


def test_command_table_lists_every_command():
    rows = re.findall(r"^\| `(tierstore [^`]*)`", section("Command line"), re.M)
    listed = {" ".join(w for w in row.split() if re.fullmatch(r"[a-z][a-z0-9-]*", w)) for row in rows}
    missing = [name for name in subcommands(build_parser()) if not any(entry.startswith(name) for entry in listed)]
    assert not missing, f"README's command table lacks {missing}"


def test_every_command_and_option_has_plain_help():
    for name, parser in subcommands(build_parser()).items():
        assert parser.description and "`" not in parser.description, name
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and "`" not in action.help, f"{name} {action.option_strings or action.dest}"
        assert "`" not in parser.format_help(), name

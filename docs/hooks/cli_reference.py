"""MkDocs hook: pages that write ``<!-- cli-help -->`` or ``<!-- settings-table -->`` get the real
``--help`` of every command and the settings table, generated from the code at build time, so
neither can go stale."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the package of this checkout, installed or not
    sys.path.insert(0, str(ROOT))

CLI_MARKER = "<!-- cli-help -->"
SETTINGS_MARKER = "<!-- settings-table -->"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _help_sections(parser: argparse.ArgumentParser, words: list[str], level: int) -> list[str]:
    out = [f"{'#' * level} `{' '.join(words)}`", "", "```text", parser.format_help().rstrip(), "```", ""]
    for name, sub in _subcommands(parser).items():
        out += _help_sections(sub, [*words, name], level + 1)
    return out


def cli_reference() -> str:
    from ppo_envkit.cli import build_parser

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal: the same width on every machine
    try:
        parser = build_parser()
        parser.prog = "ppo-envkit"
        lines = ["```text", parser.format_help().rstrip(), "```", ""]
        for name, sub in _subcommands(parser).items():
            lines += _help_sections(sub, ["ppo-envkit", name], 2)
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    return "\n".join(lines)


def _default(field: Any) -> str:
    if field.default_factory is not None:
        return f"`{field.default_factory()!r}`"
    if field.default is PydanticUndefined:
        return "(required)"
    return f"`{field.default!r}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def settings_table() -> str:
    from ppo_envkit.config import TrainConfig

    lines: list[str] = []
    for section, info in TrainConfig.model_fields.items():
        model = info.annotation
        doc = " ".join((model.__doc__ or "").split())
        lines += [f"## `{section}`", "", doc, "", "| setting | default | what |", "| --- | --- | --- |"]
        for name, field in model.model_fields.items():
            lines.append(
                f"| `{section}.{name}` | {_cell(_default(field))} | {_cell(field.description or '')} |"
            )
        lines.append("")
    return "\n".join(lines)


def on_page_markdown(markdown: str, **_: Any) -> str:
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    if SETTINGS_MARKER in markdown:
        markdown = markdown.replace(SETTINGS_MARKER, settings_table())
    return markdown

"""Every setting and every command is documented."""

from __future__ import annotations

from pathlib import Path

import click

from crmwatch.cli import main
from crmwatch.config import describe

ROOT = Path(__file__).resolve().parent.parent


class TestDocs:
    """docs/configuration.md and the README keep up with the code."""

    def test_every_setting_in_configuration_md(self) -> None:
        text = (ROOT / "docs" / "configuration.md").read_text()
        for name, env, _default, _help in describe():
            assert f"`{name}`" in text and f"`{env}`" in text, name

    def test_every_command_in_readme(self) -> None:
        readme = (ROOT / "README.md").read_text()
        ctx = click.Context(main)
        for name, command in main.commands.items():
            if isinstance(command, click.Group):
                for sub in command.list_commands(ctx):
                    assert f"{name} {sub}" in readme, f"{name} {sub}"
            else:
                assert f"crmwatch {name}" in readme, name

    def test_readme_opens_with_the_two_commands(self) -> None:
        readme = (ROOT / "README.md").read_text()
        ci = (ROOT / ".ci" / "run").read_text()
        test_command = next(line for line in readme.splitlines() if "pytest" in line)
        assert test_command.strip() in ci
        assert readme.index("crmwatch serve") < readme.index("pytest") < 900

"""``python manage.py litetasks …``: the same commands as the ``litetasks`` script."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from litetasks._cli.django_options import apply_django_options, split_django_options
from litetasks.cli import app
from litetasks.exceptions import LiteTasksError


class Command(BaseCommand):
    help = "Run litetasks workers and inspect the queue (see `litetasks --help`)."

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> Any:
        parser = argparse.ArgumentParser(prog=f"{prog_name} {subcommand}", add_help=False)
        parser.add_argument("args", nargs=argparse.REMAINDER)
        return parser

    def print_help(self, prog_name: str, subcommand: str) -> None:
        # ``manage.py help litetasks``: typer's help, not the pass-through parser's.
        app(args=["--help"], prog_name=f"{prog_name} {subcommand}", standalone_mode=False)

    def run_from_argv(self, argv: list[str]) -> None:
        # manage.py has applied --settings and --pythonpath; typer handles litetasks' options.
        args, found = split_django_options(argv[2:])
        try:
            args = apply_django_options(args, found)
        except LiteTasksError as exc:
            sys.stderr.write(f"litetasks: error: {exc}\n")
            sys.exit(2)
        app(args=args, prog_name=f"{argv[0]} litetasks")

    def execute(self, *args: Any, **options: Any) -> None:
        # call_command(): return on success, raise CommandError on failure; never sys.exit().
        # BaseCommand.execute would look up options (no_color, ...) our parser does not define.
        code = app(
            args=[str(arg) for arg in args], prog_name="manage.py litetasks", standalone_mode=False
        )
        if code:
            raise CommandError(f"litetasks exited with code {code}.", returncode=code)

    def handle(self, *args: Any, **options: Any) -> None:  # pragma: no cover - see execute
        self.execute(*args)

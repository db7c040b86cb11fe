"""``python manage.py litetasks …``: the same commands as the ``litetasks`` script."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand

from litetasks.cli import app


class Command(BaseCommand):
    help = "Run litetasks workers and inspect the queue (see `litetasks --help`)."

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> Any:
        parser = argparse.ArgumentParser(prog=f"{prog_name} {subcommand}", add_help=False)
        parser.add_argument("args", nargs=argparse.REMAINDER)
        return parser

    def run_from_argv(self, argv: list[str]) -> None:
        # Settings are already set up by manage.py; typer handles every option.
        app(args=argv[2:], prog_name=f"{argv[0]} litetasks")

    def handle(self, *args: Any, **options: Any) -> None:  # pragma: no cover - run_from_argv
        app(args=list(args), prog_name="manage.py litetasks")

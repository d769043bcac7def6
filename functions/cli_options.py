"""`cmon`'s global options: `--version`, `-v`/`--verbose`, `--log-level`.

They come before the command (`cmon -v db migrate`, `cmon --log-level DEBUG local`) and
are taken off the command line before it is dispatched, so the pass-through commands
(`demo`, `local`, `feed`) see only their own arguments. The level applies to every logger
of ours (functions.core.logs), whose JSON lines go to stderr: stdout stays the
command's output. Default WARNING; `-v` INFO, `-vv` DEBUG; `--log-level` wins.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Sequence

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def version() -> str:
    """The installed distribution's version (pyproject.toml), not a second copy of it."""
    try:
        return importlib.metadata.version("cmon")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def add_global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=f"cmon {version()}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log lines: -v INFO, -vv DEBUG (stderr)"
    )
    parser.add_argument("--log-level", choices=LEVELS, type=str.upper, help="log level of our loggers")


def split_global_options(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Parse the global options in front of the command; return them and the rest."""
    parser = argparse.ArgumentParser(prog="cmon", add_help=False)
    add_global_options(parser)
    head: list[str] = []
    rest = list(argv)
    while rest and rest[0].startswith("-") and rest[0] not in ("-h", "--help"):
        option = rest.pop(0)
        head.append(option)
        if option == "--log-level" and rest:
            head.append(rest.pop(0))
    return parser.parse_args(head), rest


def level_of(options: argparse.Namespace) -> str:
    if options.log_level:
        return str(options.log_level)
    return {0: "WARNING", 1: "INFO"}.get(int(options.verbose), "DEBUG")


def apply(options: argparse.Namespace) -> str:
    """Send our loggers' JSON to stderr at the chosen level; returns the level."""
    from functions.core.logs import service_logger

    level = level_of(options)
    service_logger("cmon-cli", stream=sys.stderr, level=level)
    return level

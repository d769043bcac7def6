"""`cmon --version` and the global `-v`/`--log-level` options."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import subprocess
import sys

import pytest

from functions import cli


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"cmon {importlib.metadata.version('cmon')}"


@pytest.mark.parametrize(
    ("argv", "level"),
    [
        ([], logging.WARNING),
        (["-v"], logging.INFO),
        (["-vv"], logging.DEBUG),
        (["--verbose", "--verbose"], logging.DEBUG),
        (["-v", "--log-level", "error"], logging.ERROR),
        (["--log-level=DEBUG"], logging.DEBUG),
    ],
)
def test_the_global_options_set_the_level_of_all_our_loggers(argv: list[str], level: int) -> None:
    assert cli.main([*argv, "cost", "--json"]) == 0
    for name in ("cmon", "functions", "feed_service"):
        assert logging.getLogger(name).level == level, name
    assert logging.getLogger("functions.adapters.postgres").getEffectiveLevel() == level


def test_a_bad_level_is_a_clear_error_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--log-level", "loud", "cost"])
    assert done.value.code == 2
    assert "--log-level: invalid choice" in capsys.readouterr().err


def test_verbose_lines_are_json_on_stderr_and_stdout_stays_the_output() -> None:
    script = (
        "import logging, sys\n"
        "from functions import cli\n"
        "code = cli.main(sys.argv[1:])\n"
        "logging.getLogger('functions.adapters.postgres').info('visible', extra={'k': 1})\n"
        "logging.getLogger('functions.adapters.postgres').debug('hidden')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "-v", "cost", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert isinstance(json.loads(done.stdout), dict)  # the command's output, alone on stdout
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert [(line["message"], line["k"], line["name"]) for line in lines] == [
        ("visible", 1, "functions.adapters.postgres")
    ]

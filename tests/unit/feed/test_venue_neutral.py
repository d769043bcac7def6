"""The feed's machinery is venue-neutral for real: the import contract holds, and it
cannot be defeated by a module that reaches Binance's code through another one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_no_venue_neutral_module_imports_the_binance_module() -> None:
    # import-linter's `forbidden` contract counts indirect imports too (supervisor →
    # router → binance would break it). A fresh process: the contract reads the source.
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--contract", "feed-venue-neutral", "--no-cache", "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_the_neutral_modules_load_without_the_binance_module() -> None:
    # Importing them in a fresh interpreter leaves `feed_service.binance` unloaded.
    neutral = ["connection", "supervisor", "router", "sources", "subscriptions", "venue"]
    code = (
        "import sys\n"
        + "".join(f"import feed_service.{name}\n" for name in neutral)
        + "print('feed_service.binance' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "False"

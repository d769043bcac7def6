"""Cold import cost of the Edge Function transport, in fresh interpreters.

Run: `python -m bench.bench_edge_client [--runs 7] [--python PATH ...]`

What a Lambda cold start pays when `LLM_PROXY_TRANSPORT=edge`: importing the Supabase
functions client on top of what the worker has loaded anyway (httpx, pydantic), and our
adapter module. Each figure is the median of `--runs` fresh `python -I` interpreters
(bytecode caches as installed). `--python` adds interpreters of other environments, e.g.
a throw-away venv with the full `supabase` package, to compare (README, Benchmarks);
a module an interpreter cannot import is shown as "not installed".
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

# (label, imported first, measured)
CASES = (
    ("httpx (baseline)", "pass", "httpx"),
    ("supabase_functions on top of httpx", "import httpx", "supabase_functions"),
    ("supabase (full) on top of httpx + pydantic", "import httpx, pydantic", "supabase"),
    (
        "functions.adapters.edge_llm on top of llm_proxy",
        "import functions.adapters.llm_proxy",
        "functions.adapters.edge_llm",
    ),
)

_PROBE = """
import sys, time
{pre}
t = time.perf_counter()
import {mod}
print((time.perf_counter() - t) * 1000)
"""


def measure(python: str, pre: str, module: str, runs: int) -> float | None:
    samples: list[float] = []
    for _ in range(runs):
        proc = subprocess.run(
            [python, "-I", "-c", _PROBE.format(pre=pre, mod=module)],
            capture_output=True, text=True, check=False, cwd=None,
        )  # fmt: skip
        if proc.returncode != 0:
            return None
        samples.append(float(proc.stdout.strip().splitlines()[-1]))
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_edge_client", description=__doc__)
    parser.add_argument("--runs", type=int, default=7, help="fresh interpreters per figure (default 7)")
    parser.add_argument("--python", action="append", default=[], help="another interpreter to measure")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    pythons = [sys.executable, *args.python]
    print(f"{'import':<52} " + " ".join(f"{p[-28:]:>30}" for p in pythons))
    for label, pre, module in CASES:
        cells = []
        for python in pythons:
            median = measure(python, pre, module, args.runs)
            cells.append("not installed" if median is None else f"{median:.1f} ms")
        print(f"{label:<52} " + " ".join(f"{c:>30}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What `opeval run` pays to import the program, beside the eager import it replaced.

Each round starts a fresh interpreter for each of: the CLI as `opeval run` loads it (the
analysis stack left out until an analysis command runs), and the anchor: the same CLI
plus the analysis and viewer commands' modules (DuckDB, Arrow, numpy, scipy, Litestar),
which every command imported before. Rounds alternate, so load on the machine hits both.

    .venv/bin/python scripts/bench_import.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

LAZY = "import opeval.cli._app"
EAGER = "import opeval.cli._app, opeval.cli._analysis, opeval.cli._view, opeval.viewer"


def once(code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    once(EAGER)  # warm the file cache
    lazy, eager = [], []
    for _ in range(args.rounds):
        lazy.append(once(LAZY))
        eager.append(once(EAGER))
    heavy = subprocess.run([sys.executable, "-c", LAZY + "; import sys; print(sorted({'duckdb', 'numpy', 'pyarrow', "
                            "'scipy', 'litestar', 'opeval.projections'} & set(sys.modules)))"],
                           capture_output=True, text=True, check=True).stdout.strip()
    print(f"opeval run's import (lazy) : median {statistics.median(lazy) * 1000:.0f} ms "
          f"(min {min(lazy) * 1000:.0f}) over {args.rounds} rounds; analysis modules loaded: {heavy}")
    print(f"anchor: with analysis stack: median {statistics.median(eager) * 1000:.0f} ms "
          f"(min {min(eager) * 1000:.0f})")
    print(f"ratio lazy/eager (median): {statistics.median(lazy) / statistics.median(eager):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env bash
# Runs every benchmark: the Google Benchmark programs, then the same-process Python
# comparisons. Thread counts are set inside each program and printed with its results.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build/cmake}
PY=${PY:-.venv/bin/python}
for exe in "$BUILD"/benchmarks/bench_*; do
  [ -x "$exe" ] || continue
  echo "== $exe"
  "$exe" --benchmark_counters_tabular=true
done
for script in benchmarks/compare_*.py; do
  echo "== $script"
  "$PY" "$script"
done

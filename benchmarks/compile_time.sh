#!/usr/bin/env bash
# Compile time of a user translation unit (benchmarks/compile_time/*.cpp) with cnnviz against
# the same program with torch alone, and of the headers alone. CPU seconds (user + sys) of one
# g++ -c at the library's flags, no ccache; the contenders alternate over REPEATS rounds and the
# median and spread are printed. Usage: bash benchmarks/compile_time.sh [REPEATS]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
repeats="${1:-3}"
flags=(-O3 -DNDEBUG -std=gnu++17 -fopenmp -D_GLIBCXX_USE_CXX11_ABI=1 -I"$root/include"
       -isystem /usr/include/torch/csrc/api/include -isystem /usr/include/stb)
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
units=(torch_include_only cnnviz_include_only torch_only cnnviz_user)
for ((r = 0; r < repeats; r++)); do
  for u in "${units[@]}"; do
    /usr/bin/time -f "%U %S" -o "$tmp/t" g++ "${flags[@]}" -c "$here/compile_time/$u.cpp" -o "$tmp/$u.o"
    awk -v u="$u" '{print u, $1 + $2}' "$tmp/t" >> "$tmp/times"
  done
done
python3 - "$tmp/times" <<'PY'
import statistics, sys
t = {}
for line in open(sys.argv[1]):
    u, s = line.split()
    t.setdefault(u, []).append(float(s))
med = {u: statistics.median(v) for u, v in t.items()}
for u, v in t.items():
    print(f"{u:22s} median {med[u]:6.1f} s  (min {min(v):.1f}, max {max(v):.1f}, n={len(v)})")
print(f"headers alone: cnnviz.hpp / torch.h      = {med['cnnviz_include_only'] / med['torch_include_only']:.2f}x")
print(f"user unit:     with cnnviz / torch alone  = {med['cnnviz_user'] / med['torch_only']:.2f}x")
PY

"""Metric-suite images/s of this checkout against an older commit, interleaved round by round on the same machine.

``bench benchmark metrics`` (the default offline suite: sface, dlib, LPIPS-alex, SSIM, PSNR, detection, attributes)
runs once per round for each tree, alternating which goes first, each in its own process with ``PYTHONPATH`` at that
tree (the older one exported by ``git archive`` into a temporary folder), so that load from other jobs on a shared
CPU hits both alike. The cold (first method) and warm (second method, originals' cache filled) images/s are parsed
from each run's output; the ratio of each round and the median over rounds are printed with the load average.

    OMP_NUM_THREADS=1 BENCH_TEST_DATA=../shared/data python benchmarks/suite_speed.py --base 6aad800 \\
        --limit 100 --rounds 2

Extra arguments after ``--`` go to both ``bench benchmark metrics`` calls (an older tree must know them).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_LINE = re.compile(r"\((cold|warm) cache\).*?:\s*([\d.]+) s,\s*([\d.]+) images/s")


def _export(ref: str, dest: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    archive = subprocess.run(["git", "-C", str(root), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def _run(tree: Path, args: list[str]) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, "-c", "import sys; from bench.cli import main; main(sys.argv[1:])", "benchmark", "metrics",
           *args]
    out = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, cwd=tree)
    if out.returncode:
        raise SystemExit(f"{tree}: bench benchmark metrics failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    found = {m.group(1): float(m.group(3)) for m in _LINE.finditer(out.stdout)}
    if set(found) != {"cold", "warm"}:
        raise SystemExit(f"{tree}: no cold/warm images/s in the output:\n{out.stdout[-2000:]}")
    return found


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="git ref of the older tree (e.g. the branch point)")
    ap.add_argument("--limit", type=int, default=100, help="CelebA images per run")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)

    here = Path(__file__).resolve().parents[1]
    bench_args = ["--limit", str(args.limit), "--gallery", "0", *extra]
    with tempfile.TemporaryDirectory(prefix="suite-speed-") as tmp:
        old = Path(tmp) / "base"
        old.mkdir()
        _export(args.base, old)
        trees = {f"base {args.base}": old, "this tree": here}
        rows: list[dict[str, dict[str, float]]] = []
        print(f"{os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
              f"bench benchmark metrics {' '.join(bench_args)}")
        for r in range(args.rounds):
            order = list(trees.items()) if r % 2 == 0 else list(reversed(trees.items()))
            row = {}
            for label, tree in order:
                load = os.getloadavg()[0]
                t0 = time.perf_counter()
                row[label] = {**_run(tree, bench_args), "load": load}
                print(f"round {r + 1} {label:>14}: cold {row[label]['cold']:5.2f} img/s, warm {row[label]['warm']:5.2f} "
                      f"img/s ({time.perf_counter() - t0:.0f} s, load average {load:.1f})", flush=True)
            rows.append(row)
    base, new = f"base {args.base}", "this tree"
    for phase in ("cold", "warm"):
        ratios = [row[new][phase] / row[base][phase] for row in rows]
        print(f"{phase}: this tree / base = median {statistics.median(ratios):.2f}x "
              f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)}); base median "
              f"{statistics.median(row[base][phase] for row in rows):.2f} img/s, this tree median "
              f"{statistics.median(row[new][phase] for row in rows):.2f} img/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Alternating pairs of benchmark runs: two builds of the servers, one load generator.

On a shared two-core machine the CPU a request costs moves by 15 % or more from one
minute to the next, so a change is judged against its baseline run right beside it, in
pairs, the order alternating (base first, then new first, ...), and on the median of the
pairs rather than on one run (docs/performance.md). This runs `scripts/bench.sh` for each
half of each pair, with the same `flowgate-bench` (the release build's, or
`BENCH_BIN_DIR`'s) and only the servers' directory swapped (`--bin-dir`), and prints,
for every run of the benchmark, each pair's CPU per request (gateway + flow service) and
its ratio to the floor measured around it, the medians, and in how many pairs the new
build spent less.

    scripts/pairs.py BASE_DIR NEW_DIR [--pairs N] [--only RUNS] [--seconds S] [--smoke]

BASE_DIR and NEW_DIR each hold `flowgate-gateway` and `flow-service`, built with the
same profile (for example the two release binaries copied aside before a change, and
`target/release` after it). The baseline and hop runs do not use them: their spread
between the halves of a pair is the machine's own. Each bench run's JSON and output are
kept in `target/pairs/`, with a summary (`summary.json`). Exits non-zero if a run fails
or any answer was an error.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ("flowgate-gateway", "flow-service")


def run_key(run):
    """The name a run is compared under: its name, workload, and pace."""
    key = f"{run['name']} ({run['workload']})"
    if run.get("target_rate"):
        key += " at half of peak"
    return key


def bench(server_dir, out, args):
    """One run of scripts/bench.sh against the servers in `server_dir`."""
    env = dict(os.environ, BENCH_NO_BUILD="1")
    wanted = args.only.split(",")
    if "postgres" not in wanted:
        # bench.sh starts a throwaway PostgreSQL only when no URL is set; none is needed.
        env.setdefault("FLOWGATE_BENCH_POSTGRES_URL", "postgres://unused")
    command = [
        str(ROOT / "scripts" / "bench.sh"),
        "--bin-dir",
        str(server_dir),
        "--only",
        args.only,
        "--no-pywa",
        "--idle-connections",
        "0",
        "--out",
        str(out),
    ]
    command += ["--smoke"] if args.smoke else ["--seconds", str(args.seconds)]
    log = out.with_suffix(".log")
    with open(log, "w") as sink:
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"scripts/pairs.py: {' '.join(command)} failed ({done.returncode}); see {log}")
    return json.loads(out.read_text())["runs"]


def figures(run):
    cpu = run["cpu_us_per_request"]
    return {
        "total_us": cpu["total"],
        "gateway_us": cpu.get("gateway"),
        "flow_service_us": cpu.get("flow_service"),
        "to_floor": run["cpu_to_rsa_floor"],
        "requests_per_second": run["requests_per_second"],
        "errors": run["non_2xx"] + run["wrong_answers"],
    }


def cell(f):
    split = ""
    if f["gateway_us"] is not None and f["flow_service_us"] is not None:
        split = f" = {f['gateway_us']:.0f} + {f['flow_service_us']:.0f}"
    return f"{f['total_us']:.0f}{split} ({f['to_floor']:.2f} ×)"


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("base", type=Path, help="the baseline's servers")
    parser.add_argument("new", type=Path, help="the changed servers")
    parser.add_argument("--pairs", type=int, default=4, help="pairs of runs (default 4)")
    parser.add_argument(
        "--only",
        default="plain,journey,meta",
        help="the bench's runs to compare (default plain,journey,meta; see flowgate-bench --help)",
    )
    parser.add_argument("--seconds", type=int, default=6, help="length of each timed run")
    parser.add_argument("--smoke", action="store_true", help="the bench's --smoke runs")
    args = parser.parse_args()
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    for label, directory in (("base", args.base), ("new", args.new)):
        for server in SERVERS:
            if not os.access(directory / server, os.X_OK):
                parser.error(f"{label}: {directory / server} is not an executable")

    out = ROOT / "target" / "pairs"
    out.mkdir(parents=True, exist_ok=True)
    results = {"base": {}, "new": {}}
    errors = 0
    for pair in range(1, args.pairs + 1):
        order = ("base", "new") if pair % 2 == 1 else ("new", "base")
        for label in order:
            directory = args.base if label == "base" else args.new
            print(f"pair {pair}: {label} ({directory}) …", file=sys.stderr, flush=True)
            for run in bench(directory.resolve(), out / f"{label}-{pair}.json", args):
                f = figures(run)
                errors += f["errors"]
                results[label].setdefault(run_key(run), []).append(f)

    summary = {}
    print(f"\n{args.pairs} pair(s), base {args.base}, new {args.new}; CPU µs a request"
          " (gateway + flow service) and × the floor measured around each run\n")
    for key, base in results["base"].items():
        new = results["new"].get(key, [])
        if len(new) != len(base):
            sys.exit(f"scripts/pairs.py: {key}: {len(base)} base runs, {len(new)} new runs")
        base_median = statistics.median(f["total_us"] for f in base)
        new_median = statistics.median(f["total_us"] for f in new)
        fewer = sum(n["total_us"] < b["total_us"] for b, n in zip(base, new))
        summary[key] = {
            "base": base,
            "new": new,
            "base_median_us": base_median,
            "new_median_us": new_median,
            "new_less_in_pairs": fewer,
        }
        print(key)
        for i, (b, n) in enumerate(zip(base, new), start=1):
            print(f"  pair {i}: base {cell(b)}, new {cell(n)}")
        change = (new_median - base_median) / base_median * 100
        print(
            f"  medians: base {base_median:.1f} µs"
            f" ({statistics.median(f['to_floor'] for f in base):.2f} ×),"
            f" new {new_median:.1f} µs ({statistics.median(f['to_floor'] for f in new):.2f} ×),"
            f" {change:+.1f} %; new less in {fewer} of {len(base)} pairs"
        )
    if not summary:
        sys.exit("scripts/pairs.py: the bench reported no runs")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\nruns and summary in {out}")
    if errors:
        sys.exit(f"scripts/pairs.py: {errors} error answers across the runs: not a comparison")


if __name__ == "__main__":
    main()

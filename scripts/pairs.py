#!/usr/bin/env python3
"""Alternating pairs of benchmark runs: two builds of the servers, one load generator.

On a shared two-core machine the CPU a request costs moves by 15 % or more from one
minute to the next, so a change is judged against its baseline run right beside it, in
pairs, the order alternating (base first, then new first, ...), and on the median of the
pairs rather than on one run (docs/performance.md). This runs `scripts/bench.sh` for each
half of each pair, one round each, with the same `flowgate-bench` (`target/release`'s,
or `BENCH_BIN_DIR`'s) and only the servers' directory swapped (`--bin-dir`), and prints,
for every run of the benchmark, each pair's CPU per request (gateway + flow service) and
its ratio to the floor measured around it, the medians of the total and of each server,
and in how many pairs the new build spent less. It builds nothing.

    scripts/pairs.py BASE_DIR NEW_DIR [--pairs N] [--only RUNS] [--seconds S] [--smoke]

BASE_DIR and NEW_DIR each hold `flowgate-gateway` and `flow-service`, built with the
same profile (for example the two release binaries of the base commit copied aside, and
`target/release` after the change). Runs that do not use them (baseline, hop) show the
machine's own spread between the halves of a pair. pywa and idle are not compared (the
bench runs without them). A rate run paces each build at half of its own peak, and a
plain-at-meta run at its own Meta step's rate, so their CPU compares different loads;
their rate and p99 are printed beside them. Every bench run's
JSON and output go to `target/pairs/` (emptied first), with a summary (`summary.json`).
Exits non-zero if a run fails, a requested run is missing, or any run had an error
answer, a failed connection, no requests, or ran out of sealed requests.
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
NOT_COMPARED = ("pywa", "idle")
# What a paced run's rate is, by the bench's `rate_of`.
PACES = {"half_peak": " at half of peak", "meta_step": " at the Meta step's rate"}


def run_key(run):
    """The name a run is compared under: its name, workload, and pace."""
    key = f"{run['name']} ({run['workload']})"
    if run.get("target_rate"):
        key += PACES[run["rate_of"]]
    return key


def bench(server_dir, out, args):
    """One round of scripts/bench.sh against the servers in `server_dir`."""
    env = dict(os.environ, BENCH_NO_BUILD="1")
    if "postgres" not in args.only.split(","):
        # bench.sh starts a throwaway PostgreSQL only when no URL is set; none is needed.
        env.setdefault("FLOWGATE_BENCH_POSTGRES_URL", "postgres://unused")
    command = [
        str(ROOT / "scripts" / "bench.sh"),
        "--bin-dir",
        str(server_dir),
        "--only",
        args.only,
        "--rounds",
        "1",
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
        # The bench's own complaint (a refused --only, say) is the log's last lines.
        tail = "".join(log.read_text().splitlines(keepends=True)[-5:])
        sys.exit(
            f"scripts/pairs.py: {' '.join(command)} failed ({done.returncode}); see {log}:\n{tail}"
        )
    return json.loads(out.read_text())["runs"]


def problems(run):
    """What makes a run no measure, as the bench judged it (error answers, failed
    connections, no requests, a sealed pool run out)."""
    if "problems" not in run:
        sys.exit(
            "scripts/pairs.py: the bench's JSON has no `problems` for its runs:"
            " build flowgate-bench from this checkout"
        )
    return run["problems"]


def figures(run):
    cpu = run["cpu_us_per_request"]
    return {
        "total_us": cpu["total"],
        "gateway_us": cpu.get("gateway"),
        "flow_service_us": cpu.get("flow_service"),
        "to_floor": run["cpu_to_rsa_floor"],
        "requests_per_second": run["requests_per_second"],
        "target_rate": run.get("target_rate"),
        "p99_ms": run["latency_ms"]["p99"],
    }


def cell(f):
    text = f"{f['total_us']:.0f}"
    if f["gateway_us"] is not None and f["flow_service_us"] is not None:
        text += f" = {f['gateway_us']:.0f} + {f['flow_service_us']:.0f}"
    text += f" ({f['to_floor']:.2f} ×)"
    if f["target_rate"]:
        text += f" at {f['requests_per_second']:.0f}/s, p99 {f['p99_ms']:.1f} ms"
    return text


def compare(base, new, part):
    """Medians of `part` and the pairs in which new spent less, or None if not measured."""
    if any(f[part] is None for f in base + new):
        return None
    fewer = sum(n[part] < b[part] for b, n in zip(base, new))
    return {
        "base_median_us": statistics.median(f[part] for f in base),
        "new_median_us": statistics.median(f[part] for f in new),
        "new_less_in_pairs": fewer,
    }


def main():
    parser = argparse.ArgumentParser(
        description=__doc__,
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
    parser.add_argument(
        "--seconds", type=int, default=6, help="length of each timed run (default 6)"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="the bench's --smoke runs (about 2 s; --seconds unused)"
    )
    args = parser.parse_args()
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    wanted = args.only.split(",")
    for name in NOT_COMPARED:
        if name in wanted:
            parser.error(f"--only {name}: not compared (the bench runs without pywa and idle connections)")
    for label, directory in (("base", args.base), ("new", args.new)):
        for server in SERVERS:
            if not os.access(directory / server, os.X_OK):
                parser.error(f"{label}: {directory / server} is not an executable")

    out = ROOT / "target" / "pairs"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        if old.suffix in (".json", ".log"):
            old.unlink()
    results = {"base": {}, "new": {}}
    failures = []
    for pair in range(1, args.pairs + 1):
        order = ("base", "new") if pair % 2 == 1 else ("new", "base")
        for label in order:
            directory = args.base if label == "base" else args.new
            print(f"pair {pair}: {label} ({directory}) …", file=sys.stderr, flush=True)
            for run in bench(directory.resolve(), out / f"{label}-{pair}.json", args):
                failures += [f"pair {pair}, {label}, {run_key(run)}: {p}" for p in problems(run)]
                results[label].setdefault(run_key(run), []).append(figures(run))
    if failures:
        sys.exit("scripts/pairs.py: not a comparison:\n  " + "\n  ".join(failures))
    if "postgres" in wanted and not any("PostgreSQL" in key for key in results["base"]):
        sys.exit(
            "scripts/pairs.py: --only postgres, but the bench ran no PostgreSQL run"
            f" (see {out / 'base-1.log'})"
        )
    if not results["base"]:
        sys.exit("scripts/pairs.py: the bench reported no runs")

    summary = {}
    print(
        f"\n{args.pairs} pair(s), base {args.base}, new {args.new}; CPU µs a request"
        " (gateway + flow service) and × the floor measured around each run\n"
    )
    for key in dict.fromkeys([*results["base"], *results["new"]]):
        base = results["base"].get(key, [])
        new = results["new"].get(key, [])
        if len(new) != len(base) or len(base) != args.pairs:
            sys.exit(f"scripts/pairs.py: {key}: {len(base)} base runs, {len(new)} new runs")
        parts = {
            part: compare(base, new, part)
            for part in ("total_us", "gateway_us", "flow_service_us")
        }
        summary[key] = {"base": base, "new": new, **parts}
        print(key)
        for i, (b, n) in enumerate(zip(base, new), start=1):
            print(f"  pair {i}: base {cell(b)}, new {cell(n)}")
        total = parts["total_us"]
        change = (total["new_median_us"] - total["base_median_us"]) / total["base_median_us"]
        print(
            f"  medians: base {total['base_median_us']:.1f} µs"
            f" ({statistics.median(f['to_floor'] for f in base):.2f} ×),"
            f" new {total['new_median_us']:.1f} µs"
            f" ({statistics.median(f['to_floor'] for f in new):.2f} ×), {change * 100:+.1f} %;"
            f" new less in {total['new_less_in_pairs']} of {len(base)} pairs"
        )
        for part, name in (("gateway_us", "gateway"), ("flow_service_us", "flow service")):
            if parts[part] is not None:
                p = parts[part]
                print(
                    f"  {name}: base {p['base_median_us']:.1f} µs, new {p['new_median_us']:.1f} µs;"
                    f" new less in {p['new_less_in_pairs']} of {len(base)} pairs"
                )
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\nruns and summary in {out}")


if __name__ == "__main__":
    main()

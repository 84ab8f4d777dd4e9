"""Memory and time to load a dataset file of many small records, and to refuse one over the caps.

What it measures: JSON array files of 10k, 100k, 200k and 1M tiny Alpaca records (`{"instruction":
"Say 12345.", "input": "", "output": "12345"}`), each loaded in a fresh process:

  (a) playground   `data.load(path)` with the default caps (200 MB, 200,000 records): the
                   records as the app keeps them; a file over a cap is refused;
  (b) baseline     what a user would otherwise write: `json.load` and `pandas.DataFrame(records)`,
                   keeping the DataFrame.

Per case: wall seconds, peak RSS above the process's RSS before loading (resource's ru_maxrss,
checked against psutil samples every 2 ms), RSS kept while the data is held, and RSS left after
the data is dropped (del, gc, and for (a) `data.release_memory()`, which the app calls after a load).

    python bench/data_memory.py [--quick]
"""

from __future__ import annotations

import gc
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import MIB, Sampler, parse_or_run_child, run_child, write_file  # noqa: E402

SIZES = (10_000, 100_000, 200_000, 1_000_000)  # 200,000: the default record limit


def child(method: str, path: str) -> None:
    import psutil
    import pandas as pd

    from playground import data
    from playground.errors import DataError

    process = psutil.Process()
    gc.collect()
    before = process.memory_info().rss
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    outcome = ""
    with Sampler() as sampler:
        if method == "playground":
            try:
                held = data.load(path)
                outcome = f"{len(held):,} records"
            except DataError as exc:
                held, outcome = None, "refused: " + str(exc).split(": ", 1)[1].split(" (raise")[0]
        else:
            with open(path, encoding="utf-8") as file:
                held = pd.DataFrame(json.load(file))
            outcome = f"{len(held):,} rows"
    seconds = time.perf_counter() - started
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, sampler.peak)
    if peak_before > peak:  # the imports peaked higher than the load: ru_maxrss says nothing
        peak = sampler.peak
    gc.collect()
    kept = process.memory_info().rss
    del held
    gc.collect()
    if method == "playground":
        data.release_memory()
    after = process.memory_info().rss
    print("CHILD " + json.dumps({"seconds": seconds, "peak": (peak - before) / MIB, "kept": (kept - before) / MIB,
                                 "after": (after - before) / MIB, "outcome": outcome}))


def main() -> None:
    args = parse_or_run_child(__doc__, child)
    if args is None:
        return
    print("JSON array of tiny records; MiB above the process's RSS before loading; each case in a fresh process\n")
    print(f"{'records':>9} {'file MB':>8}  {'method':<24} {'seconds':>8} {'peak MiB':>9} {'kept MiB':>9} "
          f"{'after drop':>10}  outcome")
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        for n in SIZES[:2] if args.quick else SIZES:
            path = Path(folder) / f"records-{n}.json"
            write_file(path, n)
            size = path.stat().st_size / 1e6
            for method, label in (("playground", "(a) playground data.load"),
                                  ("baseline", "(b) json.load + DataFrame")):
                row = rows[n, method] = run_child(__file__, ["--child", method, str(path)], f"{label} {n}")
                print(f"{n:>9,} {size:>8.1f}  {label:<24} {row['seconds']:>8.2f} {row['peak']:>9.0f} "
                      f"{row['kept']:>9.0f} {row['after']:>10.0f}  {row['outcome']}", flush=True)
            path.unlink()
    if args.quick:
        return
    a, b = rows[SIZES[2], "playground"], rows[SIZES[2], "baseline"]
    refused, loaded = rows[SIZES[3], "playground"], rows[SIZES[3], "baseline"]
    print(f"\nat the record limit ({SIZES[2]:,}): (a) peak {a['peak']:.0f} MiB, kept {a['kept']:.0f} MiB; "
          f"(b) peak {b['peak']:.0f} MiB, kept {b['kept']:.0f} MiB")
    print(f"{SIZES[3]:,} records: (a) refused in {refused['seconds']:.1f} s at a peak of {refused['peak']:.0f} MiB; "
          f"(b) loads them in {loaded['seconds']:.1f} s at a peak of {loaded['peak']:.0f} MiB")


if __name__ == "__main__":
    main()

"""Memory and time of the Dataset tab's token-length histogram and of one page turn, on large datasets.

What it measures: JSON array files of 10k, 100k and 200k tiny Alpaca records (the files of
`data_memory.py`), loaded with `data.load`, with the default tokenizer loaded beforehand; each case
in a fresh process:

  (a) playground   `dataset_tab.length_histogram`: sample lengths computed 1,000 records per
                   tokenizer call, only the lengths kept (int32), a uniform sample of 20,000
                   records above that; a page turn builds only the shown page's rows;
  (b) baseline     the tab as it was: every record's Alpaca training text tokenised in one call,
                   the lengths in a pandas Series; a page turn builds a table of the whole dataset
                   and slices it.

Per case: seconds and peak RSS above the process's RSS before the histogram (resource's
ru_maxrss, checked against psutil samples every 2 ms), and the seconds of one page turn (page 2
of 10 rows, no search). The tokenizer answers one batch call first (its thread pool and caches
are not the histogram's), and the figure itself is built both ways.

    python bench/dataset_tab.py [--quick]
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

SIZES = (10_000, 100_000, 200_000)


def old_histogram(dataset, tokenizer):
    """The baseline: the histogram as the tab drew it before, every text tokenised at once."""
    import pandas as pd
    import plotly.graph_objects as go

    from playground import prompts

    texts = [prompts.render(r, "alpaca", tokenizer).training_text for r in dataset.records]
    lengths = pd.Series([len(ids) for ids in tokenizer(texts).input_ids])
    figure = go.Figure(go.Histogram(x=lengths, nbinsx=40))
    figure.update_layout(title=f"median {lengths.median():.0f}, 95th percentile {lengths.quantile(0.95):.0f}, "
                               f"max {lengths.max()}")
    return figure


def old_page(dataset, page: int, page_size: int):
    """The baseline page turn: a table of the whole dataset, then one page of it."""
    frame = dataset.to_frame()
    frame.insert(0, "#", range(len(frame)))
    return frame.iloc[(page - 1) * page_size: page * page_size]


def child(method: str, path: str) -> None:
    import psutil

    from playground import data, store
    from playground.ui import dataset_tab

    tokenizer = store.load_tokenizer(store.DEFAULT)
    dataset = data.load(path)
    tokenizer(["a first batch call starts the tokenizer's threads"] * 1000)  # not counted against either
    process = psutil.Process()
    gc.collect()
    data.release_memory()
    before = process.memory_info().rss
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    with Sampler() as sampler:
        figure = (dataset_tab.length_histogram if method == "playground" else old_histogram)(dataset, tokenizer)
    seconds = time.perf_counter() - started
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # unchanged: loading the tokenizer or the file peaked higher, so only the samples tell
    peak = max(peak_after, sampler.peak) if peak_after > peak_before else sampler.peak
    started = time.perf_counter()
    if method == "playground":
        dataset_tab.page_of(dataset, "", 2, 10)
    else:
        old_page(dataset, 2, 10)
    page_seconds = time.perf_counter() - started
    print("CHILD " + json.dumps({"seconds": seconds, "peak": (peak - before) / MIB, "page": page_seconds,
                                 "title": figure.layout.title.text}))


def main() -> None:
    args = parse_or_run_child(__doc__, child)
    if args is None:
        return
    print("JSON array of tiny records, default tokenizer; histogram peak in MiB above the process's RSS "
          "before it; each case in a fresh process\n")
    print(f"{'records':>9}  {'method':<34} {'hist s':>7} {'peak MiB':>9} {'page turn s':>12}")
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        for n in SIZES[:2] if args.quick else SIZES:
            path = Path(folder) / f"records-{n}.json"
            write_file(path, n)
            for method, label in (("playground", "(a) playground, chunked + sample"),
                                  ("baseline", "(b) one tokenizer call, whole table")):
                row = rows[n, method] = run_child(__file__, ["--child", method, str(path)], f"{label} {n}")
                print(f"{n:>9,}  {label:<34} {row['seconds']:>7.2f} {row['peak']:>9.0f} {row['page']:>12.4f}",
                      flush=True)
            path.unlink()
    n = max(size for size, _ in rows)
    a, b = rows[n, "playground"], rows[n, "baseline"]
    print(f"\nat {n:,} records: histogram peak {a['peak']:.0f} MiB vs {b['peak']:.0f} MiB, "
          f"{a['seconds']:.1f} s vs {b['seconds']:.1f} s; page turn {a['page'] * 1000:.1f} ms vs "
          f"{b['page'] * 1000:.0f} ms")
    print(f"(a)'s plot title at {n:,}: {a['title']}")


if __name__ == "__main__":
    main()

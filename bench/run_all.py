"""Run every benchmark and write their figures, with the machine they came from, to bench/RESULTS.md.

    python bench/run_all.py [--quick]

Each script also runs on its own (`python bench/NAME.py --help`) and prints its own table.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ["train_throughput", "dpo_throughput", "padding", "side_by_side", "batch_invariance", "judge_throughput",
              "startup", "data_memory", "dataset_tab", "dead_judge", "estimate_accuracy", "export_quants"]
ON_REQUEST = ["quality_per_minute"]  # about 40 minutes: only with --only


def machine() -> str:
    import torch

    device = f"CUDA {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "no GPU"
    return (f"{platform.platform()}, {os.cpu_count()} CPU cores, {device}, Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter runs (noisier figures)")
    parser.add_argument("--only", nargs="*", choices=BENCHMARKS + ON_REQUEST, help="run only these")
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    sections = []
    for name in args.only or BENCHMARKS:
        command = [sys.executable, str(HERE / f"{name}.py")] + (["--quick"] if args.quick else [])
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, cwd=HERE.parent)
        text = result.stdout.rstrip()
        print(text, flush=True)
        if result.returncode != 0:
            print(result.stderr[-3000:], file=sys.stderr)
        table = "\n".join(line for line in text.splitlines() if not line.startswith("RESULT "))
        status = "" if result.returncode == 0 else f"\n**failed** (exit {result.returncode})\n"
        sections.append(f"## {name}\n\n`{' '.join(['python', f'bench/{name}.py'] + command[2:])}` "
                        f"({time.perf_counter() - started:.0f} s)\n{status}\n```\n{table}\n```\n")
    header = (f"# Benchmark results\n\nWritten by `python bench/run_all.py{' --quick' if args.quick else ''}` on "
              f"{time.strftime('%Y-%m-%d')}.\n\nMachine: {machine()}.\n\n")
    if args.only and args.output.exists():  # keep the other sections of an earlier full run
        old = args.output.read_text().split("\n## ")
        kept = [f"## {part}" for part in old[1:] if part.split("\n")[0] not in args.only]
        sections = kept + sections
    args.output.write_text(header + "\n".join(sections))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

"""`compare`: runs side by side, their final figures and the settings that differ, from what each recorded."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .. import store


def compare(args: argparse.Namespace) -> int:
    from .. import comparison

    summaries = comparison.compare(args.models_dir, args.runs)
    figures, differing = comparison.final_figures(summaries), comparison.differing_settings(summaries)
    if args.json:
        print(json.dumps({"figures": figures, "differing_settings": differing}, ensure_ascii=False, default=str))
        return 0
    for row in figures:
        print("  ".join(f"{k}={v}" for k, v in row.items() if v is not None))
    caveat = comparison.loss_caveat(summaries)
    if caveat:
        print(f"note: {caveat}")
    print("settings that differ:" if differing else "settings: all the same")
    for row in differing:
        print(f"  {row['setting']}: " + ", ".join(f"{s.run_id}={row[s.run_id]}" for s in summaries))
    return 0


def add_parser(commands: Any) -> None:
    side_by_side = commands.add_parser("compare", help="runs side by side: final figures and the settings that differ")
    side_by_side.add_argument("runs", nargs="+", help="run ids (folders under MODELS_DIR/runs/)")
    side_by_side.add_argument("--json", action="store_true")
    side_by_side.add_argument("--models-dir", type=Path, default=store.MODELS_DIR)
    side_by_side.set_defaults(func=compare)

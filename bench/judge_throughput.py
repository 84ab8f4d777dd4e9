"""Judge throughput: graded items per second against a stand-in Ollama server.

What it measures: `playground.judge.grade(items, JudgeSettings(host, concurrency=K), cache=None)`
against `tests/ollama_standin.py`, a real HTTP server speaking Ollama's REST API, set to a fixed
latency per chat request (default 0.25 s) and a fixed number of requests served at once (default
capacity 4, like OLLAMA_NUM_PARALLEL; the rest wait). Concurrency K = 1, 2, 4, 8.

Compares against: the ideal min(K, capacity) / latency items/s (efficiency = measured / ideal), and
the loop a user would otherwise write: `ollama.Client(host).chat(...)` for each item in turn
(concurrency 1, the same prompts).

Target: >= 90% of the ideal at concurrency = capacity.

The stand-in is Python's http.server, which leaves Nagle's algorithm on: a reply written in several
small pieces (headers, then body or stream chunks) stalls about 40 ms per request on the client's
delayed ACK. Ollama's own server (Go) sets TCP_NODELAY on every connection, so each measurement is
made twice: with the stand-in as shipped, and with `disable_nagle_algorithm = True` on its handler
(TCP_NODELAY, as Ollama). The target is read on the second, which is what a real server does; both
are printed and both go into RESULT.

    python bench/judge_throughput.py [--quick] [--items N] [--latency S] [--capacity C]

--quick uses 16 items instead of 48: the fixed start-up of a grade() call (a client per worker
thread, about 30 ms each) then weighs three times more, so its efficiencies read a few points lower.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import ollama  # noqa: E402
import torch  # noqa: E402

import ollama_standin  # noqa: E402
from ollama_standin import OllamaStandin  # noqa: E402
from playground.judge import JudgeItem, JudgeSettings, grade, parse_score, render_prompt  # noqa: E402

CONCURRENCIES = (1, 2, 4, 8)
TARGET = 0.90


def machine() -> str:
    return f"{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs, torch {torch.__version__}"


def make_items(n: int) -> list[JudgeItem]:
    return [JudgeItem(key=str(i), instruction=f"Convert {i} km to meters.", input="",
                      reference=f"{i} km is {i * 1000} meters.", response=f"{i} km equals {i * 1000} meters.")
            for i in range(n)]


def set_nodelay(on: bool) -> None:
    """TCP_NODELAY on the stand-in's connections (socketserver's own switch), as Ollama's Go server."""
    ollama_standin._Handler.disable_nagle_algorithm = on


def run_grade(items: list[JudgeItem], latency: float, capacity: int, concurrency: int) -> dict:
    with OllamaStandin(latency=latency, capacity=capacity) as server:
        settings = JudgeSettings(host=server.url, concurrency=concurrency)
        started = time.perf_counter()
        judgments = grade(items, settings, cache=None)
        elapsed = time.perf_counter() - started
        seen = server.max_concurrent
    scored = sum(j.status == "scored" for j in judgments)
    return {"scored": scored, "seconds": elapsed, "items_per_s": scored / elapsed, "max_in_flight": seen}


def run_plain_loop(items: list[JudgeItem], latency: float, capacity: int) -> dict:
    """What a user would write without the playground: one request after another."""
    with OllamaStandin(latency=latency, capacity=capacity) as server:
        settings = JudgeSettings(host=server.url)
        prompts = [render_prompt(item, settings) for item in items]
        started = time.perf_counter()
        client = ollama.Client(host=server.url)
        scores = [parse_score(client.chat(model="llama3", messages=[{"role": "user", "content": prompt}],
                                          options={"temperature": 0, "seed": 123}).message.content)
                  for prompt in prompts]
        elapsed = time.perf_counter() - started
    scored = sum(s is not None for s in scores)
    return {"scored": scored, "seconds": elapsed, "items_per_s": scored / elapsed, "max_in_flight": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 items instead of 48")
    parser.add_argument("--items", type=int, help="items per measurement (default 48, --quick 16)")
    parser.add_argument("--latency", type=float, default=0.25, help="seconds per chat request")
    parser.add_argument("--capacity", type=int, default=4, help="chat requests the server serves at once")
    args = parser.parse_args()
    n = args.items or (16 if args.quick else 48)
    items = make_items(n)

    print(f"machine: {machine()}")
    print(f"stand-in: latency {args.latency} s per request, capacity {args.capacity}; {n} items per run, cache off\n")
    header = (f"{'run':<28} {'K':>2} {'scored':>6} {'seconds':>8} {'items/s':>8} {'ideal':>7} "
              f"{'efficiency':>10} {'in flight':>9}")

    def show(name: str, k: int, r: dict) -> None:
        ideal = min(k, args.capacity) / args.latency
        r["ideal_items_per_s"] = ideal
        r["efficiency"] = r["items_per_s"] / ideal
        print(f"{name:<28} {k:>2} {r['scored']:>3}/{n:<2} {r['seconds']:>8.2f} {r['items_per_s']:>8.2f} "
              f"{ideal:>7.2f} {r['efficiency']:>9.1%} {r['max_in_flight']:>9}")

    def rounded(r: dict) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}

    shipped_nodelay = bool(ollama_standin._Handler.disable_nagle_algorithm)
    result = {"benchmark": "judge_throughput", "items": n, "latency_s": args.latency, "capacity": args.capacity,
              "target": TARGET}
    modes = [("standin_tcp_nodelay", True)]
    if not shipped_nodelay:  # the stand-in as shipped leaves Nagle on: measure that too
        modes.insert(0, ("stock_standin", False))
    for mode, nodelay in modes:
        set_nodelay(nodelay)
        print("stand-in with TCP_NODELAY (as Ollama's server)" if nodelay else "stand-in as shipped (Nagle on)")
        print(header)
        print("-" * len(header))
        baseline = run_plain_loop(items, args.latency, args.capacity)
        show("plain ollama.Client loop", 1, baseline)
        results = {}
        for k in sorted({*CONCURRENCIES, args.capacity}):
            results[k] = run_grade(items, args.latency, args.capacity, k)
            show("playground judge.grade", k, results[k])
        at_capacity = results[args.capacity]
        best = max(results.values(), key=lambda r: r["items_per_s"])
        print(f"   speed-up over the plain loop: {best['items_per_s'] / baseline['items_per_s']:.2f}x at best, "
              f"{at_capacity['items_per_s'] / baseline['items_per_s']:.2f}x at K = capacity; "
              f"{at_capacity['efficiency']:.1%} of the ideal at K = capacity\n")
        result[mode] = {"baseline_plain_loop": rounded(baseline),
                        "concurrency": {str(k): rounded(r) for k, r in results.items()},
                        "efficiency_at_capacity": round(at_capacity["efficiency"], 4),
                        "speedup_vs_plain_loop_at_capacity": round(at_capacity["items_per_s"] / baseline["items_per_s"], 3)}
    set_nodelay(shipped_nodelay)
    result.setdefault("stock_standin", result["standin_tcp_nodelay"])  # the same server when it ships with TCP_NODELAY

    efficiency = result["standin_tcp_nodelay"]["efficiency_at_capacity"]
    met = efficiency >= TARGET
    result["target_met"] = met
    result["target_met_stock_standin"] = result["stock_standin"]["efficiency_at_capacity"] >= TARGET
    print(f"target: >= {TARGET:.0%} of the ideal at K = capacity ({args.capacity}), stand-in with TCP_NODELAY: "
          f"{efficiency:.1%} -> {'MET' if met else 'NOT MET'} "
          f"(as shipped: {result['stock_standin']['efficiency_at_capacity']:.1%})")
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()

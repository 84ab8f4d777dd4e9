"""Time to give up on a dead judge: a server that accepts every request and never answers.

What it measures: `playground.judge.grade` on N answers (default 40: 20 examples, base and tuned)
against `tests/ollama_standin.py` scripted to hang, at the default settings except the per-request
timeout (default 2 s, so the baseline ends in minutes):
  (a) the playground: the circuit breaker (4 failed requests in a row) and the overall deadline;
  (b) the same runner with the breaker and the deadline switched off (give_up_after and deadline
      huge): every answer is tried 1 + retries times with backoff, as a grading did before.
And Stop: the seconds from setting the stop event to grade() returning, with requests in flight.

The figures scale with the timeout: at the default 120 s, (a) gives up after about one timeout and
(b) takes (N / concurrency) x ((retries + 1) x timeout + backoff time).

    python bench/dead_judge.py [--quick] [--answers N] [--timeout S]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from ollama_standin import Fault, OllamaStandin  # noqa: E402

from playground import judge  # noqa: E402
from playground.judge import JudgeItem, JudgeSettings  # noqa: E402


def answers(n: int) -> list[JudgeItem]:
    return [JudgeItem(str(k // 2), f"Instruction {k // 2}", "", "Reference", f"answer {k}", ("base", "tuned")[k % 2])
            for k in range(n)]


def time_grading(items: list[JudgeItem], settings: JudgeSettings) -> dict[str, float]:
    with OllamaStandin(reply=lambda request: Fault("hang")) as server:
        settings.host = server.url
        started = time.perf_counter()
        judgments = judge.grade(items, settings)
        seconds = time.perf_counter() - started
        return {"seconds": round(seconds, 2), "requests": server.chat_count,
                "skipped": sum(j.status == "skipped" for j in judgments),
                "errors": sum(j.status == "error" for j in judgments)}


def time_stop(items: list[JudgeItem]) -> float:
    """Seconds from Stop to grade() returning, with `concurrency` requests hanging."""
    with OllamaStandin(reply=lambda request: Fault("hang")) as server:
        stop = threading.Event()
        worker = threading.Thread(target=judge.grade, args=(items, JudgeSettings(host=server.url, timeout=600)),
                                  kwargs={"stop": stop})
        worker.start()
        while server.chat_count < 4:
            time.sleep(0.01)
        started = time.perf_counter()
        stop.set()
        worker.join()
        return round(time.perf_counter() - started, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="16 answers instead of 40")
    parser.add_argument("--answers", type=int, default=40)
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per request")
    args = parser.parse_args()
    n = 16 if args.quick else args.answers
    items = answers(n)
    print(f"machine: {platform.platform()}, Python {platform.python_version()}")
    print(f"a judge that never answers; {n} answers, 4 in flight, timeout {args.timeout:g} s, 3 retries with backoff\n")
    playground = time_grading(items, JudgeSettings(timeout=args.timeout))
    baseline = time_grading(items, JudgeSettings(timeout=args.timeout, give_up_after=10**6, deadline=10**6))
    print(f"  {'method':44} {'seconds':>8} {'requests':>9} {'errors':>7} {'skipped':>8}")
    for name, row in (("(a) playground: breaker + deadline", playground),
                      ("(b) retries only (breaker and deadline off)", baseline)):
        print(f"  {name:44} {row['seconds']:8.1f} {row['requests']:9d} {row['errors']:7d} {row['skipped']:8d}")
    stop_seconds = time_stop(items)
    print(f"\nStop with 4 requests hanging (timeout 600 s): grade() returned after {stop_seconds:.3f} s")
    print(f"gave up {baseline['seconds'] / playground['seconds']:.0f}x sooner; at the default 120 s timeout that is "
          f"about {playground['seconds'] / args.timeout * 120 / 60:.0f} min instead of "
          f"{baseline['seconds'] / args.timeout * 120 / 60:.0f} min")
    print("RESULT " + json.dumps({"playground": playground, "baseline": baseline, "stop_seconds": stop_seconds}))


if __name__ == "__main__":
    main()

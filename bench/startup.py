"""Start-up times: the app's page, and loading the default tokenizer and model.

What it measures:
  (a) app: from launching `python app.py --port P --models-dir D` (repo root as cwd) to the page
      answering HTTP 200 on http://127.0.0.1:P/ (first the "starting" page, then the app itself), with a warm store (the repo's models/, which holds
      gemma-3-270m/ converted) and with a cold, empty store (a temporary folder: the tokenizer is then
      converted from GGUF in the background while the page already answers). The app is stopped after.
      GRADIO_ANALYTICS_ENABLED=False, as in the browser tests. Median of 3 launches each (1 with
      --quick). For reference, the time to merely import app.py (gradio, torch, the package) in a
      fresh process: the floor under the page time. "closed" is the longest time the port refused
      connections between the starting page and the app (polled every 10 ms; the starting page asks
      in the background across it, so a browser never shows it).
  (b) loads, each in a fresh Python process so nothing is cached in memory, timed inside the process
      (the process's own start and imports are shown apart):
      tokenizer cold  `store.load_tokenizer("default", tmp)` on an empty store (converts from GGUF)
      tokenizer warm  `store.load_tokenizer("default")` from the repo's models/
      model cold      `store.ensure_default_model(tmp)` then `store.load_model("default", tmp)`
                      (tmp already holds the tokenizer, so this is the model alone)
      model warm      `store.load_model("default")` from the repo's models/

Compares against: for the model, loading the GGUF with transformers every time
(`AutoModelForCausalLM.from_pretrained(dir, gguf_file=name)`) is what a user would otherwise do;
that is what the cold figure is (plus writing the cache once), so warm/cold is the saving.

Target: the page answers within 5 s of launch, warm or cold store, whatever the model is doing.

    python bench/startup.py [--quick]     # --quick skips the cold model conversion (about a minute)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from playground import store  # noqa: E402

TARGET_S = 5.0
SPLASH_MARK = b"Starting&hellip;"  # in playground/splash.py's page, not in the app's
PAGE_DEADLINE_S = 180.0


def machine() -> str:
    return f"{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs, torch {torch.__version__}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def page_time(models_dir: Path, log_path: Path, wait_for_tokenizer: bool) -> dict:
    """Launch the app; seconds until / answers 200; optionally until the tokenizer is in the store."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    tokenizer_file = store.default_dir(models_dir) / "tokenizer.json"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    with open(log_path, "w") as log:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--models-dir", str(models_dir)],
                                   cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            page = app = None  # the first page (the "starting" page while the app imports), then the app's
            refused_since, closed = None, 0.0  # the port refusing between the starting page and the app
            while app is None:
                try:
                    with urllib.request.urlopen(url, timeout=2) as response:
                        if response.status == 200:
                            now = time.perf_counter() - started
                            page = page if page is not None else now
                            if SPLASH_MARK not in response.read():
                                app = now
                            if refused_since is not None:
                                closed, refused_since = max(closed, now - refused_since), None
                except (urllib.error.URLError, OSError):
                    if page is not None and refused_since is None:
                        refused_since = time.perf_counter() - started
                if process.poll() is not None:
                    raise RuntimeError(f"the app exited with {process.returncode}; see {log_path}")
                if time.perf_counter() - started > PAGE_DEADLINE_S:
                    raise RuntimeError(f"no page after {PAGE_DEADLINE_S:.0f} s; see {log_path}")
                time.sleep(0.01)
            cached_at_page = tokenizer_file.exists()
            tokenizer_ready = None
            if wait_for_tokenizer:
                while not tokenizer_file.exists() and time.perf_counter() - started < PAGE_DEADLINE_S:
                    if process.poll() is not None:
                        break
                    time.sleep(0.2)
                tokenizer_ready = time.perf_counter() - started if tokenizer_file.exists() else None
        finally:
            stop(process)
    return {"page_s": page, "app_s": app, "closed_s": closed, "tokenizer_cached_at_page": cached_at_page,
            "tokenizer_ready_s": tokenizer_ready}


# Run in a fresh interpreter: prints one JSON line with the timings of the steps named in argv.
CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from playground import store
from transformers import AutoModelForCausalLM, AutoTokenizer  # imported here, not counted in the load
imports = time.perf_counter() - t0
what, models_dir = sys.argv[2], (Path(sys.argv[3]) if len(sys.argv) > 3 else None)
times = {"imports_s": imports}
t = time.perf_counter()
if what == "tokenizer":
    store.load_tokenizer("default", models_dir)
    times["load_s"] = time.perf_counter() - t
else:
    if models_dir is not None:
        store.ensure_default_model(models_dir)
        times["convert_s"] = time.perf_counter() - t
    t2 = time.perf_counter()
    store.load_model("default", models_dir)
    times["from_cache_s"] = time.perf_counter() - t2
    times["load_s"] = time.perf_counter() - t
print("TIMES " + json.dumps(times))
"""


def timed_load(what: str, models_dir: Path | None) -> dict:
    args = [sys.executable, "-c", CHILD, str(ROOT), what] + ([str(models_dir)] if models_dir else [])
    started = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    total = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith("TIMES ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"loading the {what} failed:\n{done.stderr[-3000:]}")
    return {**json.loads(lines[-1][len("TIMES "):]), "process_s": total}


def import_time() -> float:
    """Seconds for a fresh process to import what app.py loads behind its starting page (no launch)."""
    code = ("import sys, time; t = time.perf_counter(); import playground.ui, playground.manager; "
            "print(time.perf_counter() - t)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="skip the cold model conversion and waiting for the cold app's tokenizer")
    args = parser.parse_args()
    warm_store = store.MODELS_DIR
    if not (store.default_dir(warm_store) / "model.safetensors").exists():
        sys.exit(f"{store.default_dir(warm_store)} has no converted model: run the app or the tests once first.")

    print(f"machine: {machine()}")
    print(f"warm store: {warm_store}\n")
    tmp = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    try:
        # (a) the page: launches alternate warm / cold; the median is reported
        launches = 1 if args.quick else 3
        runs: dict[str, list[dict]] = {"warm": [], "cold": []}
        for n in range(launches):
            runs["warm"].append(page_time(warm_store, tmp / "app-warm.log", wait_for_tokenizer=False))
            last = n == launches - 1
            runs["cold"].append(page_time(tmp / f"cold-app-store-{n}", tmp / "app-cold.log",
                                          wait_for_tokenizer=last and not args.quick))
        apps = {name: {"page_s": statistics.median(r["page_s"] for r in rs),
                       "page_s_each": [r["page_s"] for r in rs],
                       "app_s": statistics.median(r["app_s"] for r in rs),
                       "closed_s": max(r["closed_s"] for r in rs),
                       "tokenizer_cached_at_page": [r["tokenizer_cached_at_page"] for r in rs],
                       "tokenizer_ready_s": rs[-1]["tokenizer_ready_s"]} for name, rs in runs.items()}
        print(f"app: launch -> HTTP 200 on / ({launches} launch{'es' if launches > 1 else ''} each, "
              "alternating; median)")
        print(f"{'store':<18} {'page (s)':>9}  {'each':<20} {'app (s)':>8} {'closed (ms)':>11}  "
              "tokenizer in the store when the page answered")
        print("-" * 96)
        for name, r in apps.items():
            label = "warm (models/)" if name == "warm" else "cold (empty dir)"
            cached = r["tokenizer_cached_at_page"]
            note = "yes" if all(cached) else "no, converting in the background" if not any(cached) else "sometimes"
            if r["tokenizer_ready_s"] is not None and not any(cached):
                note += f" (ready {r['tokenizer_ready_s']:.1f} s after launch)"
            each = ", ".join(f"{t:.2f}" for t in r["page_s_each"])
            print(f"{label:<18} {r['page_s']:>9.2f}  {each:<20} {r['app_s']:>8.2f} {r['closed_s'] * 1000:>11.0f}  {note}")
        import_app_s = import_time()
        print(f"{'import app only':<18} {import_app_s:>9.2f}  (gradio, torch and the package, no launch: the floor "
              "under the app column; the page column is the starting page served meanwhile)")

        # (b) loads in fresh processes
        cold_store = tmp / "cold-load-store"
        loads = {"tokenizer": {"cold": timed_load("tokenizer", cold_store), "warm": timed_load("tokenizer", None)},
                 "model": {"warm": timed_load("model", None)}}
        if not args.quick:
            loads["model"]["cold"] = timed_load("model", cold_store)
        print("\nloads, each in a fresh process (seconds inside the process; the process total in brackets)")
        print(f"{'what':<10} {'cold':>16} {'warm':>16} {'warm/cold':>10}")
        print("-" * 56)
        for what, r in loads.items():
            cold, warm = r.get("cold"), r["warm"]
            cold_text = f"{cold['load_s']:.2f} ({cold['process_s']:.1f})" if cold else "skipped"
            warm_text = f"{warm['load_s']:.2f} ({warm['process_s']:.1f})"
            ratio = f"{warm['load_s'] / cold['load_s']:.3f}" if cold else "-"
            print(f"{what:<10} {cold_text:>16} {warm_text:>16} {ratio:>10}")
        imports = [r["imports_s"] for what in loads.values() for r in what.values()]
        print(f"(each process spends {min(imports):.1f}-{max(imports):.1f} s importing playground.store and transformers)")
        if "cold" in loads["model"]:
            cold = loads["model"]["cold"]
            print(f"model cold = GGUF load + dequantise + write safetensors {cold['convert_s']:.1f} s "
                  f"+ load from the new cache {cold['from_cache_s']:.1f} s; the baseline (the GGUF through "
                  "transformers on every load) pays about the first part every time")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    worst = max(r["page_s"] for r in apps.values())
    met = worst <= TARGET_S
    print(f"\ntarget: page within {TARGET_S:.0f} s, warm and cold store: worst median {worst:.2f} s "
          f"-> {'MET' if met else 'NOT MET'}")

    def rounded(r: dict) -> dict:
        return {k: round(v, 3) if isinstance(v, float) else [round(x, 3) if isinstance(x, float) else x for x in v]
                if isinstance(v, list) else v for k, v in r.items()}

    result = {"benchmark": "startup", "quick": args.quick, "target_page_s": TARGET_S, "target_met": met,
              "app": {k: rounded(v) for k, v in apps.items()}, "import_app_s": round(import_app_s, 3),
              "loads": {what: {k: rounded(v) for k, v in r.items()} for what, r in loads.items()},
              "warm_over_cold": {what: round(r["warm"]["load_s"] / r["cold"]["load_s"], 4)
                                 for what, r in loads.items() if "cold" in r}}
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()

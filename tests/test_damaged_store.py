"""A damaged model store never stops the app: a run with a damaged file is listed as damaged, every
action on it is refused by name, nothing in it is changed, and the run beside it works as before.
The app's start failures (a busy port, a model store that is a file, a missing auth variable) are
one line and exit status 2."""

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from playground import comparison, evaluation, generation, inspection, judge, prompts, runs, votes
from playground.errors import PlaygroundError
from playground.export import ExportRequest, export_run
from playground.generation import GenerationSettings
from playground.manager import ModelManager
from tests_helpers import CHROMIUM_FLAGS, ROOT, free_port, run_cli, small_dataset, train_tiny_run

HEALTHY, VICTIM = "healthy", "victim"
SHOTS = ROOT / "artifacts" / "screenshots"
TEXT_FILES = ["config.json", "status.json", "metrics.jsonl", "data.json", "votes.jsonl", "exports.jsonl",
              "judge/cache.jsonl", "judge/*/grading.json", "judge/*/responses.json",
              "judge/*/instruction-data-with-response.json", "judge/*/scores-*.json", "adapter/adapter_config.json",
              "checkpoints/step-*/adapter/adapter_config.json"]
BINARY_FILES = ["adapter/adapter_model.safetensors", "checkpoints/step-*/adapter/adapter_model.safetensors",
                "checkpoints/step-*/trainer.pt"]
REQUIRED = {"config.json", "status.json", "adapter/adapter_config.json", "adapter/adapter_model.safetensors",
            "checkpoints/step-*/trainer.pt", "checkpoints/step-*/adapter/adapter_config.json",
            "checkpoints/step-*/adapter/adapter_model.safetensors"}
# each kind of damage, and what the message says of it
WHY = {"missing": "missing", "folder": "a folder, not a file", "link out": "outside the run's folder",
       "empty": "empty", "cut short": "cut short", "not UTF-8": "not UTF-8", "not JSON": "not JSON",
       "wrong shape": "expected", "not its format": "not "}
TEXT_DAMAGE = ["folder", "link out", "empty", "cut short", "not UTF-8", "not JSON", "wrong shape"]
BINARY_DAMAGE = ["folder", "link out", "empty", "cut short", "not its format"]
CASES = ([(name, "missing") for name in [*TEXT_FILES, *BINARY_FILES] if name in REQUIRED]
         + [(name, kind) for name in TEXT_FILES for kind in TEXT_DAMAGE
            if (name, kind) != ("judge/cache.jsonl", "cut short")]  # see test_a_judge_cache_line_cut_by_a_crash
         + [(name, kind) for name in BINARY_FILES for kind in BINARY_DAMAGE])


@pytest.fixture(scope="module")
def store_with_runs(tiny_model_dir, tmp_path_factory):
    """(models folder, its manager, a pristine copy of a run): a finished LoRA run with a file of
    every kind (checkpoints, a vote, a metrics-only grading, a judge cache line, an export record)."""
    models = tmp_path_factory.mktemp("damage-store")
    folder = train_tiny_run(tiny_model_dir, models, HEALTHY, small_dataset(), max_steps=4, checkpoint_every=2)
    manager = ModelManager(models, tokenizer_spec=str(tiny_model_dir), dtype="float32")
    votes.save_vote(models, HEALTHY, "Repeat the word apple.", "", "tuned", "left")
    answers = evaluation.generate_responses(manager, HEALTHY, "test", 2, GenerationSettings(max_new_tokens=4))
    evaluation.grade_responses(answers, judge.JudgeSettings(), None, use_judge=False)
    judge.JudgeCache(evaluation.judge_dir(models, HEALTHY) / "cache.jsonl").put({"key": "k", "reply": "80"})
    export_run(manager, ExportRequest(run_id=HEALTHY, format="adapter", out=tmp_path_factory.mktemp("export") / "a"))
    pristine = tmp_path_factory.mktemp("pristine") / HEALTHY
    shutil.copytree(folder, pristine)
    return models, manager, pristine


def store_of(store_with_runs, folder: Path, *run_ids: str) -> Path:
    """A new store in `folder`: copies of the pristine run under these ids, and the copy of its data."""
    models = folder / "store"
    shutil.copytree(store_with_runs[0] / "datasets", models / "datasets")
    for run_id in run_ids:
        shutil.copytree(store_with_runs[2], models / "runs" / run_id)
    return models


def damage(path: Path, kind: str, outside: Path) -> None:
    """Damage the file at `path` in the way `kind` names (see WHY)."""
    content = path.read_bytes()
    if kind in ("missing", "folder", "link out"):
        path.unlink()
    if kind == "folder":
        path.mkdir()
        (path / "inside.txt").write_text("a file in a folder where a file was")
    elif kind == "link out":
        outside.mkdir(exist_ok=True)
        (outside / path.name).write_bytes(content)  # the right content, in the wrong place
        path.symlink_to(outside / path.name)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "cut short":
        path.write_bytes(content[:-5])
    elif kind == "not UTF-8":
        path.write_bytes(content[:1] + b"\xff" + content[1:])
    elif kind == "not JSON":
        path.write_bytes(b"this is not JSON\n")
    elif kind == "not its format":
        path.write_bytes(b"this is a text file, not a model's file\n")
    elif kind == "wrong shape" and path.suffix == ".jsonl":
        path.write_bytes(content + b"[1, 2, 3]\n")
    elif kind == "wrong shape":
        path.write_text("[1, 2, 3]" if isinstance(json.loads(content), dict) else '{"records": 3}')


def found(folder: Path, pattern: str) -> str:
    """The path in the run folder that `pattern` names (its first match)."""
    return sorted(folder.glob(pattern))[0].relative_to(folder).as_posix()


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under `folder` with its size and modification time, links not followed."""
    return {p.relative_to(folder).as_posix(): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in folder.rglob("*")}


def chat(manager: ModelManager, run_id: str) -> list[str]:
    """Both answers to one message, as the Chat tab asks for them."""
    tuned, record = manager.tuned_side(run_id)
    spec, style = record.config.model, record.config.style
    tokenizer = manager.tokenizer(spec)
    prompt = prompts.conversation([], "Repeat the word apple.", style, tokenizer, record.config.template)
    return generation.generate([(manager.base_side(spec), prompt), (tuned, prompt)], tokenizer, style,
                               GenerationSettings(max_new_tokens=4), batch_size=None)


def actions(manager: ModelManager, out: Path) -> dict:
    """Everything a user can ask of a run, each a call that starts it."""
    models = manager.models_dir
    return {
        "chat": lambda: manager.tuned_side(VICTIM),
        "chat with a checkpoint": lambda: manager.tuned_side(VICTIM, checkpoint=2),
        "chat examples": lambda: manager.run_data(VICTIM),
        "vote": lambda: votes.save_vote(models, VICTIM, "Repeat the word apple.", "", "tuned", "left"),
        "votes so far": lambda: votes.tally(models, VICTIM),
        "grade": lambda: evaluation.generate_responses(manager, VICTIM, "test", 2, GenerationSettings(max_new_tokens=4)),
        "last grading": lambda: evaluation.latest_grading(models, VICTIM),
        "inspect": lambda: inspection.inspect_example(manager, VICTIM, "test", 0),
        "export": lambda: export_run(manager, ExportRequest(run_id=VICTIM, format="adapter", out=out)),
        "resume": lambda: manager.resume_training(VICTIM),
        "compare": lambda: comparison.compare(models, [HEALTHY, VICTIM]),
    }


@pytest.mark.parametrize("pattern,kind", CASES)
def test_a_damaged_file_marks_its_run_every_action_refuses_it_and_the_run_beside_it_chats(
        store_with_runs, pattern, kind, tmp_path):
    from playground.ui.common import run_choices

    models, manager, pristine = store_with_runs
    victim = runs.runs_dir(models) / VICTIM
    shutil.copytree(pristine, victim)
    try:
        name = found(victim, pattern)
        damage(victim / name, kind, tmp_path / "outside")
        before = tree(victim)
        listed = {record.run_id: record.state for record in runs.list_runs(models)}
        assert listed[VICTIM].startswith(f"damaged: {name}: ") and WHY[kind] in listed[VICTIM], listed[VICTIM]
        assert listed[HEALTHY] == "finished"
        assert f"{VICTIM} · {listed[VICTIM]}" in [label for label, _ in run_choices(manager)]
        for action, call in actions(manager, tmp_path / "export").items():
            with pytest.raises(PlaygroundError) as refused:
                call()
            assert f"Run {VICTIM} is damaged: {name}: " in str(refused.value), action
        assert tree(victim) == before  # nothing written, nothing repaired, nothing removed
        assert not (tmp_path / "export").exists()
        assert all(isinstance(answer, str) for answer in chat(manager, HEALTHY))
    finally:
        shutil.rmtree(victim)


def test_the_app_starts_on_a_store_of_damaged_runs_and_lists_each(store_with_runs, tiny_model_dir, tmp_path):
    """The issue's own cases: status.json a folder, not UTF-8, a JSON list; metrics.jsonl a folder."""
    from playground.ui import build_app, compare_tab, export_tab, train_tab
    from playground.ui.common import run_choices

    damaged = [("a-folder", "status.json", "folder"), ("not-utf8", "status.json", "not UTF-8"),
               ("a-list", "status.json", "wrong shape"), ("metrics", "metrics.jsonl", "folder")]
    models = store_of(store_with_runs, tmp_path, HEALTHY, *(run_id for run_id, _, _ in damaged))
    for run_id, name, kind in damaged:
        damage(models / "runs" / run_id / name, kind, tmp_path / "outside")
    manager = ModelManager(models, tokenizer_spec=str(tiny_model_dir), dtype="float32")
    build_app(manager)
    expected = {"a-folder": "status.json: a folder, not a file", "a-list": "status.json: expected a JSON object",
                "not-utf8": "status.json: not UTF-8 text (byte 0xff at position 1)",
                "metrics": "metrics.jsonl: a folder, not a file"}
    lists = {"chat, inspect and judge": run_choices(manager), "export": export_tab.saved_runs(manager),
             "compare": compare_tab.run_options(models),
             "train": [(f"{row['run']} · {row['state']}", row["run"])
                       for row in train_tab.runs_frame(models).to_dict("records")]}
    for where, choices in lists.items():
        labels = dict((value, label) for label, value in choices)
        for run_id, why in expected.items():
            assert labels[run_id].startswith(f"{run_id} · damaged: {why}"), (where, labels[run_id])
        assert "damaged" not in labels[HEALTHY]
    with pytest.raises(PlaygroundError, match="Run metrics is damaged: metrics.jsonl: a folder, not a file"):
        manager.resume_training("metrics")
    assert all(isinstance(answer, str) for answer in chat(manager, HEALTHY))


def test_a_damaged_run_is_not_the_one_a_tab_picks_by_itself(store_with_runs, tmp_path):
    from playground.ui.common import run_update

    models = store_of(store_with_runs, tmp_path, "a-healthy-one", "z-newest-but-damaged")
    damage(models / "runs" / "z-newest-but-damaged" / "status.json", "empty", tmp_path)
    manager = ModelManager(models, dtype="float32")
    assert run_update(manager, None)["value"] == "a-healthy-one"
    assert run_update(manager, "z-newest-but-damaged")["value"] == "z-newest-but-damaged"  # a pick is kept


def test_the_command_line_refuses_a_damaged_run_by_name(store_with_runs, tmp_path):
    models = store_of(store_with_runs, tmp_path, VICTIM)
    damage(models / "runs" / VICTIM / "data.json", "not UTF-8", tmp_path)
    for command in (["chat", "--run", VICTIM, "--prompt", "Hi."], ["train", "--resume", VICTIM]):
        result = run_cli(*command, models_dir=models)
        assert result.returncode == 2, result.stderr[-2000:]
        assert f"error: Run {VICTIM} is damaged: data.json: not UTF-8 text (byte 0xff at position 1)" in result.stderr


def test_a_judge_cache_line_cut_by_a_crash_is_not_damage(store_with_runs, tmp_path):
    """The cache's writer ends a cut line before it appends again, and the cache skips it."""
    models = store_of(store_with_runs, tmp_path, VICTIM)
    folder = models / "runs" / VICTIM
    cache = folder / "judge" / "cache.jsonl"
    cache.write_bytes(cache.read_bytes()[:-5])
    assert runs.read(models, VICTIM).state == "finished"
    judge.JudgeCache(cache).put({"key": "after", "reply": "90"})
    assert "after" in judge.JudgeCache(cache) and runs.read(models, VICTIM).state == "finished"


def test_a_run_training_now_may_end_in_a_metrics_line_being_written(store_with_runs, tmp_path):
    models = store_of(store_with_runs, tmp_path, VICTIM)
    folder = models / "runs" / VICTIM
    status = json.loads((folder / "status.json").read_text())
    with open(folder / "metrics.jsonl", "a") as metrics:
        metrics.write('{"kind": "step", "step": 5, "train_')  # the writer is half-way through a line
    runs.write_json(folder / "status.json", {**status, "state": "running", "pid": os.getpid(), "pid_started": None})
    runs.ACTIVE.add(VICTIM)
    try:
        record = runs.read(models, VICTIM)
        assert record.state == "running" and record.metrics()[-1]["step"] == 4
    finally:
        runs.ACTIVE.discard(VICTIM)
    assert runs.examine(models, VICTIM).state.startswith("damaged: metrics.jsonl: line ")  # once it has ended


def test_a_link_inside_the_run_folder_is_followed(store_with_runs, tmp_path):
    models = store_of(store_with_runs, tmp_path, VICTIM)
    folder = models / "runs" / VICTIM
    (folder / "data.json").rename(folder / "data-kept.json")
    (folder / "data.json").symlink_to("data-kept.json")
    assert runs.read(models, VICTIM).data()["records"] == len(small_dataset())


# ---------------------------------------------------------------- the app's start failures


def start_app(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "app.py", *args], cwd=ROOT, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=600)


def test_a_busy_port_is_one_line_that_names_it_and_exit_status_2(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = start_app("--port", str(port), "--models-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: port {port} on 127.0.0.1 is already in use (another program, or "
                                          "the app started twice): stop that program, or start the app on another "
                                          f"port (--port {port + 1}, say)."]


def test_a_model_store_that_is_a_file_is_one_line_and_exit_status_2(tmp_path):
    (tmp_path / "models").write_text("not a folder")
    result = start_app("--port", str(free_port()), "--models-dir", str(tmp_path / "models"))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: --models-dir {tmp_path / 'models'}: a file, not a folder; give a "
                                          "folder for the model store."]


def test_a_missing_auth_variable_is_one_line_and_exit_status_2():
    environment = {k: v for k, v in os.environ.items() if k != "PG_NO_SUCH_AUTH"}
    result = subprocess.run([sys.executable, "app.py", "--auth-env", "PG_NO_SUCH_AUTH"], cwd=ROOT, capture_output=True,
                            text=True, env=environment, stdin=subprocess.DEVNULL, timeout=600)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: --auth-env PG_NO_SUCH_AUTH: the environment variable PG_NO_SUCH_AUTH "
                                          "is not set or empty; set it to user:password"]


# ---------------------------------------------------------------- in the browser


@contextlib.contextmanager
def app_on(models: Path, tokenizer: Path, log: Path):
    """`python app.py` on the store `models`; yields its address once the app itself answers."""
    port = free_port()
    with open(log, "w") as output:
        process = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--models-dir", str(models),
                                    "--tokenizer", str(tokenizer)], cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
        url = f"http://127.0.0.1:{port}/"
        try:
            while True:
                assert process.poll() is None, log.read_text()[-3000:]
                with contextlib.suppress(OSError):  # the starting page answers first
                    if b"Starting&hellip;" not in urllib.request.urlopen(url, timeout=5).read():
                        break
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(0.5)
            yield url
        finally:
            process.terminate()
            process.wait()


@pytest.mark.slow
def test_in_the_browser_a_damaged_run_is_listed_and_refused_and_the_other_chats(store_with_runs, tiny_model_dir,
                                                                                tmp_path):
    from playwright.sync_api import expect, sync_playwright

    models = store_of(store_with_runs, tmp_path, HEALTHY, VICTIM)
    damage(models / "runs" / VICTIM / "status.json", "not UTF-8", tmp_path)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with app_on(models, tiny_model_dir, tmp_path / "app.log") as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(url)
        page.get_by_role("tab", name="Train").click()
        runs_table = page.locator("#runs-table")
        expect(runs_table).to_contain_text("damaged: status.json: not UTF-8 text (byte 0xff at position 1)")
        runs_table.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "damaged-store-runs.png"), full_page=True)

        page.get_by_role("tab", name="Chat").click()
        expect(page.locator("#chat-run input")).to_have_value(re.compile(f"^{HEALTHY} "))  # not the damaged one
        page.locator("#chat-run input").click()
        page.get_by_role("option", name=re.compile(f"^{VICTIM} · damaged: status.json")).click()
        expect(page.locator("#chat-run-info")).to_contain_text(f"Run {VICTIM} is damaged: status.json: not UTF-8")
        page.screenshot(path=str(SHOTS / "damaged-store-chat.png"), full_page=True)

        page.locator("#chat-run input").click()
        page.get_by_role("option", name=re.compile(f"^{HEALTHY} ")).click()
        expect(page.locator("#chat-run-info")).to_contain_text("test split")
        page.locator("#chat-message textarea").fill("Repeat the word apple.")
        page.locator("#chat-send").click()
        expect(page.locator("#chat-right [data-testid='bot']")).to_have_count(1)
        expect(page.locator("#chat-error")).to_be_empty()
        browser.close()

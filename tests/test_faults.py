"""What happens when the machine or the user gets in the way: unwritable folders, special files,
dead processes whose ids come back, leftovers of interrupted writes, run ids that point elsewhere,
and an app opened to the network."""

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from playground import data, runs, store
from playground.errors import DataError, PlaygroundError

ROOT = Path(__file__).resolve().parent.parent


def cli(*args):
    return subprocess.run([sys.executable, "-m", "playground", *args], cwd=ROOT, capture_output=True, text=True)


# ---------------------------------------------------------------- runs whose process is gone


def write_status(models, run_id, **status):
    writer = runs.RunWriter(models, run_id, {"settings": {}})
    saved = json.loads((writer.folder / "status.json").read_text())
    runs.write_json(writer.folder / "status.json", {**saved, **status})
    return writer.folder


def test_a_reused_process_id_does_not_bring_a_dead_run_back(tmp_path):
    """The process id in a run's status now belongs to another process (started at another time)."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        started = psutil.Process(other.pid).create_time()
        write_status(tmp_path, "alive", state="running", pid=other.pid, pid_started=started)
        write_status(tmp_path, "reused", state="running", pid=other.pid, pid_started=started - 3600)
        write_status(tmp_path, "older-file", state="running", pid=other.pid, pid_started=None)
        listed = {r.run_id: r.state for r in runs.list_runs(tmp_path)}
    finally:
        other.kill()
        other.wait()
    # an older status file without the start time is judged by the process id alone
    assert listed == {"alive": "running", "reused": "interrupted", "older-file": "running"}
    assert runs.read(tmp_path, "alive").state == "interrupted"  # now that the process is gone


def test_a_run_written_by_this_process_records_its_start_time(tmp_path):
    folder = runs.RunWriter(tmp_path, "mine", {"settings": {}}).folder
    status = json.loads((folder / "status.json").read_text())
    assert status["pid"] == os.getpid()
    assert status["pid_started"] == psutil.Process().create_time()


# ---------------------------------------------------------------- leftovers of interrupted writes


def test_leftover_temporary_folders_are_removed_at_start(tmp_path, caplog):
    from playground.manager import ModelManager

    old = time.time() - 3600
    conversion = tmp_path / f".{store.DEFAULT_NAME}-k2j3h4"  # a conversion killed an hour ago
    (conversion / "model.safetensors").parent.mkdir()
    (conversion / "model.safetensors").write_bytes(b"\0" * 1024)
    for path in (conversion / "model.safetensors", conversion):
        os.utime(path, (old, old))
    fresh = tmp_path / f".{store.DEFAULT_NAME}-a1b2c3"  # maybe another process converting right now
    fresh.mkdir()
    (fresh / "tokenizer.json").write_text("{}")
    failed = write_status(tmp_path, "killed-while-saving", state="running", pid=os.getpid(), pid_started=0.0)
    (failed / runs.SAVING / "adapter_model.safetensors").parent.mkdir()
    (failed / runs.SAVING / "adapter_model.safetensors").write_bytes(b"\0" * 1024)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        saving = write_status(tmp_path, "saving-elsewhere", state="running", pid=other.pid,
                              pid_started=psutil.Process(other.pid).create_time())
        (saving / runs.SAVING).mkdir()
        with caplog.at_level(logging.INFO):
            ModelManager(tmp_path)
    finally:
        other.kill()
        other.wait()
    assert not conversion.exists() and fresh.exists()
    assert not (failed / runs.SAVING).exists() and (failed / "status.json").exists()
    assert (saving / runs.SAVING).exists()  # its process is alive: it may be saving now
    logged = caplog.text
    assert str(conversion) in logged and str(failed / runs.SAVING) in logged
    assert str(fresh) not in logged and str(saving / runs.SAVING) not in logged


# ---------------------------------------------------------------- run ids


def test_run_ids_name_a_folder_directly_under_the_runs_folder(tmp_path):
    models = tmp_path / "store"
    inside = write_status(models, "good", state="finished")
    assert runs.check_run_id(models, "good") == "good"
    assert runs.check_run_id(models, str(inside)) == "good"  # a path to it is accepted too
    outside = write_status(tmp_path / "elsewhere", "x", state="finished")  # looks like a run
    for bad in ("../x", str(outside), "..", ".saving", ""):
        with pytest.raises(PlaygroundError, match="is not a run"):
            runs.check_run_id(models, bad)
    with pytest.raises(PlaygroundError, match="No run 'missing'"):
        runs.read(models, "missing")
    from playground import votes

    with pytest.raises(PlaygroundError, match="is not a run"):
        votes.save_vote(models, "../elsewhere/runs/x", "hi", "", "tuned", "left")
    assert not (outside / "votes.jsonl").exists()


def test_a_bad_run_id_is_refused_on_the_command_line(tmp_path):
    models = tmp_path / "store"
    write_status(models, "good", state="finished")
    outside = write_status(tmp_path / "elsewhere", "x", state="finished")
    cases = [("../elsewhere/runs/x", "is not a run"), (str(outside), "is not a run"), ("missing", "No run 'missing'")]
    for run, message in cases:
        result = cli("judge", "--run", run, "--no-judge", "--models-dir", str(models))
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert not (outside / "judge").exists()
    result = cli("chat", "--run", "../x", "--prompt", "hi", "--models-dir", str(models))
    assert result.returncode == 2 and "is not a run" in result.stderr, result.stderr


# ---------------------------------------------------------------- an unwritable runs folder


def test_an_unwritable_runs_folder_fails_the_run_and_the_next_start_works(tiny_model_dir, tmp_path):
    from playground.manager import ModelManager
    from playground.training import TrainConfig
    from tests_helpers import small_dataset

    (tmp_path / "runs").write_text("not a folder")  # so a run folder's parent is a file
    manager = ModelManager(tmp_path, tokenizer_spec=str(tiny_model_dir))
    config = TrainConfig(model=str(tiny_model_dir), max_steps=2, batch_size=2, probes=0, eval_every=0,
                         probe_every=0)
    job = manager.start_training(small_dataset(), config)
    job.thread.join(120)
    assert job.state == "failed", job.message
    assert "Cannot write the run folder" in job.message and str(tmp_path / "runs") in job.message
    assert runs.list_runs(tmp_path) == []  # the Train tab's list still works

    (tmp_path / "runs").unlink()  # the user fixes it; Start is not refused as "still training"
    job = manager.start_training(small_dataset(), config)
    job.thread.join(120)
    assert job.state == "finished", job.message
    assert runs.read(tmp_path, job.run_id).state == "finished"


def test_an_unwritable_runs_folder_is_an_error_on_the_command_line(tiny_model_dir, tmp_path):
    (tmp_path / "runs").write_text("not a folder")
    result = cli("train", "--data", "builtin", "--model", str(tiny_model_dir), "--max-steps", "1",
                 "--batch-size", "2", "--probes", "0", "--models-dir", str(tmp_path))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "error: Cannot write the run folder" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------- the server: uploads and who may use it


def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_server_refuses_uploads_over_the_file_limit_and_asks_for_a_password(tmp_path):
    import gradio as gr
    import httpx

    import app

    args = app.build_parser().parse_args(["--max-file-mb", "0.01", "--port", str(free_port()),
                                          "--models-dir", str(tmp_path)])
    assert app.launch_options(app.build_parser().parse_args([]), None, "")["max_file_size"] == 200 * 2**20
    for auth in (None, ("ada", "s3cret")):
        options = app.launch_options(args, auth, "")
        assert options["max_file_size"] == int(0.01 * 2**20) and options["auth"] == auth
        with gr.Blocks() as demo:
            gr.File()
        demo.launch(**options, prevent_thread_lock=True, quiet=True)
        try:
            url = f"http://127.0.0.1:{args.port}/gradio_api/upload"
            small = httpx.post(url, files={"files": ("small.json", b"[]" * 100)})
            large = httpx.post(url, files={"files": ("large.json", b" " * 20_000)})
        finally:
            demo.close()
        if auth is None:
            assert small.status_code == 200, small.text
            assert large.status_code == 413, large.text  # refused before it is stored
        else:
            assert small.status_code == large.status_code == 401


def test_auth_is_read_from_the_named_environment_variable():
    import app

    assert app.auth_from_env(None) is None
    assert app.auth_from_env("PG_AUTH", {"PG_AUTH": "ada:pa:ss"}) == ("ada", "pa:ss")
    for value, problem in [(None, "not set"), ("", "not set"), ("ada", "user:password"), (":pw", "user:password"),
                           ("ada:", "user:password")]:
        environ = {} if value is None else {"PG_AUTH": value}
        with pytest.raises(ValueError, match=problem):
            app.auth_from_env("PG_AUTH", environ)


def test_listening_beyond_this_machine_says_what_becomes_reachable():
    import app

    for host in ("127.0.0.1", "localhost", "::1"):
        assert app.exposure_warning(host, share=False, auth=None) is None
    warning = app.exposure_warning("0.0.0.0", share=False, auth=None)
    assert "model store" in warning and "Judge tab's host field" in warning and "--auth-env" in warning
    assert "a user and password are asked" in app.exposure_warning("0.0.0.0", share=False, auth=("a", "b"))
    assert app.exposure_warning("127.0.0.1", share=True, auth=None) is not None


def test_the_app_refuses_a_missing_auth_variable():
    env = {k: v for k, v in os.environ.items() if k != "PG_NO_SUCH_AUTH"}
    result = subprocess.run([sys.executable, "app.py", "--auth-env", "PG_NO_SUCH_AUTH"], cwd=ROOT,
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2 and "PG_NO_SUCH_AUTH is not set" in result.stderr


# ---------------------------------------------------------------- special files as datasets


def load_in_thread(path):
    """data.load(path) on a thread, so that a hang fails the test instead of stopping it."""
    outcome = {}

    def run():
        try:
            data.load(str(path))
        except DataError as exc:
            outcome["error"] = str(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), f"loading {path} hung"
    return outcome.get("error", "")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_a_device_is_refused_without_reading_it():
    message = load_in_thread("/dev/zero")
    assert message == "/dev/zero: is a device, not a regular file; give a .json, .jsonl, .csv or .parquet file"


def test_a_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path):
    pipe = tmp_path / "data.jsonl"
    os.mkfifo(pipe)
    assert "is a named pipe, not a regular file" in load_in_thread(pipe)


def test_a_file_is_read_with_a_byte_limit(tmp_path):
    from playground.data import read_limited

    path = tmp_path / "d.json"
    path.write_bytes(b" " * 3000)
    assert len(read_limited(path, max_mb=3000 / 2**20)) == 3000
    with pytest.raises(DataError, match="over the"):
        read_limited(path, max_mb=2000 / 2**20)


def test_a_refused_upload_is_deleted_but_nothing_outside_the_upload_folder(tmp_path):
    uploads = tmp_path / "uploads"
    upload = uploads / "3f2a9c" / "huge.json"
    upload.parent.mkdir(parents=True)
    upload.write_text("[]")
    mine = tmp_path / "mine.json"
    mine.write_text("[]")
    assert data.discard_upload(upload, uploads)
    assert not upload.exists() and not upload.parent.exists() and uploads.is_dir()
    for path in (mine, uploads / ".." / "mine.json"):
        assert not data.discard_upload(path, uploads)
    assert mine.exists()


def test_a_slow_first_page_does_not_stop_the_app(monkeypatch):
    """Gradio's launch() asked its own page once with a 3 s timeout and stopped the app on a loaded
    machine ("localhost is not accessible"); the app waits for a slow page and still fails fast on a
    refused connection."""
    import http.server

    import app
    from gradio import networking

    from tests_helpers import free_port

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            time.sleep(4)  # longer than Gradio's own 3 s
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        assert networking.url_ok(url) is False  # Gradio's check gives up
        monkeypatch.setattr(networking, "url_ok", networking.url_ok)  # put it back after the test
        app.wait_longer_for_the_first_page()
        assert networking.url_ok(url) is True
        assert networking.url_ok(f"http://127.0.0.1:{free_port()}/") is False  # nothing listens: no wait
    finally:
        server.shutdown()
        server.server_close()

"""The judge's safety: a user:password in the server's address is sent but never shown or saved; one
request's whole reply is bounded, even from a server that trickles it a byte at a time; the same
grading started twice at once is asked once (the second joins the first) and a key is cached once;
a bad address or limit is refused with a message naming it, the same in the app and the command line."""

import base64
import html
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from ollama_standin import Fault, OllamaStandin
from playground import cli, evaluation, judge
from playground.errors import PlaygroundError
from playground.judge import JudgeCache, JudgeItem, JudgeSettings
from tests_helpers import free_port

SECRET = "s3cret-pw"


def items(n, side="tuned"):
    return [JudgeItem(str(k), f"Instruction {k}", "", f"Reference {k}", f"{side} answer {k}", side)
            for k in range(1, n + 1)]


def responses_file(path, n=4):
    judge.write_responses(path, [{"instruction": f"Say {i}.", "input": "", "output": str(i),
                                  "base_response": f"base {i}", "tuned_response": str(i)} for i in range(n)])
    return path


# ---------------------------------------------------------------- a server that trickles


class Trickle:
    """A server that answers with a status line and headers, then one byte every `every` seconds and
    never an end: a client's timeout between two reads never fires. With `checks_answered`, the
    server checks (Ollama's /api/version and /api/tags, OpenAI's /v1/models) are answered at once."""

    def __init__(self, checks_answered=False, every=0.5):
        self.checks_answered, self.every = checks_answered, every
        self.stopping = threading.Event()
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                owner.requests += 1
                checks = {"/api/version": {"version": "0.12.6"},
                          "/api/tags": {"models": [{"name": "llama3:latest", "model": "llama3:latest",
                                                    "digest": "0" * 64, "size": 1}]},
                          "/v1/models": {"object": "list", "data": [{"id": "judge", "object": "model",
                                                                     "created": 0, "owned_by": "me"}]}}
                if owner.checks_answered and self.path in checks:
                    body = json.dumps(checks[self.path]).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "1000000")
                self.end_headers()
                try:
                    while not owner.stopping.is_set():
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        owner.stopping.wait(owner.every)
                except OSError:
                    pass  # the client gave up
                self.close_connection = True

            do_GET = do_POST = answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


JUDGES = {"ollama": "llama3", "openai": "judge"}


@pytest.mark.timeout(60)  # before the whole-request limit, a trickle kept a grading waiting forever
@pytest.mark.parametrize("api", list(JUDGES))
def test_a_server_trickling_its_reply_is_cut_at_the_timeout(api):
    with Trickle(checks_answered=True) as server:
        settings = JudgeSettings(api=api, host=server.url, model=JUDGES[api], timeout=1.5, retries=0, concurrency=1,
                                 backoff=0.01, deadline=600, give_up_after=10)
        judgments = judge.grade(items(2), settings)
    assert [(j.status, j.kind) for j in judgments] == [("error", "timeout")] * 2
    # "No complete answer ... within 1.5 s" (the whole reply's limit; on a loaded machine the client's own
    # timeout between two bytes may speak first, with the same limit)
    assert all("within 1.5 s" in j.error and server.url in j.error for j in judgments)
    assert server.requests == 2  # one each, not retried here (retries=0)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("api", list(JUDGES))
def test_checking_a_server_that_trickles_ends_with_a_clear_message(api):
    with Trickle() as server:
        status = judge.preflight(JudgeSettings(api=api, host=server.url, model=JUDGES[api], timeout=1.5))
    assert status.state in ("error", "server_down") and not status.ok
    assert server.url in status.message and "within 1.5 s" in status.message


@pytest.mark.timeout(60)
def test_the_check_in_the_judge_tab_ends_too():
    from playground.ui import judge_tab

    with Trickle() as server:
        message, pull = judge_tab.check_server(tab_server(server.url, timeout=1.5))
    assert "within 1.5 s" in message and "pg-error" in message


# ---------------------------------------------------------------- a password in the address


def with_password(url):
    return url.replace("http://", f"http://judge-user:{SECRET}@") + "/"


def test_a_password_in_the_address_is_sent_but_never_printed_or_saved(tmp_path, capsys):
    path = responses_file(tmp_path / "answers.json")
    with OllamaStandin(reply=lambda request: "70") as server:
        code = cli.main(["judge", "--responses", str(path), "--host", with_password(server.url)])
        out, err = capsys.readouterr()
    assert code == 0, err
    assert SECRET not in out + err and "judge-user" not in out + err
    assert "Tuned: average 70.0" in out and f"via ollama at {server.url}/;" in out
    expected = "Basic " + base64.b64encode(f"judge-user:{SECRET}".encode()).decode()
    assert server.authorizations and set(server.authorizations) == {expected}  # the server did get it
    written = [p for p in tmp_path.iterdir() if p != path]
    assert any(".scores-llama3-" in p.name for p in written) and any("judge-cache" in p.name for p in written)
    for file in written:
        assert SECRET not in file.read_text() and "judge-user" not in file.read_text(), file.name
    saved = json.loads(next(p for p in written if ".scores-" in p.name).read_text())
    assert saved["judge"]["host"] == f"{server.url}/"


@pytest.mark.parametrize("api", list(JUDGES))
def test_a_password_in_the_address_is_in_no_error(api, tmp_path, capsys):
    down = with_password(f"http://127.0.0.1:{free_port()}")
    settings = JudgeSettings(api=api, host=down, model=JUDGES[api], timeout=2, backoff=0.01, concurrency=1)
    status = judge.preflight(settings)
    judgments = judge.grade(items(2), settings)
    assert status.state == "server_down" and judgments[0].status == "error"
    messages = [status.message] + [j.error for j in judgments]
    with pytest.raises(PlaygroundError) as bad:
        JudgeSettings(api=api, host=f"http://judge-user:{SECRET}@[::1").check()
    messages.append(str(bad.value))
    if api == "openai":
        with pytest.raises(PlaygroundError) as refused:
            judge.pull(settings)
        messages.append(str(refused.value))
    path = responses_file(tmp_path / "answers.json", n=1)
    assert cli.main(["judge", "--responses", str(path), "--api", api, "--host", down]) == 2
    messages.append(capsys.readouterr().err)
    assert all(SECRET not in text and "judge-user" not in text for text in messages), messages
    assert down.replace(f"judge-user:{SECRET}@", "") in messages[0] and "error: " in messages[-1]


# ---------------------------------------------------------------- addresses and limits


def tab_server(host, timeout=120.0):
    defaults = JudgeSettings()
    return SimpleNamespace(api="ollama", host=host, model="llama3", key_env="", prompt="default", concurrency=2,
                           timeout=timeout, max_reply=defaults.max_reply_tokens, structured=False,
                           template=judge.DEFAULT_TEMPLATE)


BAD_HOSTS = [
    ("javascript:alert(1)", "must start with http:// or https:// (not javascript:)"),
    ("http://127.0.0.1:notaport", "has a port that is not a number from 1 to 65535 ('notaport')"),
    ("http://[::1", "is not a valid address: an IPv6 address must be written whole in brackets"),
]


@pytest.mark.parametrize("host, problem", BAD_HOSTS)
def test_a_bad_address_gets_the_same_clear_message_in_the_app_and_the_command_line(host, problem, tmp_path, capsys):
    from playground.ui import judge_tab

    expected = f"Judge settings: the server address {host!r} {problem}"
    with pytest.raises(PlaygroundError, match="Judge settings: the server address"):
        JudgeSettings(host=host).check()
    path = responses_file(tmp_path / "answers.json", n=1)
    assert cli.main(["judge", "--responses", str(path), "--host", host]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {expected}") and "Traceback" not in err
    message, pull = judge_tab.check_server(tab_server(host))
    assert html.escape(expected) in message and "pg-error" in message


@pytest.mark.parametrize("limit", ["-5", "0"])
def test_a_limit_below_one_is_refused_where_it_is_parsed(limit, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["judge", "--run", "any", "--limit", limit])
    assert exited.value.code == 2
    assert f"argument --limit: '{limit}' is not a whole number of at least 1" in capsys.readouterr().err
    with pytest.raises(PlaygroundError, match="at least 1"):
        evaluation.check_limit(int(limit))


# ---------------------------------------------------------------- two pages, one grading


def counting_scores():
    """A judge whose every reply differs: a prompt asked twice would change the figures."""
    replies = iter(range(10, 100))
    lock = threading.Lock()

    def reply(request):
        with lock:
            return str(next(replies))
    return reply


def twice_at_once(grade_one, grade_two):
    results, errors = [None, None], []

    def run(n, grade):
        try:
            results[n] = grade()
        except Exception as exc:  # pragma: no cover - shown by the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n, grade)) for n, grade in enumerate((grade_one, grade_two))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and all(results), errors
    return results


def cache_keys(path):
    return [json.loads(line)["key"] for line in path.read_text().splitlines()]


def test_the_same_grading_started_twice_at_once_asks_once_and_both_get_the_same_figures(tmp_path):
    path = responses_file(tmp_path / "answers.json")
    cache = tmp_path / "cache.jsonl"
    seen = [[], []]
    with OllamaStandin(reply=counting_scores(), latency=0.2) as server:
        settings = JudgeSettings(host=server.url, backoff=0.01, concurrency=2)
        one, two = twice_at_once(
            lambda: evaluation.grade_responses(path, settings, cache, on_progress=lambda f, t: seen[0].append(f)),
            lambda: evaluation.grade_responses(path, settings, cache, on_progress=lambda f, t: seen[1].append(f)))
        prompts = [request["messages"][0]["content"] for request in server.requests]
    assert len(prompts) == len(set(prompts)) == 8  # 4 examples, base and tuned: each asked once
    assert one.summary == two.summary and one.scores_path == two.scores_path
    assert one.summary["tuned"]["scored"] == 4
    assert seen[0] and seen[1] and seen[1][-1] == 1.0  # the page that joined saw the progress to the end
    keys = cache_keys(cache)
    assert len(keys) == len(set(keys)) == 8


def test_another_grading_on_the_same_cache_waits_for_the_first_and_asks_nothing_twice(tmp_path):
    path = responses_file(tmp_path / "answers.json")
    cache = tmp_path / "cache.jsonl"
    def reply(request):
        return "A" if "Response B" in request["messages"][0]["content"] else "60"

    with OllamaStandin(reply=reply, latency=0.1) as server:
        settings = JudgeSettings(host=server.url, backoff=0.01, concurrency=2)
        plain, pairwise = twice_at_once(lambda: evaluation.grade_responses(path, settings, cache),
                                        lambda: evaluation.grade_responses(path, settings, cache, pairwise=True))
        prompts = [request["messages"][0]["content"] for request in server.requests]
    assert len(prompts) == len(set(prompts)) == 8 + 8  # the scores once, and the pairwise questions in both orders
    assert plain.summary["tuned"] == pairwise.summary["tuned"]
    keys = cache_keys(cache)
    assert len(keys) == len(set(keys))


def test_a_stop_on_either_page_stops_the_grading_both_show(tmp_path):
    path = responses_file(tmp_path / "answers.json")
    with OllamaStandin(reply=lambda request: Fault("hang")) as server:
        settings = JudgeSettings(host=server.url, backoff=0.01, concurrency=2, timeout=600)
        first, second = threading.Event(), threading.Event()
        threading.Timer(0.5, second.set).start()  # only the second page presses Stop
        one, two = twice_at_once(lambda: evaluation.grade_responses(path, settings, None, stop=first),
                                 lambda: evaluation.grade_responses(path, settings, None, stop=second))
    assert one.summary == two.summary and one.summary["tuned"]["skipped"] == 4
    assert not first.is_set()


def test_the_cache_writes_a_key_once(tmp_path):
    path = tmp_path / "cache.jsonl"
    one, two = JudgeCache(path), JudgeCache(path)  # two gradings, or two processes, on the same file
    one.put({"key": "k", "status": "scored", "value": 70})
    two.put({"key": "k", "status": "scored", "value": 40})
    one.put({"key": "k", "status": "scored", "value": 10})
    two.put({"key": "other", "status": "scored", "value": 50})
    assert cache_keys(path) == ["k", "other"]
    assert two.get("k")["value"] == 70 and one.get("k")["value"] == 70
    assert JudgeCache(path).get("k")["value"] == 70

"""One registration adds a prompt style, an export format or a judge backend everywhere: the command
line's choices, the tab's choices, and the work itself. Each toy is defined once here and removed
after its test."""

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import gradio as gr
import pytest

from playground import batching, cli, judge, prompts, runs, store
from playground.data import Record
from playground.export import FORMATS, ExportFormat, ExportRequest, default_out, export_run, records, register_format
from playground.export.prompt_format import jinja_template, prompt_format
from playground.errors import PlaygroundError
from playground.generation import stop_ids
from playground.judge.backends import Preflight, Reply, default_host
from playground.manager import ModelManager
from playground.prompts import INPUT, INSTRUCTION, TEXT, Piece
from playground.ui import export_tab, judge_tab, prompts_tab
from playground.ui.common import Shared
from tests_helpers import small_dataset, train_tiny_run

RECORD = Record("Name a colour.", "dark", "Blue.")


def parsed(command: str, *args: str):
    """The command's options as the command line's parser reads them."""
    return cli.build_parser([command]).parse_args([command, *args])


def tab_choices(build, elem_id: str, models_dir) -> list[str]:
    """The values a tab's radio or dropdown offers, from the tab built in a Blocks app."""
    with gr.Blocks() as demo:
        shared = Shared(manager=ModelManager(models_dir), app=demo, dataset=gr.State(None),
                        record_index=gr.Number(value=0, render=False), tokenizer_spec=gr.State(store.DEFAULT),
                        style=gr.State("alpaca"), template=gr.State(prompts.DEFAULT_CUSTOM),
                        browser=gr.BrowserState({}), max_file_mb=1.0)
        with gr.Tab("tab") as tab:
            build(shared, tab)
    found = [block for block in demo.blocks.values() if getattr(block, "elem_id", None) == elem_id]
    assert len(found) == 1, elem_id
    return [value for _, value in found[0].choices]


# ------------------------------------------------------------ a prompt style


@pytest.fixture
def toy_style():
    style = prompts.register_style(prompts.literal_style(
        "toy", "Toy (Q: / A:)", (Piece(TEXT, "Q: "), Piece(INSTRUCTION), Piece(INPUT, " | "), Piece(TEXT, "\nA: ")),
        end_of_turn=("<end_of_turn>",)))
    yield style
    del prompts.STYLES[style.name]


def test_a_style_is_a_choice_of_every_command_that_takes_one(toy_style):
    assert parsed("prompt", "builtin", "--style", "toy").style == "toy"
    assert parsed("batch", "builtin", "--style", "toy").style == "toy"
    assert parsed("data", "check", "builtin", "--style", "toy").style == "toy"
    assert parsed("train", "--data", "builtin", "--style", "toy").style == "toy"


def test_a_style_is_a_choice_of_the_prompt_styles_tab(toy_style, tmp_path):
    assert tab_choices(lambda shared, tab: prompts_tab.build(shared), "prompt-style", tmp_path)[-1] == "toy"
    assert ("Toy (Q: / A:)", "toy") in prompts_tab.style_choices()


def test_a_style_renders_trains_stops_and_exports(toy_style, tiny_model_dir, default_tokenizer, tmp_path, capsys):
    tokenizer = store.load_tokenizer(str(tiny_model_dir))
    rendered = prompts.render(RECORD, "toy", tokenizer)
    assert rendered.training_text == "Q: Name a colour. | dark\nA: Blue.<|endoftext|>"
    assert rendered.header == "\nA: " and rendered.instruction == "Q: Name a colour. | dark"
    # the command line's prompt and batch
    assert cli.main(["prompt", "builtin", "--style", "toy", "--tokenizer", str(tiny_model_dir)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("Q: ") and "\nA: " in printed
    assert cli.main(["batch", "builtin", "--style", "toy", "--tokenizer", str(tiny_model_dir), "--batch-size", "2",
                     "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert all(tokenizer.decode(row["input_ids"]).startswith("Q: ") for row in rows)
    # a tiny run trains on it and keeps it
    dataset = small_dataset(4)
    batch = batching.training_batch(dataset.records, [0, 1], tokenizer, "toy", 2)
    assert all(tokenizer.decode(sample.ids).startswith("Q: Repeat the word") for sample in batch.samples)
    train_tiny_run(tiny_model_dir, tmp_path, "toy-run", dataset, max_steps=1, style="toy")
    assert runs.read(tmp_path, "toy-run").config.style == "toy"
    # generation stops at its end of turn; export writes its prompt in the chat template
    assert stop_ids(default_tokenizer, "toy") == [default_tokenizer.eos_token_id,
                                                  default_tokenizer.convert_tokens_to_ids("<end_of_turn>")]
    jinja = jinja_template(prompt_format("toy", tokenizer))
    message = {"role": "user", "content": RECORD.instruction, "input": RECORD.input}
    assert tokenizer.apply_chat_template([message], tokenize=False, chat_template=jinja) == rendered.prompt


# ------------------------------------------------------------ an export format


@pytest.fixture
def toy_format():
    def write_prompt(build):
        (build.work / "prompt.txt").write_text(build.found.render("{instruction}", "{input}"), encoding="utf-8")

    fmt = register_format(ExportFormat("toy", "Toy (the prompt as text)", write_prompt, ("prompt.txt",)))
    yield fmt
    del FORMATS[fmt.name]


def test_an_export_format_is_a_choice_of_the_command_line_and_the_export_tab(toy_format, tmp_path):
    assert parsed("export", "--run", "tiny-run", "--format", "toy").format == "toy"
    assert tab_choices(export_tab.build, "export-format", tmp_path)[-1] == "toy"


def test_an_export_format_writes_its_files_through_export_run(toy_format, tiny_run, tiny_model_dir, tmp_path):
    manager = ModelManager(tiny_run, tokenizer_spec=str(tiny_model_dir), dtype="float32")
    result = export_run(manager, ExportRequest(run_id="tiny-run", format="toy", out=tmp_path / "toy"))
    assert {entry.name for entry in result.files} == {"prompt.txt", "README.md", "export.json"}
    assert (result.folder / "prompt.txt").read_text() == prompts.render(
        Record("{instruction}", "{input}", ""), "alpaca").prompt
    assert result.parity is None and not result.notes and not result.ollama
    saved = records.read(tiny_run / "runs" / "tiny-run")[-1]
    assert saved["format"] == "toy" and saved["quant"] is None and saved["folder"] == str(result.folder)
    assert default_out(tiny_run, "tiny-run", "toy", "f16").name == "toy"


# ------------------------------------------------------------ a judge backend


class ToyBackend:
    """A protocol of one call: POST /grade {model, messages, options} -> {"reply": text}."""
    name = "toy"
    label = "Toy (POST /grade)"
    default_host = "http://127.0.0.1:9"
    host_env = ""

    @staticmethod
    def sent_options(settings):
        return {"seed": settings.seed}

    @staticmethod
    def model_name(model):
        return model.strip().lower()

    def __init__(self, settings):
        self.settings = settings

    def chat(self, messages, schema):
        body = {"model": self.model_name(self.settings.model), "messages": messages,
                "options": self.sent_options(self.settings)}
        request = urllib.request.Request(self.settings.host + "/grade", json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=self.settings.timeout) as response:
            return Reply(json.load(response)["reply"], None)

    def preflight(self):
        return Preflight("ok", f"The toy server at {self.settings.host} is ready.",
                         model=self.model_name(self.settings.model))

    def pull(self, on_progress):
        raise PlaygroundError("The toy protocol cannot download a model.")

    def transient(self, exc):
        return False

    def fatal(self, exc):
        return False

    def describe(self, exc):
        return f"The toy server failed: {exc}"

    def kind(self, exc):
        return type(exc).__name__

    def close(self):
        pass


class ToyServer:
    """The toy protocol on 127.0.0.1: every request grades 85; the bodies are kept in `requests`."""

    def __init__(self):
        requests = self.requests = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                requests.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
                body = json.dumps({"reply": "85"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def toy_backend():
    backend = judge.register_backend(ToyBackend)
    yield backend
    del judge.BACKENDS[backend.name]


@pytest.fixture
def toy_server():
    server = ToyServer()
    yield server
    server.close()


def test_a_judge_backend_is_a_choice_of_the_command_line_and_the_judge_tab(toy_backend, tmp_path):
    assert parsed("judge", "--api", "toy").api == "toy"
    assert tab_choices(judge_tab.build, "judge-api", tmp_path)[-1] == "toy"
    assert ("Toy (POST /grade)", "toy") in judge_tab.api_choices()


def test_a_judge_backend_s_facts_reach_the_settings_and_the_cache_key(toy_backend):
    settings = judge.JudgeSettings(api="toy", model=" Toy-Judge ")
    settings.check()
    assert default_host("toy") == "http://127.0.0.1:9"
    assert settings.model_name() == "toy-judge" and settings.request_options() == {"seed": 123}
    other = judge.JudgeSettings(api="ollama", model="toy-judge")
    assert judge.cache_key(settings, "score", "t") != judge.cache_key(other, "score", "t")


def test_a_judge_backend_grades_through_the_judge_command(toy_backend, toy_server, write, capsys):
    path = write("responses.json", [{"instruction": "Name a colour.", "input": "", "output": "Blue.",
                                     "model_response": "Blue."}])
    assert cli.main(["judge", "--responses", str(path), "--api", "toy", "--host", toy_server.url,
                     "--judge-model", "Toy-Judge"]) == 0
    assert "Tuned: average 85.0" in capsys.readouterr().out
    [(where, body)] = toy_server.requests
    assert where == "/grade" and body["model"] == "toy-judge" and body["options"] == {"seed": 123}
    assert "Blue." in body["messages"][0]["content"]

"""`judge`: base (or `--against` another model's) and tuned answers on a run's split (or a book-format
responses file) graded by a judge model on Ollama or an OpenAI-compatible server, and the averages printed."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .. import data, judge, runs, store
from ..judge.settings import PROMPTS
from ..errors import PlaygroundError
from . import agreement
from .numbers import positive_int, positive_number
from .options import add_against, add_file_options, checked_against, parse_mapping
from .progress import ProgressReport

DEFAULTS = judge.JudgeSettings()


def grade(args: argparse.Namespace) -> int:
    """Generate (or read) base and tuned answers, grade them with the judge, print the averages."""
    from .. import evaluation

    if args.agreement:
        return agreement.print_agreement(args)
    if args.run:  # before asking the judge server anything
        args.run = runs.check_run_id(args.models_dir, args.run)
    args.against = against_for_run(args)
    settings = judge_settings(args)
    status = None if args.no_judge else ready_server(settings, args.pull)
    progress = ProgressReport()
    if args.responses:
        path = Path(args.responses)
        cache = path.with_name(path.stem + ".judge-cache.jsonl")
    else:
        path = generate_answers(args, progress)
        cache = evaluation.judge_dir(args.models_dir, args.run) / "cache.jsonl"
    result = evaluation.grade_responses(path, settings, cache, pairwise=args.pairwise, on_progress=progress,
                                        use_judge=not args.no_judge, server=status, group_by=args.group_by)
    progress.close()
    for line in evaluation.summary_lines(result.summary, evaluation.judge_facts(settings, status, not args.no_judge),
                                         result.against):
        print(line)
    print(f"responses: {path}")
    print(f"scores: {result.scores_path}")
    return 0


def against_for_run(args: argparse.Namespace) -> str:
    """The model `--against` names (`model_refs` text), checked; another than the base only with --run."""
    against = checked_against(args.models_dir, args.against)
    if against != "base" and (args.responses or not args.run):
        raise PlaygroundError("--against needs --run: it names the model whose answers are generated beside the run's.")
    return against


def judge_settings(args: argparse.Namespace) -> judge.JudgeSettings:
    settings = judge.JudgeSettings(model=args.judge_model, api=args.api, api_key_env=args.api_key_env or "",
                                   prompt=args.prompt, concurrency=args.concurrency, structured=args.structured,
                                   timeout=args.timeout, deadline=args.deadline, give_up_after=args.give_up_after,
                                   max_reply_tokens=args.max_reply_tokens)
    if args.host:
        settings.host = args.host
    settings.check()
    return settings


def ready_server(settings: judge.JudgeSettings, pull: bool) -> Any:
    """The judge server's preflight, after pulling the model when asked; an error unless it can grade."""
    status = judge.preflight(settings)
    if status.state == "model_missing" and pull:
        judge.pull(settings)
        status = judge.preflight(settings)
    if not status.ok:
        raise PlaygroundError(status.message)
    return status


def generate_answers(args: argparse.Namespace, progress: ProgressReport) -> Path:
    """The run's answers and the compared model's (`--against`) on its split, in a responses file."""
    from .. import evaluation
    from ..generation import GenerationSettings
    from ..manager import ModelManager

    if not args.run:
        raise PlaygroundError("give --run RUN (to generate answers) or --responses FILE (to grade a file)")
    given = (data.load(args.data, parse_mapping(args.mapping), args.max_file_mb, args.max_records)
             if args.data else None)
    path = evaluation.generate_responses(ModelManager(args.models_dir), args.run, args.split, args.limit,
                                         GenerationSettings(max_new_tokens=args.max_new_tokens),
                                         on_progress=progress, dataset=given, answers=args.answers,
                                         against=args.against)
    note = json.loads((path.parent / "grading.json").read_text(encoding="utf-8")).get("note")
    if note:
        print(f"note: {note}", file=sys.stderr)
    return path


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("judge", help="grade base and tuned answers with a Llama 3 judge on Ollama")
    add_answer_options(parser)
    add_server_options(parser)
    parser.add_argument("--models-dir", type=Path, default=store.MODELS_DIR)
    agreement.add_arguments(parser)
    parser.set_defaults(func=grade)


def add_answer_options(parser: argparse.ArgumentParser) -> None:
    """Which answers are graded: a run's, generated on its split, or a responses file's."""
    parser.add_argument("--run", help="a run id (a folder under MODELS_DIR/runs/): generate its base and tuned "
                                      "answers on a split")
    add_against(parser, "whose answers stand beside the run's (with --run)")
    parser.add_argument("--responses", help="grade this book-format responses file instead of generating")
    parser.add_argument("--split", choices=["train", "validation", "test"], default="test")
    parser.add_argument("--limit", type=positive_int, default=20, help="how many examples of the split (at least 1)")
    parser.add_argument("--data", help="the run's dataset, when it cannot be found where it was loaded from "
                                       "(refused unless its content is the same)")
    add_file_options(parser)
    parser.add_argument("--max-new-tokens", type=positive_int, default=64)
    parser.add_argument("--answers", choices=["playground", "book"], default="playground",
                        help="book: prompt without the response header, up to 256 new tokens, '### Response:' "
                             "removed, as the book's chapter 7 script asks for test answers")


def host_help(api: str) -> str:
    """Where a protocol's server is by default, as --help says it: "$OLLAMA_HOST or http://..."."""
    backend = judge.BACKENDS[api]
    return (f"${backend.host_env} or " if backend.host_env else "") + backend.default_host


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """The judge: its server, model, prompt, and how it is asked."""
    parser.add_argument("--api", choices=list(judge.BACKENDS), default=DEFAULTS.api,
                        help="the server's protocol: " + "; ".join(f"{name}: {backend.label}"
                                                                   for name, backend in judge.BACKENDS.items()))
    parser.add_argument("--host", help=f"the judge server (default: {host_help(DEFAULTS.api)}); a user:password "
                                       "in it is sent to the server, never printed or saved")
    parser.add_argument("--api-key-env", help="environment variable holding an API key (the key is never stored)")
    parser.add_argument("--judge-model", default=DEFAULTS.model, help="the model's name on the server, e.g. llama3:70b")
    parser.add_argument("--prompt", choices=list(PROMPTS), default=DEFAULTS.prompt,
                        help="book: ollama_evaluate.py's prompt and options exactly (temperature 0, seed 123, "
                             "num_ctx 2048)")
    parser.add_argument("--group-by", default="task", help="record field whose values get their own averages")
    parser.add_argument("--concurrency", type=positive_int, default=DEFAULTS.concurrency, help="requests in flight")
    parser.add_argument("--timeout", type=positive_number, default=DEFAULTS.timeout,
                        help="seconds for one request to the server, its whole reply included (the server check: "
                             "at most 10)")
    parser.add_argument("--deadline", type=positive_number, default=DEFAULTS.deadline,
                        help="seconds for the whole grading; what is not graded by then is skipped (asked next time)")
    parser.add_argument("--give-up-after", type=positive_int, default=DEFAULTS.give_up_after,
                        help="failed requests in a row before nothing more is asked")
    parser.add_argument("--max-reply-tokens", type=positive_int, default=DEFAULTS.max_reply_tokens,
                        help="the judge's reply is cut after this many tokens (a small judge may ramble)")
    parser.add_argument("--structured", action="store_true", help="ask for JSON {reasoning, score}")
    parser.add_argument("--pairwise", action="store_true",
                        help="also compare the two answers (base, or --against's, and tuned) in both orders")
    parser.add_argument("--pull", action="store_true", help="pull the judge model when it is missing")
    parser.add_argument("--no-judge", action="store_true", help="reference metrics only; no server needed")

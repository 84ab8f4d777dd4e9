"""Command line beside the UI, on the same functions: `python -m playground --help`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import batching, checkpoints, data, data_checks, prompts, run_data, runs, store, training
from .errors import PlaygroundError


def parse_mapping(text: str | None) -> dict[str, str] | None:
    """`instruction=question,output=answer` -> {"instruction": "question", "output": "answer"}."""
    if not text:
        return None
    mapping = {}
    for part in text.split(","):
        name, sep, column = part.partition("=")
        if not sep or not name.strip() or not column.strip():
            raise PlaygroundError(f"--mapping: expected field=column pairs separated by commas, got {part!r}")
        mapping[name.strip()] = column.strip()
    return mapping


def load_dataset(args: argparse.Namespace) -> data.Dataset:
    return data.load(args.path, parse_mapping(args.mapping), args.max_file_mb, args.max_records,
                     skip_bad_rows=args.skip_bad_rows)


def print_skipped(dataset: data.Dataset) -> None:
    """Every row left out by --skip-bad-rows, with its reason (on stderr)."""
    for _, why in dataset.skipped:
        print(f"skipped: {why}", file=sys.stderr)
    if dataset.skipped:
        print(f"skipped {len(dataset.skipped)} bad row(s); loaded {len(dataset)}", file=sys.stderr)


def cmd_data_validate(args: argparse.Namespace) -> int:
    dataset = load_dataset(args)
    print_skipped(dataset)
    sizes = dataset.splits(seed=args.seed, order=args.split_order).sizes()
    print(f"{dataset.source}: {len(dataset)} records, {dataset.with_input} with an input")
    print(f"splits ({args.split_order}): train {sizes['train']}, validation {sizes['validation']}, test {sizes['test']}")
    for row, first in dataset.duplicates[:20]:
        print(f"warning: record {row} repeats the instruction and input of record {first}")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    """Findings for a dataset trained with the given settings; outputs may be empty here, to be reported."""
    dataset = data.load(args.path, parse_mapping(args.mapping), args.max_file_mb, args.max_records,
                        empty_outputs=True, skip_bad_rows=args.skip_bad_rows)
    print_skipped(dataset)
    tokenizer = load_tokenizer(args.tokenizer)
    settings = data_checks.CheckSettings(style=args.style, template=args.template, max_length=args.max_length or None,
                                         mask_instruction=mask_arg(args), split_seed=args.seed,
                                         split_order=args.split_order)
    report = data_checks.check(dataset, tokenizer, settings)
    if args.json:
        print(json.dumps({"source": dataset.source, **report.to_json()}, ensure_ascii=False))
    else:
        print(f"{dataset.source}:")
        for line in data_checks.lines(report):
            print(line)
    return 0


def cmd_prompt(args: argparse.Namespace) -> int:
    dataset = load_dataset(args)
    if not 0 <= args.index < len(dataset):
        raise PlaygroundError(f"--index {args.index} is out of range: the dataset has {len(dataset)} records")
    tokenizer = load_tokenizer(args.tokenizer)
    rendered = prompts.render(dataset.records[args.index], args.style, tokenizer, args.template)
    sys.stdout.write(rendered.training_text + "\n")
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    dataset = load_dataset(args)
    print_skipped(dataset)
    tokenizer = load_tokenizer(args.tokenizer)
    split = getattr(dataset.splits(seed=args.seed, order=args.split_order), args.split)
    batch = batching.training_batch(dataset.records, split, tokenizer, args.style, args.batch_size,
                                    args.number, args.max_length, mask_arg(args),
                                    args.group_by_length, args.seed, args.template, drop_last=args.drop_last)
    view = batching.describe(batch)
    rows = [{"index": r.index, "input_ids": r.input_ids, "target_ids": r.target_ids,
             "tokens": batching.token_text(tokenizer, r.input_ids), "kind": r.kinds,
             "truncated_ids": r.truncated_ids} for r in view.rows]
    summary = {"width": view.width, "real_tokens": view.real_tokens, "trained_tokens": view.trained_tokens,
               "computed_tokens": view.computed_tokens, "padding_fraction": round(view.padding_fraction, 4)}
    if args.json:
        print(json.dumps({**summary, "rows": rows}, ensure_ascii=False))
    else:
        print(batch_text(view, tokenizer))
    return 0


KIND_CODES = {"prompt": "prompt", "prompt_masked": "masked", "response": "resp", "eos": "eos", "pad": "pad"}


def batch_text(view: batching.BatchView, tokenizer: object, width: int = 100) -> str:
    """Each sample as lines of positions: the input token over its target and what happens to it."""
    out = []
    for number, row in enumerate(view.rows, start=1):
        trained = sum(1 for t in row.target_ids if t != batching.IGNORE_INDEX)
        out.append(f"sample {number} · record #{row.index} · {trained} trained targets"
                   + (f" · {len(row.truncated_ids)} tokens truncated" if row.truncated_ids else ""))
        inputs, following = batching.token_text(tokenizer, row.input_ids), batching.token_text(tokenizer, row.next_ids)
        cells = [(str(p), inputs[p], following[p] if p < len(following) else "·", KIND_CODES[kind])
                 for p, kind in enumerate(row.kinds)]
        line: list[tuple[str, ...]] = []
        for cell in cells + [None]:
            size = sum(max(map(len, c)) + 1 for c in line)
            if line and (cell is None or size + max(map(len, cell)) + 8 > width):
                for label, part in zip(("pos", "input", "target", "kind"), zip(*line)):
                    out.append((f"  {label:<7}" + "".join(t.ljust(max(map(len, c)) + 1) for t, c in zip(part, line))).rstrip())
                out.append("")
                line = []
            if cell is not None:
                line.append(cell)
    out.append(f"batch {len(view.rows)} × {view.width} · {view.real_tokens} real tokens · {view.trained_tokens} "
               f"trained targets · {view.computed_tokens} computed positions · {view.padding_fraction:.1%} padding")
    out.append("kind: prompt/resp/eos trained; masked and pad are -100 (ignored by the loss)")
    return "\n".join(out)


def mask_arg(args: argparse.Namespace) -> str | None:
    """--mask NAME, else --[no-]mask-instruction (True: "prompt"), else None (not given)."""
    if getattr(args, "mask", None):
        return args.mask
    if args.mask_instruction is None:
        return None
    return batching.mask_mode(args.mask_instruction)


def load_tokenizer(spec: str, models_dir: Path | None = None) -> object:
    """A tokenizer by name: the book's GPT-2 through tiktoken, else `store.load_tokenizer`."""
    from . import tiktoken_tokenizer

    if spec == tiktoken_tokenizer.NAME:
        return tiktoken_tokenizer.load()
    return store.load_tokenizer(spec, models_dir)


def cmd_train(args: argparse.Namespace) -> int:
    """One run in the foreground; under `accelerate launch` each process trains its share of batches."""
    from accelerate import Accelerator

    if args.resume:
        return resume_run(args)
    config = training.TrainConfig(**training.PRESETS[args.preset]) if args.preset else training.TrainConfig()
    overrides = {"model": args.model, "method": args.method, "style": args.style, "template": args.template,
                 "batch_size": args.batch_size, "lr": args.lr, "max_length": args.max_length,
                 "grad_accum": args.grad_accum, "seed": args.seed, "split_seed": args.split_seed,
                 "split_order": args.split_order, "mask": mask_arg(args), "drop_last": args.drop_last,
                 "eval_every": args.eval_every, "checkpoint_every": args.checkpoint_every,
                 "keep_checkpoints": args.keep_checkpoints, "probe_every": args.probe_every, "probes": args.probes}
    for name, value in overrides.items():
        if value is not None:
            setattr(config, name, value)
    if args.group_by_length is not None:
        config.group_by_length = args.group_by_length
    config.mask_instruction = config.mask == "prompt"
    if getattr(args, "out", None):
        print("warning: --out is deprecated; use --models-dir", file=sys.stderr)
        args.models_dir = args.out
    if args.max_steps is not None or args.epochs is not None:
        config.max_steps, config.epochs = args.max_steps, args.epochs or 1.0
    config.check()
    dataset = data.load(args.data, parse_mapping(args.mapping), args.max_file_mb, args.max_records,
                        skip_bad_rows=args.skip_bad_rows)
    print_skipped(dataset)
    if args.estimate:
        return print_estimate(args, dataset, config)
    accelerator = Accelerator(cpu=args.device == "cpu")
    run_id = runs.new_run_id(args.models_dir, config.method) if accelerator.is_main_process else "worker"
    return train_in_foreground(args, accelerator, dataset, config, broadcast_text(accelerator, run_id))


def resume_run(args: argparse.Namespace) -> int:
    """`train --resume RUN`: the run goes on from its latest checkpoint with its own settings and data."""
    from accelerate import Accelerator

    record = runs.read(args.models_dir, args.resume)
    if record.state in ("finished", "running"):
        raise PlaygroundError(f"Run {args.resume} is {record.state}; only a stopped, interrupted or failed run "
                              "can be resumed.")
    checkpoint = checkpoints.latest(record.folder)
    if checkpoint is None:
        raise PlaygroundError(f"Run {args.resume} has no checkpoint to resume from.")
    found = run_data.load(args.models_dir, record)
    if found.note:
        print(f"note: {found.note}", file=sys.stderr)
    print(f"resuming {args.resume} at step {checkpoint.step} with its own settings and data", file=sys.stderr)
    return train_in_foreground(args, Accelerator(cpu=args.device == "cpu"), found.dataset,
                               training.TrainConfig.from_dict(record.settings), record.run_id, checkpoint)


def train_in_foreground(args: argparse.Namespace, accelerator: object, dataset: data.Dataset,
                        config: training.TrainConfig, run_id: str, resume: checkpoints.Checkpoint | None = None) -> int:
    from .modeling import pick_dtype
    from .weights import Weights

    dtype = pick_dtype(accelerator.device, args.dtype, store.model_type(config.model, args.models_dir))
    tokenizer = store.load_tokenizer(config.model, args.models_dir)
    base = Weights(store.load_model(config.model, args.models_dir, dtype=dtype).to(accelerator.device))
    side = training.prepare_model(base, config, run_id, args.models_dir, dtype, accelerator.device, resume)

    def print_event(event: training.Event) -> None:
        if not accelerator.is_main_process:
            return
        if event.kind == "step":
            print(json.dumps({"step": event.step, "train_loss": event.values["train_loss"],
                              "tokens_per_s": event.values["tokens_per_s"]}), flush=True)
        elif event.kind == "eval" and event.values.get("val_loss") is not None:
            print(json.dumps({"step": event.step, "val_loss": round(event.values["val_loss"], 4)}), flush=True)
        elif event.kind == "probe" and args.show_probes:
            for probe in event.values["probes"]:
                print(json.dumps({"step": event.step, "probe": probe["instruction"], "answer": probe["answer"]}),
                      flush=True)

    state, message, _ = training.run_training(side, tokenizer, dataset, config, args.models_dir, run_id,
                                              on_event=print_event, accelerator=accelerator, resume=resume)
    if accelerator.is_main_process:
        print(f"error: {message}" if state == "failed" else message, file=sys.stderr)
        if (runs.runs_dir(args.models_dir) / run_id).is_dir():
            print(runs.runs_dir(args.models_dir) / run_id)
    return 0 if state in ("finished", "stopped") else 2


def print_estimate(args: argparse.Namespace, dataset: data.Dataset, config: training.TrainConfig) -> int:
    """`train --estimate`: memory, time and the data's problems for these settings; nothing is trained."""
    from . import estimate
    from .manager import ModelManager

    manager = ModelManager(args.models_dir, device=args.device, dtype=args.dtype)
    splits = dataset.splits(seed=config.split_seed, order=config.split_order)
    steps = training.total_steps_for(config, len(splits.train))
    print(estimate.describe(estimate.for_settings(manager, dataset, config, steps, splits.train)))
    report = data_checks.check(dataset, manager.tokenizer(config.model), data_checks.CheckSettings.for_training(config))
    problems = report.problems()
    print(f"Data check: {len(problems)} kind{'s' * (len(problems) != 1)} of problem with these settings.")
    for finding in problems:
        print(f"  {finding.title}: {finding.count:,} ({finding.advice})")
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    """Base and tuned answers to one prompt, from one copy of the base weights."""
    import psutil

    from .generation import GenerationSettings, generate
    from .manager import ModelManager

    args.run = runs.check_run_id(args.models_dir, args.run)
    manager = ModelManager(args.models_dir)
    record = runs.read(args.models_dir, args.run)
    spec = record.settings.get("model", store.DEFAULT)
    manager.model(spec)
    process = psutil.Process()
    rss_base = process.memory_info().rss
    before = manager.memory_report()
    tuned, _ = manager.tuned_side(args.run, args.checkpoint)
    after = manager.memory_report()
    rss_both = process.memory_info().rss
    base = manager.base_side(spec)
    tokenizer = manager.tokenizer(spec)
    style = record.settings.get("style", "alpaca")
    prompt = prompts.conversation([], args.prompt, style, tokenizer, record.settings.get("template"), args.raw,
                                  input_text=args.input or "")
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, seed=args.seed)
    base_answer, tuned_answer = generate([(base, prompt), (tuned, prompt)], tokenizer, style, settings)
    print(f"Base:\n{base_answer}\n\nTuned:\n{tuned_answer}")
    alone = before["base"]
    both = after["base"] + after["adapters"] + after["full_copies"]
    print(f"memory (parameters): base alone {alone / 2**20:,.1f} MiB, base + tuned {both / 2**20:,.1f} MiB "
          f"({both / alone:.3f}x); process RSS {rss_base / 2**20:,.0f} MiB -> {rss_both / 2**20:,.0f} MiB "
          f"({rss_both / rss_base:.3f}x)", file=sys.stderr)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """Per-token probabilities, losses and KL of base and tuned on one text; or loss by task family."""
    from . import inspection
    from .manager import ModelManager

    args.run = runs.check_run_id(args.models_dir, args.run)
    manager = ModelManager(args.models_dir)
    if args.families:
        families = inspection.family_losses(manager, args.run, args.split, args.limit)
        if args.json:
            print(json.dumps([vars(f) for f in families], ensure_ascii=False))
            return 0
        print(f"{'task family':<28} {'records':>7} {'tokens':>7} {'base loss':>10} {'tuned loss':>10}")
        for f in families:
            print(f"{f.family[:28]:<28} {f.records:>7} {f.tokens:>7} {f.base_loss:>10.3f} {f.tuned_loss:>10.3f}")
        return 0
    if (args.instruction or args.input) and args.reference is None:
        raise PlaygroundError("--instruction needs --reference: the answer both models read, token by token.")
    if args.reference is not None:
        typed = data.Record(args.instruction or "", args.input or "", args.reference)
        result = inspection.inspect_record(manager, args.run, typed)
    else:
        result = inspection.inspect_example(manager, args.run, args.split, args.index)
    if args.json:
        for row in result.tokens:
            print(json.dumps(row.as_row(), ensure_ascii=False))
        return 0
    print(f"{result.source}: {len(result.tokens)} response tokens" + (" (cut at the run's max length)"
                                                                        if result.truncated else ""))
    print(f"{'token':<16} {'base p':>8} {'tuned p':>8} {'base loss':>10} {'tuned loss':>10} {'KL':>8}")
    for row in result.tokens:
        print(f"{row.token[:16]:<16} {row.base_prob:>8.4f} {row.tuned_prob:>8.4f} {row.base_loss:>10.3f} "
              f"{row.tuned_loss:>10.3f} {row.kl:>8.3f}")
    for side, totals in result.totals.items():
        shown = {k: "-" if v is None else f"{v:.3f}" for k, v in totals.items()}
        print(f"{side}: mean loss on prompt tokens {shown['prompt_loss']}, on response tokens {shown['response_loss']}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Runs side by side: final figures and the settings that differ, from what each run recorded."""
    from . import comparison

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


def cmd_judge(args: argparse.Namespace) -> int:
    """Generate (or read) base and tuned answers, grade them with the judge, print the averages."""
    from . import evaluation, judge
    from .generation import GenerationSettings
    from .manager import ModelManager

    if args.run:  # before asking the judge server anything
        args.run = runs.check_run_id(args.models_dir, args.run)
    settings = judge.JudgeSettings(model=args.judge_model, api=args.api, api_key_env=args.api_key_env or "",
                                   prompt=args.prompt, concurrency=args.concurrency, structured=args.structured,
                                   timeout=args.timeout, deadline=args.deadline, give_up_after=args.give_up_after)
    if args.host:
        settings.host = args.host
    settings.check()
    status = None
    if not args.no_judge:
        status = judge.preflight(settings)
        if status.state == "model_missing" and args.pull:
            judge.pull(settings)
            status = judge.preflight(settings)
        if not status.ok:
            raise PlaygroundError(status.message)
    progress = ProgressReport()

    if args.responses:
        path = Path(args.responses)
        cache = path.with_name(path.stem + ".judge-cache.jsonl")
    else:
        if not args.run:
            raise PlaygroundError("give --run RUN (to generate answers) or --responses FILE (to grade a file)")
        given = (data.load(args.data, parse_mapping(args.mapping), args.max_file_mb, args.max_records)
                 if args.data else None)
        manager = ModelManager(args.models_dir)
        path = evaluation.generate_responses(manager, args.run, args.split, args.limit,
                                             GenerationSettings(max_new_tokens=args.max_new_tokens),
                                             on_progress=progress, dataset=given, answers=args.answers)
        note = json.loads((path.parent / "grading.json").read_text(encoding="utf-8")).get("note")
        if note:
            print(f"note: {note}", file=sys.stderr)
        cache = evaluation.judge_dir(args.models_dir, args.run) / "cache.jsonl"
    result = evaluation.grade_responses(path, settings, cache, pairwise=args.pairwise, on_progress=progress,
                                        use_judge=not args.no_judge, server=status, group_by=args.group_by)
    progress.close()
    for line in evaluation.summary_lines(result.summary, evaluation.judge_facts(settings, status, not args.no_judge)):
        print(line)
    print(f"responses: {path}")
    print(f"scores: {result.scores_path}")
    return 0


class ProgressReport:
    """A tqdm bar on a terminal; elsewhere (a log file, a pipe) one plain line per change of message."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=100, file=sys.stderr, bar_format="{percentage:3.0f}%|{bar:30}| {desc}") \
            if sys.stderr.isatty() else None
        self.last = ""

    def __call__(self, fraction: float, text: str) -> None:
        if self.bar is not None:
            self.bar.n = round(fraction * 100)
            self.bar.set_description_str(text)
            self.bar.refresh()
        elif text != self.last:
            print(f"{fraction:4.0%} {text}", file=sys.stderr, flush=True)
            self.last = text

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def quiet_libraries() -> None:
    """No "Loading weights" bars or deprecation notices from transformers on the command line."""
    import warnings

    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")


def broadcast_text(accelerator: object, text: str) -> str:
    """The main process's run id for every process (they share one run folder)."""
    from accelerate.utils import broadcast_object_list

    if getattr(accelerator, "num_processes", 1) == 1:
        return text
    values = [text]
    broadcast_object_list(values, from_process=0)
    return values[0]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m playground", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def add_source(p: argparse.ArgumentParser) -> None:
        p.add_argument("path", help="dataset file, URL, Hugging Face dataset id, or 'builtin'")
        p.add_argument("--mapping", help="column mapping, e.g. instruction=question,output=answer")
        p.add_argument("--max-file-mb", type=float, default=data.DEFAULT_MAX_MB)
        p.add_argument("--max-records", type=int, default=data.DEFAULT_MAX_RECORDS, help="most records accepted")
        p.add_argument("--seed", type=int, default=123, help="split and shuffle seed")
        add_book_data_options(p)

    def add_book_data_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--split-order", choices=list(data.SPLIT_ORDERS), default="shuffled",
                       help="shuffled with the split seed, or book: in file order, as the book slices it")
        p.add_argument("--skip-bad-rows", action="store_true",
                       help="load the good rows of a file with bad ones and list each bad row with its reason")

    def add_style(p: argparse.ArgumentParser) -> None:
        p.add_argument("--style", choices=prompts.STYLES, default="alpaca")
        p.add_argument("--template", help="custom template with {instruction}, {input}, {output}")
        p.add_argument("--tokenizer", default=store.DEFAULT,
                       help="'default', a Hugging Face id or a folder, or gpt2-tiktoken (the book's GPT-2 tokenizer)")

    mask_help = ("which prompt targets are -100: none; prompt (the whole prompt, response header included); "
                 "instruction (instruction and input only, the book's exercise 7.2)")
    data_cmd = commands.add_parser("data", help="dataset commands").add_subparsers(dest="action", required=True)
    validate = data_cmd.add_parser("validate", help="check a dataset; print record count and split sizes")
    add_source(validate)
    validate.set_defaults(func=cmd_data_validate)
    check = data_cmd.add_parser("check", help="find problems in a dataset for the given training settings")
    add_source(check)
    add_style(check)
    check.add_argument("--split-seed", dest="seed", type=int, help="the split seed training will use (default 123)")
    check.add_argument("--max-length", type=int, default=training.TrainConfig().max_length,
                       help="training's max length (default %(default)s; 0: no truncation)")
    check.add_argument("--mask-instruction", action=argparse.BooleanOptionalAction, default=False,
                       help="the same as --mask prompt")
    check.add_argument("--mask", choices=list(batching.MASKS), help=mask_help)
    check.add_argument("--json", action="store_true", help="print the findings as JSON")
    check.set_defaults(func=cmd_data_check)

    prompt = commands.add_parser("prompt", help="print one record's training text in a style")
    add_source(prompt)
    add_style(prompt)
    prompt.add_argument("--index", type=int, default=0)
    prompt.set_defaults(func=cmd_prompt)

    batch = commands.add_parser("batch", help="collate one training batch and show its targets")
    add_source(batch)
    add_style(batch)
    batch.add_argument("--batch-size", type=int, default=8)
    batch.add_argument("--max-length", type=int)
    batch.add_argument("--mask-instruction", action=argparse.BooleanOptionalAction, default=False,
                       help="the same as --mask prompt")
    batch.add_argument("--mask", choices=list(batching.MASKS), help=mask_help)
    batch.add_argument("--drop-last", action="store_true", help="leave out the last, smaller batch of the epoch")
    batch.add_argument("--group-by-length", action=argparse.BooleanOptionalAction, default=False)
    batch.add_argument("--split", choices=["train", "validation", "test"], default="train")
    batch.add_argument("--number", type=int, default=0, help="which batch of the epoch")
    batch.add_argument("--json", action="store_true", help="print the batch as JSON")
    batch.set_defaults(func=cmd_batch)

    train = commands.add_parser("train", help="fine-tune a model; one JSON line per logged step")
    train.add_argument("--data", default="builtin", help="dataset file, URL, hub id, or 'builtin'")
    train.add_argument("--mapping", help="column mapping, e.g. instruction=question,output=answer")
    train.add_argument("--max-file-mb", type=float, default=data.DEFAULT_MAX_MB)
    train.add_argument("--max-records", type=int, default=data.DEFAULT_MAX_RECORDS, help="most records accepted")
    train.add_argument("--model", help="'default', a Hugging Face id or a folder")
    train.add_argument("--method", choices=["lora", "full"])
    train.add_argument("--preset", choices=list(training.PRESETS), help="start from a preset's settings")
    steps = train.add_mutually_exclusive_group()
    steps.add_argument("--max-steps", type=int)
    steps.add_argument("--epochs", type=float)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--grad-accum", type=int)
    train.add_argument("--lr", type=float)
    train.add_argument("--max-length", type=int)
    train.add_argument("--style", choices=prompts.STYLES)
    train.add_argument("--template", help="custom template with {instruction}, {input}, {output}")
    train.add_argument("--mask-instruction", action=argparse.BooleanOptionalAction,
                       help="-100 on the prompt's targets, the same as --mask prompt (default: the preset's choice)")
    train.add_argument("--mask", choices=list(batching.MASKS), help=mask_help + " (default: the preset's choice)")
    train.add_argument("--drop-last", action=argparse.BooleanOptionalAction,
                       help="leave out the last, smaller training batch of each epoch, as the book does")
    train.add_argument("--group-by-length", action=argparse.BooleanOptionalAction,
                       help="batch samples of similar length together (default: the preset's choice)")
    train.add_argument("--seed", type=int, help="initialisation and batch order seed")
    train.add_argument("--split-seed", type=int, help="which records are train, validation and test (default 123)")
    train.add_argument("--split-order", choices=list(data.SPLIT_ORDERS),
                       help="shuffled with the split seed, or book: in file order (default: the preset's choice)")
    train.add_argument("--skip-bad-rows", action="store_true",
                       help="load the good rows of a file with bad ones and list each bad row with its reason")
    train.add_argument("--eval-every", type=int)
    train.add_argument("--checkpoint-every", type=int,
                       help="keep a checkpoint every N steps (0: only when stopped; default: the preset's)")
    train.add_argument("--keep-checkpoints", type=int, help="keep the newest N checkpoints (0: all)")
    train.add_argument("--resume", metavar="RUN",
                       help="go on with a stopped or interrupted run from its latest checkpoint, with its own "
                            "settings and data (the other settings are ignored)")
    train.add_argument("--probe-every", type=int)
    train.add_argument("--probes", type=int)
    train.add_argument("--show-probes", action="store_true", help="print the probe answers too")
    train.add_argument("--device", choices=["auto", "cpu"], default="auto")
    train.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto")
    train.add_argument("--models-dir", type=Path, default=store.MODELS_DIR,
                       help="model store; the run goes in MODELS_DIR/runs/")
    train.add_argument("--estimate", action="store_true",
                       help="print the memory and time estimate and the data check for these settings; train nothing")
    train.add_argument("--out", type=Path, help=argparse.SUPPRESS)  # the old name of --models-dir
    train.set_defaults(func=cmd_train)

    chat = commands.add_parser("chat", help="the base and the tuned answer to one prompt")
    chat.add_argument("--run", required=True, help="a run id: the name of a folder under MODELS_DIR/runs/")
    chat.add_argument("--prompt", required=True)
    chat.add_argument("--input", help="the record's Input section (the book's records have one)")
    chat.add_argument("--checkpoint", type=int, metavar="STEP", help="answer with the run's checkpoint at STEP")
    chat.add_argument("--max-new-tokens", type=int, default=64)
    chat.add_argument("--seed", type=int, default=123)
    chat.add_argument("--raw", action="store_true", help="send the prompt as typed, with no template")
    chat.add_argument("--models-dir", type=Path, default=store.MODELS_DIR)
    chat.set_defaults(func=cmd_chat)

    look = commands.add_parser("inspect", help="what the fine-tune changed: per response token, base and tuned "
                                               "probability, loss and KL; or loss by task family")
    look.add_argument("--run", required=True, help="a run id: the name of a folder under MODELS_DIR/runs/")
    look.add_argument("--split", choices=["train", "validation", "test"], default="test", help="the run's own split")
    look.add_argument("--index", type=int, default=0, help="which example of the split (0: the first)")
    look.add_argument("--instruction", help="inspect this typed text instead (with --reference)")
    look.add_argument("--input", help="the typed text's input section")
    look.add_argument("--reference", help="the reference answer the models read (needed for typed text)")
    look.add_argument("--families", action="store_true", help="mean response loss per task family on --split")
    look.add_argument("--limit", type=int, help="with --families: only the first N examples of the split")
    look.add_argument("--json", action="store_true",
                      help="JSON lines, one per response token (token, base_prob, tuned_prob, base_loss, tuned_loss, kl)")
    look.add_argument("--models-dir", type=Path, default=store.MODELS_DIR)
    look.set_defaults(func=cmd_inspect)

    side_by_side = commands.add_parser("compare", help="runs side by side: final figures and the settings that differ")
    side_by_side.add_argument("runs", nargs="+", help="run ids (folders under MODELS_DIR/runs/)")
    side_by_side.add_argument("--json", action="store_true")
    side_by_side.add_argument("--models-dir", type=Path, default=store.MODELS_DIR)
    side_by_side.set_defaults(func=cmd_compare)

    grade = commands.add_parser("judge", help="grade base and tuned answers with a Llama 3 judge on Ollama")
    grade.add_argument("--run", help="a run id (a folder under MODELS_DIR/runs/): generate its base and tuned "
                                     "answers on a split")
    grade.add_argument("--responses", help="grade this book-format responses file instead of generating")
    grade.add_argument("--split", choices=["train", "validation", "test"], default="test")
    grade.add_argument("--limit", type=int, default=20, help="how many examples of the split")
    grade.add_argument("--data", help="the run's dataset, when it cannot be found where it was loaded from "
                                      "(refused unless its content is the same)")
    grade.add_argument("--mapping", help="column mapping, e.g. instruction=question,output=answer")
    grade.add_argument("--max-file-mb", type=float, default=data.DEFAULT_MAX_MB)
    grade.add_argument("--max-records", type=int, default=data.DEFAULT_MAX_RECORDS, help="most records accepted")
    grade.add_argument("--max-new-tokens", type=int, default=64)
    grade.add_argument("--answers", choices=["playground", "book"], default="playground",
                       help="book: prompt without the response header, up to 256 new tokens, '### Response:' "
                            "removed, as the book's chapter 7 script asks for test answers")
    grade.add_argument("--api", choices=["ollama", "openai"], default="ollama",
                       help="the server's protocol: Ollama's own, or OpenAI-compatible (llama.cpp, vLLM, LM Studio, ...)")
    grade.add_argument("--host", help="the judge server (default: $OLLAMA_HOST or http://127.0.0.1:11434)")
    grade.add_argument("--api-key-env", help="environment variable holding an API key (the key is never stored)")
    grade.add_argument("--judge-model", default="llama3", help="the model's name on the server, e.g. llama3:70b")
    grade.add_argument("--prompt", choices=["default", "book"], default="default",
                       help="book: ollama_evaluate.py's prompt and options exactly (temperature 0, seed 123, "
                            "num_ctx 2048)")
    grade.add_argument("--group-by", default="task", help="record field whose values get their own averages")
    grade.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    grade.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the server")
    grade.add_argument("--deadline", type=float, default=1800.0,
                       help="seconds for the whole grading; what is not graded by then is skipped (asked next time)")
    grade.add_argument("--give-up-after", type=int, default=4,
                       help="failed requests in a row before nothing more is asked")
    grade.add_argument("--structured", action="store_true", help="ask for JSON {reasoning, score}")
    grade.add_argument("--pairwise", action="store_true", help="also compare base and tuned in both orders")
    grade.add_argument("--pull", action="store_true", help="pull the judge model when it is missing")
    grade.add_argument("--no-judge", action="store_true", help="reference metrics only; no server needed")
    grade.add_argument("--models-dir", type=Path, default=store.MODELS_DIR)
    grade.set_defaults(func=cmd_judge)
    from .export.cli import add_parser as add_export_parser
    add_export_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries()
    try:
        return args.func(args)
    except PlaygroundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

"""Start the instruction-tuning playground: `python app.py`, then open http://127.0.0.1:7860."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import logging
import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

from playground import store  # light: the heavy libraries load after the splash page is up
from playground.commands.numbers import positive_int, positive_number
from playground.splash import Splash

log = logging.getLogger("playground.app")


def auth_from_env(name: str | None, environ: dict[str, str] | None = None) -> tuple[str, str] | None:
    """("user", "password") from the environment variable `name` holding "user:password"."""
    if not name:
        return None
    value = (os.environ if environ is None else environ).get(name, "")
    user, sep, password = value.partition(":")
    if not value:
        raise ValueError(f"--auth-env {name}: the environment variable {name} is not set or empty; "
                         f"set it to user:password")
    if not sep or not user or not password:
        raise ValueError(f"--auth-env {name}: expected user:password in {name} (a user, a colon, a password)")
    return user, password


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name or an empty address: reachable from elsewhere, as far as we know
        return False


def exposure_warning(host: str, share: bool, auth: tuple[str, str] | None) -> str | None:
    """What becomes reachable from other machines when the app listens beyond this one."""
    if is_loopback(host) and not share:
        return None
    where = "a public share link" if share else f"{host}"
    guard = ("a user and password are asked (--auth-env)" if auth else
             "anyone who can reach it needs no password: start it with --auth-env VAR, VAR holding user:password")
    return (f"The app is reachable beyond this machine ({where}): every tab, including training runs, "
            "the model store (base models, tuned adapters and weights, and the copies of datasets runs "
            "trained on) through Gradio's file route, and the Judge tab's host field, which makes this "
            f"server send requests to any address it can reach. {guard}.")


def launch_options(args: argparse.Namespace, auth: tuple[str, str] | None, css: str) -> dict[str, Any]:
    """The keyword arguments of `launch()`: uploads are refused by the server over --max-file-mb."""
    from playground import data

    max_mb = args.max_file_mb or data.DEFAULT_MAX_MB
    return dict(server_name=args.host, server_port=args.port, share=args.share, css=css, theme="soft",
                footer_links=["api"], show_error=True, allowed_paths=[str(args.models_dir)],
                max_file_size=int(max_mb * 1024 * 1024), auth=auth)


def fail(message: str) -> NoReturn:
    """A start that cannot go on: one line on stderr, as the command line says it, and exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def port_problem(host: str, port: int) -> str | None:
    """Why the app could not listen on host:port, or None when it can (checked before anything loads)."""
    if not 1 <= port <= 65535:
        return f"--port {port}: a port is a number from 1 to 65535."
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the web server binds
            probe.bind(address)
    except socket.gaierror:
        return f"--host {host}: not an address or a host name this machine knows."
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return (f"port {port} on {host} is already in use (another program, or the app started twice): "
                    f"stop that program, or start the app on another port (--port {port + 1 if port < 65535 else port - 1}, say).")
        if exc.errno == errno.EADDRNOTAVAIL:
            return f"--host {host}: not an address of this machine."
        if exc.errno == errno.EACCES:
            return f"port {port} needs special rights on this machine: choose a port above 1023 with --port."
        return f"cannot listen on {host}:{port}: {exc.strerror or exc}."
    return None


def models_dir_problem(folder: Path) -> str | None:
    """Why the model store cannot be used (it keeps converted models and every run), or None."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except FileExistsError:
        return f"--models-dir {folder}: a file, not a folder; give a folder for the model store."
    except OSError as exc:
        return (f"--models-dir {folder}: the model store cannot be written ({exc.strerror or exc}); it keeps "
                "converted models and runs: make it writable or give another folder.")
    return None


def wait_longer_for_the_first_page() -> None:
    """Gradio's launch() asks its own page once with a 3 s timeout and, on a timeout, stops the app with
    "localhost is not accessible". On a loaded machine that first page takes longer: ask for up to a
    minute instead. An address that refuses the connection still fails at once."""
    import time

    import httpx
    from gradio import networking

    def page_answers(url: str) -> bool:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.head(url, timeout=15, verify=False).status_code in (200, 401, 301, 302, 303, 307, 308):
                    return True
            except httpx.TimeoutException:
                continue
            except httpx.HTTPError:
                return False
            time.sleep(0.5)
        return False

    networking.url_ok = page_answers


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--tokenizer", default="default",
                        help="'default' (the embedded Gemma 3 270M), a Hugging Face id or a folder")
    parser.add_argument("--models-dir", type=Path, default=store.MODELS_DIR, help="the local model store")
    parser.add_argument("--max-file-mb", type=positive_number, help="largest dataset file accepted (default 200)")
    parser.add_argument("--max-records", type=positive_int, help="most records a dataset may hold (default 200,000)")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cuda, mps or cpu")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                        help="auto: bf16 on GPUs that support it and, on the CPU, for architectures "
                             "measured faster in it (Gemma, Llama, ...); float32 otherwise")
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    parser.add_argument("--auth-env", metavar="VAR",
                        help="ask for a user and password, read as user:password from the environment "
                             "variable VAR (never from the command line)")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    try:
        auth = auth_from_env(args.auth_env)
    except ValueError as exc:
        fail(str(exc))
    if args.max_records is not None and args.max_records < 1:
        fail("--max-records must be at least 1")
    problem = port_problem(args.host, args.port) or models_dir_problem(args.models_dir)
    if problem:
        fail(problem)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    warning = exposure_warning(args.host, args.share, auth)
    if warning:
        log.warning(warning)
    splash = Splash(args.host, args.port)  # answers while Gradio and PyTorch import (several seconds)

    from playground import data
    from playground.cli import quiet_libraries
    from playground.manager import ModelManager
    from playground.ui import build_app
    from playground.ui.app import CSS

    quiet_libraries()  # no loading bars or deprecation notices from transformers in the app's log
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own requests, one line each
    if args.max_records:
        data.set_record_limit(args.max_records)
    manager = ModelManager(args.models_dir, tokenizer_spec=args.tokenizer, device=args.device, dtype=args.dtype)
    demo = build_app(manager, max_file_mb=args.max_file_mb)  # None: the data module's default
    wait_longer_for_the_first_page()
    splash.close_when_gradio_binds()  # launch() works for seconds before it listens: keep answering till then
    try:
        demo.queue(default_concurrency_limit=8).launch(**launch_options(args, auth, CSS))
    except OSError as exc:  # the port taken meanwhile, or an address the server cannot use
        splash.close()
        fail(port_problem(args.host, args.port) or f"the web server could not start on {args.host}:{args.port}: {exc}")


if __name__ == "__main__":
    main()

"""Start the instruction-tuning playground: `python app.py`, then open http://127.0.0.1:7860."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from playground import store  # light: the heavy libraries load after the splash page is up
from playground.splash import Splash


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--tokenizer", default="default",
                        help="'default' (the embedded Gemma 3 270M), a Hugging Face id or a folder")
    parser.add_argument("--models-dir", type=Path, default=store.MODELS_DIR, help="the local model store")
    parser.add_argument("--max-file-mb", type=float, help="largest dataset file accepted (default 200)")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cuda, mps or cpu")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                        help="auto: bf16 on GPUs that support it and, on the CPU, for architectures "
                             "measured faster in it (Gemma, Llama, ...); float32 otherwise")
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    splash = Splash(args.host, args.port)  # answers while Gradio and PyTorch import (several seconds)

    from playground.manager import ModelManager
    from playground.ui import build_app
    from playground.ui.common import CSS
    from playground.ui.train_tab import PROBES_CSS

    manager = ModelManager(args.models_dir, tokenizer_spec=args.tokenizer, device=args.device, dtype=args.dtype)
    demo = build_app(manager, max_file_mb=args.max_file_mb)  # None: the data module's default
    splash.close()
    demo.queue(default_concurrency_limit=8).launch(
        server_name=args.host, server_port=args.port, share=args.share, css=CSS + PROBES_CSS,
        theme="soft", footer_links=["api"], show_error=True,
        allowed_paths=[str(args.models_dir)])


if __name__ == "__main__":
    main()

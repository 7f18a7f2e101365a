"""UPRMModel: four experts -> trade-off router -> per-step threat head (and kind head) and the language model.

Tensors in, tensors out (no file I/O here: building and loading live in ``uprm.model.io`` and
``uprm.model.language``). ``model(inputs)`` runs the fusion only (experts, router, threat head);
``model(inputs, labels=...)`` also runs the LM for L_ce; ``model.answer(...)`` generates text.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from uprm.model.config import EXPERTS, Ablation, UPRMConfig
from uprm.model.cve import CoarseVideoExpert
from uprm.model.errors import InputError, PromptError
from uprm.model.hpe import HumanPoseExpert
from uprm.model.inputs import ExpertInputs
from uprm.model.language import Instruction, InstructionBatch, LanguageBridge, VideoProjector
from uprm.model.loss import threat_loss, tradeoff_loss
from uprm.model.ore import ObjectRelationExpert
from uprm.model.router import TradeoffRouter, gate
from uprm.model.vbe import VisualBackgroundExpert


@dataclass
class UPRMOutput:
    """What one forward returns. Values at padding steps (step_mask False) are meaningless.

    router_weights are in the order (hpe, ore, vbe): R of eq. 6 (with no_ptr: the fine part of the
    4-way softmax); coarse_share is 1 - G (with no_ptr: the coarse weight), so both plot the same way.
    """

    threat_logits: torch.Tensor  # (B, T)
    threat_prob: torch.Tensor  # (B, T)
    router_weights: torch.Tensor  # (B, T, 3)
    coarse_share: torch.Tensor  # (B, T)
    fused: torch.Tensor  # (B, T, d): z
    router_logits: torch.Tensor  # (B, T, 4): [x_hpe, x_ore, x_vbe, x_g]
    step_mask: torch.Tensor  # (B, T) bool
    expert_outputs: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (B, T, d), enabled ones + "cve"
    loss: torch.Tensor | None = None  # L_ce + alpha L_z + w L_threat over the terms whose targets were given
    loss_ce: torch.Tensor | None = None
    loss_z: torch.Tensor | None = None  # always computed; 0 with no_ptr / no_upe
    loss_threat: torch.Tensor | None = None
    kind_logits: torch.Tensor | None = None  # (B, T, K) over config.event_kinds; None without a kind head


class ThreatHead(nn.Module):
    """Per-step threat logit from z over ``context_steps`` steps centred on each step (``n_out`` > 1: that
    many logits per step, (B, T, n_out); the kind head is this head with one logit per event kind).

    LN -> temporal convolution (k = context_steps, channels mixed) -> GELU -> per-step linear; with
    context_steps = 1 the per-step MLP LN -> Linear -> GELU -> Linear. Why a full convolution: a threat's
    bounds are where the evidence starts and stops changing, and the head must compare a step with its
    neighbours across channels (the depthwise version of v2-v3 smoothed instead: the probability stayed
    up long after events). The convolution never sees where a clip ends: past its last real step
    (padding in a batch, or beyond the sequence) it reads that step again. Composed falls and left items
    last to the end of their clip, and with zero padding the head learnt "the end of a clip" as threat
    evidence (a threat-free real clip's last seconds scored up to 0.54).
    """

    def __init__(self, d: int, context_steps: int = 1, n_out: int = 1):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.temporal = nn.Conv1d(d, d // 2, context_steps, padding=context_steps // 2, padding_mode="replicate")
        self.out = nn.Conv1d(d // 2, n_out, 1)

    def forward(self, z: torch.Tensor, step_mask: torch.Tensor | None = None) -> torch.Tensor:
        z = self.norm(z)
        if step_mask is not None:
            # steps past a clip's end repeat its last real step (and the convolution pads by repetition),
            # so the head cannot tell where a clip ends
            t = torch.arange(z.shape[1], device=z.device)
            last = (step_mask.sum(1) - 1).clamp(min=0)
            z = z.gather(1, torch.minimum(t[None], last[:, None])[..., None].expand_as(z))
        h = F.gelu(self.temporal(z.transpose(1, 2)))  # (B, T, d) -> (B, d, T) -> (B, d/2, T)
        out = self.out(h)  # (B, n_out, T)
        return out.squeeze(1) if out.shape[1] == 1 else out.transpose(1, 2)


class UPRMModel(nn.Module):
    def __init__(self, config: UPRMConfig, language: LanguageBridge):
        super().__init__()
        self.config = config
        self.model_id = "uprm"  # builders set the preset name or checkpoint path
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.hpe = HumanPoseExpert(config)
            self.ore = ObjectRelationExpert(config)
            self.vbe = VisualBackgroundExpert(config)
            self.cve = CoarseVideoExpert(config)
            self.router = TradeoffRouter(config)
            self.threat_head = ThreatHead(config.d_model, config.threat_context_steps)
            self.projector = VideoProjector(config.d_model, config.time_dim, language.hidden_size)
            # drawn last, so a model with a kind head starts exactly like one without; it reads z detached
            # (forward) and is fitted on the trained fusion (uprm.training.kinds): which kind an event is
            # must not change where the model finds events
            self.kind_head = (ThreatHead(config.d_model, config.threat_context_steps, len(config.event_kinds))
                              if config.event_kinds else None)
        self.lm = language

    # ------------------------------------------------------------------ switches

    @property
    def ablation(self) -> Ablation:
        return self.config.ablation

    def set_ablation(self, ablation: Ablation | None = None, **switches: bool) -> "UPRMModel":
        """Switch ablations at run time, e.g. ``set_ablation(no_hpe=True)`` or ``set_ablation(Ablation())``.

        Switches not named keep their value. No weights change, so it is cheap and reversible.
        """
        base = ablation if ablation is not None else self.config.ablation
        unknown = sorted(set(switches) - set(Ablation.__dataclass_fields__))
        if unknown:
            raise InputError(f"unknown ablation switch(es) {unknown}; known: {sorted(Ablation.__dataclass_fields__)}")
        self.config = replace(self.config, ablation=replace(base, **switches))
        return self

    def with_kind_head(self, kinds: Sequence[str]) -> "UPRMModel":
        """This model with a fresh, untrained kind head over ``kinds`` (replacing any), for
        ``uprm.training.kinds.fit_kind_head`` to fit. No other weight changes."""
        self.config = replace(self.config, event_kinds=tuple(kinds))  # validates the names
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            self.kind_head = ThreatHead(self.config.d_model, self.config.threat_context_steps,
                                        len(self.config.event_kinds)).to(self.device)
        return self

    # ------------------------------------------------------------------ fusion

    def forward(self, inputs: ExpertInputs, threat_targets: torch.Tensor | None = None,
                labels: InstructionBatch | Sequence[Instruction] | None = None) -> UPRMOutput:
        """Fusion (+ L_threat with per-step ``threat_targets`` (B, T) in [0, 1], + L_ce with ``labels``).

        labels: an ``InstructionBatch`` from ``tokenize_instructions`` or one ``Instruction`` per video.
        """
        cfg, ab = self.config, self.config.ablation
        self._check(inputs)
        sm = inputs.step_mask
        e_g = self.cve(inputs.coarse, sm)
        zero = torch.zeros_like(e_g)
        hpe_on, ore_on, vbe_on = ab.fine_enabled
        outputs = {"cve": e_g}
        if hpe_on:
            outputs["hpe"] = self.hpe(inputs.pose, inputs.person_mask, inputs.coarse, inputs.times_s, sm)
        if ore_on:
            outputs["ore"] = self.ore(inputs.object_class, inputs.object_box, inputs.object_score,
                                      inputs.object_mask, inputs.relations, sm, inputs.object_motion)
        if vbe_on:
            outputs["vbe"] = self.vbe(inputs.background, sm)
        experts = torch.stack([outputs.get(name, zero) for name in EXPERTS] + [e_g], dim=2)  # (B, T, 4, d)

        presence = torch.stack([
            (inputs.person_mask & (inputs.pose[..., 2] > 0).any(-1)).any(-1),
            ObjectRelationExpert.valid_nodes(inputs.object_box, inputs.object_mask).any(-1),
            inputs.background_mask,
        ], dim=-1) & sm.unsqueeze(-1)  # (B, T, 3)
        enabled = torch.tensor(ab.fine_enabled, device=sm.device)  # (3,)
        presence = presence & enabled  # an ablated expert says nothing, not even that it has evidence
        if self.training and cfg.expert_dropout > 0:
            dropped = torch.rand(presence.shape[0], 1, presence.shape[2], device=sm.device) < cfg.expert_dropout
            presence = presence & ~dropped
        fine_enabled = presence if cfg.mask_absent_experts else enabled.expand_as(presence) & sm.unsqueeze(-1)

        logits = self.router(experts, presence)  # (B, T, 4)
        gates = gate(logits, experts, fine_enabled, ptr=not ab.no_ptr)
        if ab.no_ptr or not ab.uses_experts:
            loss_z = logits.new_zeros(())
        else:
            loss_z = tradeoff_loss(logits, fine_enabled, sm)
        threat_logits = self.threat_head(gates.z, sm)
        kind_logits = None if self.kind_head is None else self.kind_head(gates.z.detach(), sm)

        out = UPRMOutput(threat_logits=threat_logits, threat_prob=threat_logits.sigmoid(),
                         router_weights=gates.fine_weights, coarse_share=gates.coarse_share, fused=gates.z,
                         router_logits=logits, step_mask=sm, expert_outputs=outputs, loss_z=loss_z,
                         kind_logits=kind_logits)
        terms = []
        if threat_targets is not None:
            out.loss_threat = threat_loss(threat_logits, threat_targets.to(threat_logits.device), sm)
            terms.append(cfg.threat_loss_weight * out.loss_threat)
        if labels is not None:
            batch = labels if isinstance(labels, InstructionBatch) else self.tokenize_instructions(inputs, labels)
            batch = batch.to(sm.device)
            out.loss_ce = self.lm.lm_loss(self.lm.embed(batch.input_ids, self.video_tokens(gates.z, inputs)), batch)
            terms.append(out.loss_ce)
        if terms:
            out.loss = sum(terms) + cfg.alpha * loss_z
        return out

    def _check(self, inputs: ExpertInputs) -> None:
        cfg = self.config
        if inputs.background.shape[-1] != cfg.d_bg or inputs.coarse.shape[-1] != cfg.d_coarse:
            raise InputError(f"inputs have D_bg={inputs.background.shape[-1]}, D_coarse={inputs.coarse.shape[-1]} "
                             f"but the model expects d_bg={cfg.d_bg}, d_coarse={cfg.d_coarse}: build the inputs "
                             "with uprm.featurize.featurize(evidence, model.config)")
        cls = inputs.object_class[inputs.object_mask]
        if cls.numel() and (int(cls.min()) < 0 or int(cls.max()) >= cfg.num_object_classes):
            raise InputError(f"object_class ids must lie in 0..{cfg.num_object_classes - 1} (COCO-91), "
                             f"got {int(cls.min())}..{int(cls.max())}")

    # ------------------------------------------------------------------ language model

    def video_tokens(self, fused: torch.Tensor, inputs: ExpertInputs) -> list[torch.Tensor]:
        """Per video, its valid steps' z projected into LM embeddings: a list of (N_b, H).

        Videos with more steps than ``lm.max_video_tokens`` are average-pooled in time first.
        """
        cap = self.config.lm.max_video_tokens
        tokens = []
        for b in range(fused.shape[0]):
            keep = inputs.step_mask[b]
            z, t = fused[b, keep], inputs.times_s[b, keep]  # (N, d), (N,)
            if z.shape[0] > cap:
                z = F.adaptive_avg_pool1d(z.T.unsqueeze(0), cap)[0].T  # (N, d) -> (1, d, N) -> (cap, d)
                t = F.adaptive_avg_pool1d(t[None, None].float(), cap)[0, 0]
            tokens.append(self.projector(z, t))
        return tokens

    def num_video_tokens(self, inputs: ExpertInputs) -> list[int]:
        return [min(int(n), self.config.lm.max_video_tokens) for n in inputs.step_mask.sum(dim=1)]

    def tokenize_instructions(self, inputs: ExpertInputs, instructions: Sequence[Instruction]) -> InstructionBatch:
        """One Instruction per video of ``inputs`` -> prompts with the right number of placeholders."""
        if len(instructions) != inputs.batch_size:
            raise InputError(f"{len(instructions)} instruction(s) for {inputs.batch_size} video(s): give one per video")
        rows = [self.lm.prompt_ids(n, ins.question, ins.context, ins.answer)
                for n, ins in zip(self.num_video_tokens(inputs), instructions)]
        return self.lm.batch(rows)

    def answer(self, inputs: ExpertInputs, question: str, context: str = "", max_new_tokens: int | None = None,
               stream: bool = False) -> str | Iterator[str]:
        """Answer a question about one video (B = 1), greedily; ``context`` is extra prompt text
        (e.g. evidence descriptions). stream=True returns an iterator of text pieces."""
        if inputs.batch_size != 1:
            raise InputError(f"answer() takes one video (B = 1), got B = {inputs.batch_size}: slice the batch")
        if not question or not question.strip():
            raise PromptError("the question is empty: ask something about the video")
        device = self.device
        inputs = inputs.to(device)
        with torch.no_grad():
            fused = self(inputs).fused
            video = self.video_tokens(fused, inputs)
            ids, _ = self.lm.prompt_ids(video[0].shape[0], question, context)
            embeds = self.lm.embed(torch.tensor([ids], device=device), video)
        return self.lm.generate(embeds, max_new_tokens or self.config.lm.max_new_tokens, stream=stream)

    # ------------------------------------------------------------------ parameters and weights

    @property
    def device(self) -> torch.device:
        return self.threat_head.out.weight.device

    def uprm_state_dict(self) -> dict[str, torch.Tensor]:
        """UPRM's own weights (experts, router, heads, projector): what ``uprm.safetensors`` holds."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("lm.")}

    def parameter_counts(self) -> dict[str, dict[str, int]]:
        """Per part: {"trainable": n, "frozen": n}. Parts: the experts, router, heads, projector, lora, lm_base."""
        counts: dict[str, dict[str, int]] = {}
        for name, p in self.named_parameters():
            part = name.split(".")[0]
            if part == "lm":
                part = "lora" if "lora_" in name else "lm_base"
            c = counts.setdefault(part, {"trainable": 0, "frozen": 0})
            c["trainable" if p.requires_grad else "frozen"] += p.numel()
        return counts

    def save_pretrained(self, directory: str | Path) -> Path:
        from uprm.model.io import save_model

        return save_model(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path, **overrides) -> "UPRMModel":
        from uprm.model.io import load_model

        return load_model(directory, **overrides)

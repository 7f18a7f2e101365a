"""The UPRM model: four experts (HPE, ORE, VBE, CVE), the trade-off router, heads and the LM bridge.

    from uprm.model import UPRMConfig, UPRMModel, UPRMOutput, ExpertInputs, build_model
    model = build_model("small")                       # or "paper", "tiny", or a checkpoint folder
    out = model(featurize(evidence, model.config))     # threat_prob, router_weights, coarse_share, ...
    text = model.answer(inputs, IDENTIFY, context="...", stream=False)
"""
from uprm.model.config import EXPERTS, Ablation, LMConfig, UPRMConfig
from uprm.model.errors import (
    CheckpointError, ConfigError, InputError, LanguageModelUnavailable, PromptError, UPRMError,
)
from uprm.model.inputs import ExpertInputs
from uprm.model.io import build_model
from uprm.model.language import Instruction, InstructionBatch
from uprm.model.uprm_model import UPRMModel, UPRMOutput

__all__ = [
    "EXPERTS", "Ablation", "CheckpointError", "ConfigError", "ExpertInputs", "InputError", "Instruction",
    "InstructionBatch", "LMConfig", "LanguageModelUnavailable", "PromptError", "UPRMConfig", "UPRMError",
    "UPRMModel", "UPRMOutput", "build_model",
]

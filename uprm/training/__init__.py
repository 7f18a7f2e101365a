"""Training: the paper's two-stage recipe (``train``), and the correction loop the studio drives.

    from uprm.training import TrainSettings, train, load_conversations, run_correction_loop, list_versions
    result = train("small", load_conversations("corrections.json"), "runs/s2", TrainSettings(epochs=1))
    version = run_correction_loop(store, "models/", progress=cb, cancel=event)

Command line: ``python -m uprm train --help`` (``uprm.training.cli``).
"""
from uprm.training.data import (
    TrainingExample, load_conversations, load_training_files, split_by_video, step_targets,
)
from uprm.training.errors import (
    RegistryError, ResumeError, TrainingCancelled, TrainingDataError, TrainingError,
)
from uprm.training.features import (
    PerceptionFeatures, StaticFeatures, VideoFeatures, load_features, save_features,
)
from uprm.training.loop import evaluate_videos, load_version, run_correction_loop
from uprm.training.registry import (
    DataSummary, EvalScores, ModelVersion, Registry, current_version, list_versions,
)
from uprm.training.trainer import TrainResult, TrainSettings, train

__all__ = [
    "DataSummary", "EvalScores", "ModelVersion", "PerceptionFeatures", "Registry", "RegistryError", "ResumeError",
    "StaticFeatures", "TrainResult", "TrainSettings", "TrainingCancelled", "TrainingDataError", "TrainingError",
    "TrainingExample", "VideoFeatures", "current_version", "evaluate_videos", "list_versions", "load_conversations",
    "load_features", "load_training_files", "load_version", "run_correction_loop", "save_features",
    "split_by_video", "step_targets", "train",
]

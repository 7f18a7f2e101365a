"""Where a training example's ExpertInputs come from: the perception cache, or precomputed features.

A feature source is any callable ``(video_id, video_path) -> VideoFeatures``. ``PerceptionFeatures``
runs ``uprm.perception.perceive`` once per video (cached on disk by perception itself, and in memory
here) and featurizes for the model's config; ``StaticFeatures`` serves features given in memory or
read from a file written by ``save_features`` (tests, and training many times on the same videos).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol

from uprm.evidence import VideoEvidence
from uprm.training.errors import TrainingDataError

FEATURES_FORMAT = "uprm-features/1"


@dataclass
class VideoFeatures:
    """One video's model inputs (B = 1) with the time base needed to turn seconds into steps."""

    inputs: Any  # uprm.model.ExpertInputs, B = 1
    sample_fps: float  # steps per second
    duration_s: float
    evidence: VideoEvidence | None = None

    @property
    def step_s(self) -> float:
        return 1.0 / self.sample_fps

    def times_s(self) -> list[float]:
        return self.inputs.times_s[0][self.inputs.step_mask[0]].tolist()


class FeatureSource(Protocol):
    def __call__(self, video_id: str, video_path: str) -> VideoFeatures: ...


def features_from_inputs(inputs, sample_fps: float | None = None, duration_s: float | None = None) -> VideoFeatures:
    """Wrap a B = 1 ExpertInputs; the step rate defaults to the spacing of its times."""
    if inputs.batch_size != 1:
        raise TrainingDataError(f"features hold one video each (B = 1), got B = {inputs.batch_size}")
    times = inputs.times_s[0][inputs.step_mask[0]]
    if sample_fps is None:
        gaps = times[1:] - times[:-1]
        gaps = gaps[gaps > 0]
        sample_fps = float(1.0 / gaps.median()) if len(gaps) else 2.0
    if duration_s is None:
        duration_s = float(times.max()) + 0.5 / sample_fps
    return VideoFeatures(inputs, float(sample_fps), float(duration_s))


def features_from_evidence(evidence: VideoEvidence, config) -> VideoFeatures:
    from uprm.featurize import featurize

    return VideoFeatures(featurize(evidence, config), float(evidence.sample_fps),
                         float(evidence.video.duration_s), evidence)


class PerceptionFeatures:
    """Evidence from the frozen front-ends (cached per video on disk by ``perceive``), featurized for
    ``config``; the last ``memory_videos`` featurized videos stay in memory.

    Still images (RefCOCO, RSI-CB) are first turned into a one-second still clip
    (``uprm.training.stage1.still_clip``), since perception reads videos; HumanML3D ``.npy`` motions
    become pose-only inputs from their own joints (``uprm.training.stage1.motion_features``).
    """

    def __init__(self, config, settings=None, cache_dir: str | Path | None = None,
                 progress: Callable[[str, float], None] | None = None, memory_videos: int = 512):
        self.config = config
        self.settings = settings
        self.cache_dir = cache_dir
        self.progress = progress
        self.memory_videos = memory_videos
        self._memo: OrderedDict[str, VideoFeatures] = OrderedDict()

    def __call__(self, video_id: str, video_path: str) -> VideoFeatures:
        if video_path in self._memo:
            self._memo.move_to_end(video_path)
            return self._memo[video_path]
        if not video_path:
            raise TrainingDataError(f"video {video_id!r} has no file path: give its 'video' in the data, or "
                                    "precomputed features (--features)")
        if not Path(video_path).is_file():
            raise TrainingDataError(f"video file {video_path} (of {video_id!r}) does not exist: fix the data's "
                                    "'video' paths, pass --video-root, or give precomputed features (--features)")
        from uprm.perception import PerceptionSettings, perceive
        from uprm.training.stage1 import IMAGE_SUFFIXES, motion_features, still_clip

        path = video_path
        if Path(path).suffix.lower() == ".npy":  # a HumanML3D motion: its own joints, no perception
            fps = self.settings.sample_fps if self.settings is not None else 2.0
            return self._keep(video_path, motion_features(path, self.config, fps))
        if Path(path).suffix.lower() in IMAGE_SUFFIXES:
            stills = Path(self.cache_dir) / "stills" if self.cache_dir else None
            path = str(still_clip(path, stills))
        settings = self.settings or PerceptionSettings()
        evidence = perceive(path, settings, progress=self.progress, cache_dir=self.cache_dir)
        return self._keep(video_path, features_from_evidence(evidence, self.config))

    def _keep(self, key: str, feats: VideoFeatures) -> VideoFeatures:
        self._memo[key] = feats
        while len(self._memo) > self.memory_videos:
            self._memo.popitem(last=False)
        return feats


class StaticFeatures:
    """Features given up front, looked up by video path, id, file name or file stem.

    Values may be VideoFeatures, ExpertInputs (B = 1) or VideoEvidence (featurized with ``config``).
    ``fallback`` serves videos not in the mapping (e.g. a PerceptionFeatures).
    """

    def __init__(self, mapping: Mapping[str, Any], config=None, fallback: FeatureSource | None = None):
        self.config = config
        self.fallback = fallback
        self._items: dict[str, VideoFeatures] = {}
        for key, value in mapping.items():
            self._items[str(key)] = self._wrap(str(key), value)

    def _wrap(self, key: str, value: Any) -> VideoFeatures:
        from uprm.model.inputs import ExpertInputs

        if isinstance(value, VideoFeatures):
            return value
        if isinstance(value, ExpertInputs):
            return features_from_inputs(value)
        if isinstance(value, VideoEvidence):
            if self.config is None:
                raise TrainingDataError(f"features for {key!r} are VideoEvidence: give the model config to "
                                        "featurize them")
            return features_from_evidence(value, self.config)
        raise TrainingDataError(f"features for {key!r} must be VideoFeatures, ExpertInputs or VideoEvidence, "
                                f"got {type(value).__name__}")

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def __call__(self, video_id: str, video_path: str) -> VideoFeatures:
        for key in (video_path, video_id, Path(video_path).name if video_path else "",
                    Path(video_path).stem if video_path else ""):
            if key and key in self._items:
                return self._items[key]
        if self.fallback is not None:
            return self.fallback(video_id, video_path)
        raise TrainingDataError(f"no precomputed features for video {video_id!r} ({video_path or 'no path'}); "
                                f"the feature file has {len(self._items)} video(s), e.g. {sorted(self._items)[:3]}")


def save_features(path: str | Path, mapping: Mapping[str, VideoFeatures]) -> Path:
    """Write features (tensors only, readable with ``torch.load(weights_only=True)``)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    videos = {}
    for key, f in mapping.items():
        videos[str(key)] = {"inputs": {fl.name: getattr(f.inputs, fl.name) for fl in fields(f.inputs)},
                            "sample_fps": float(f.sample_fps), "duration_s": float(f.duration_s)}
    tmp = path.with_name(path.name + ".partial")
    torch.save({"format": FEATURES_FORMAT, "videos": videos}, tmp)
    tmp.replace(path)
    return path


def load_features(path: str | Path) -> dict[str, VideoFeatures]:
    import pickle

    import torch

    from uprm.model.errors import InputError
    from uprm.model.inputs import ExpertInputs

    path = Path(path)
    if not path.is_file():
        raise TrainingDataError(f"{path}: no such feature file (write one with uprm.training.features.save_features)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise TrainingDataError(f"{path}: not a UPRM feature file ({str(exc).splitlines()[0][:200]})") from None
    if not isinstance(data, dict) or data.get("format") != FEATURES_FORMAT:
        raise TrainingDataError(f"{path}: not a UPRM feature file (format {FEATURES_FORMAT!r} expected)")
    out = {}
    for key, item in data["videos"].items():
        try:
            inputs = ExpertInputs(**item["inputs"])
        except (TypeError, InputError) as exc:
            raise TrainingDataError(f"{path}: features of {key!r} are malformed ({exc})") from None
        out[key] = VideoFeatures(inputs, item["sample_fps"], item["duration_s"])
    return out

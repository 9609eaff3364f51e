"""The face pipeline: decode -> detect + track -> square crop -> LaPa parse -> write.

Backends (each replaceable): :mod:`.source` (decode), :mod:`.detector` + :mod:`.landmarks` +
:mod:`.tracker` (detect and track), :mod:`.crop`, :mod:`.parse`, and :mod:`.preprocess` (write).
See docs/face_pipeline.md.
"""
from __future__ import annotations

import threading

import numpy as np

from ..errors import require

require("cv2", "face", "the face pipeline")
from .pipeline import FaceClip, FacePipeline, NoFaceError  # noqa: E402

__all__ = ["crop_faces", "face_tracks", "FacePipeline", "FaceClip", "NoFaceError"]

_PIPELINES: dict = {}
_LOCK = threading.Lock()  # a pipeline runs one video at a time


def crop_faces(video_path, size: int = 224, no_face: str = "error") -> np.ndarray:
    """All frames of ``video_path`` (a video file or a folder of frames) cropped to the tracked face
    exactly as ``marlin preprocess`` does: uint8 (T, size, size, 3) RGB.

    ``no_face="error"`` raises :class:`NoFaceError` (naming the file) when no frame has a face;
    ``"center"`` falls back to the largest centred square. Frames where the face is lost hold the box.
    """
    with _LOCK:
        return _pipeline(size, no_face).run(video_path).frames


def face_tracks(video_path, size: int = 224, min_track_frames: int = 16) -> list[FaceClip]:
    """Every face of ``video_path`` (``--faces all``): one :class:`FaceClip` per face track with at least
    ``min_track_frames`` frames with the face, in the documented order (face0, face1, ...; see
    :mod:`marlin.face.tracks`), cropped as ``marlin preprocess --faces all`` crops them. ``clip.meta`` holds the
    track number (``track``), its source frame range (``frame_range``, [first, last]) and boxes in source pixels.
    Raises :class:`NoFaceError` (naming the file) when no track is kept."""
    with _LOCK:
        return _pipeline(size, "error").run_tracks(video_path, min_track_frames=min_track_frames)


def _pipeline(size: int, no_face: str) -> FacePipeline:
    """The shared crop-only pipeline of these settings (models load once per process)."""
    key = (size, no_face)
    if key not in _PIPELINES:
        _PIPELINES[key] = FacePipeline(size=size, parser=None, no_face=no_face)
    return _PIPELINES[key]

"""Frame <-> mel alignment. At 25 fps and 80 mel steps/s one video frame spans 3.2 mel steps; a window of
``n`` frames starting at frame ``s`` is mel steps [int(80 s / fps), + round(80 n / fps)) (16 steps for 5 frames,
51 for 16). Windows running past either end repeat the edge column."""
from __future__ import annotations

import numpy as np

from .mel import WAV2LIP

FPS = 25.0
CHUNK_FRAMES = 5  # the per-frame audio context of the generator: 5 frames = 16 mel steps, centred on the frame


def mel_steps(n_frames: int, fps: float = FPS, steps_per_second: float = WAV2LIP.steps_per_second) -> int:
    """Mel steps covering ``n_frames`` video frames."""
    return int(round(n_frames * steps_per_second / fps))


def mel_start(frame: float, fps: float = FPS, steps_per_second: float = WAV2LIP.steps_per_second) -> int:
    return int(np.floor(frame * steps_per_second / fps + 1e-6))


def _crop(mel: np.ndarray, start: int, length: int) -> np.ndarray:
    idx = np.clip(np.arange(start, start + length), 0, mel.shape[1] - 1)
    return mel[:, idx]


def mel_window(mel: np.ndarray, start_frame: int, n_frames: int, fps: float = FPS) -> np.ndarray:
    """(80, Tm) spectrogram -> (80, mel_steps(n_frames)) aligned with frames [start_frame, start_frame + n_frames)."""
    return _crop(mel, mel_start(start_frame, fps), mel_steps(n_frames, fps))


def frame_chunks(mel: np.ndarray, frames, fps: float = FPS, chunk_frames: int = CHUNK_FRAMES,
                 before: int | None = None) -> np.ndarray:
    """Per-frame audio context: (len(frames), 80, mel_steps(chunk_frames)), the chunk of frame f covering frames
    f - before ... (default: centred on its frame)."""
    before = (chunk_frames - 1) // 2 if before is None else before
    steps = mel_steps(chunk_frames, fps)
    return np.stack([_crop(mel, mel_start(f - before, fps), steps) for f in frames])


def frames_for_audio(n_samples: int, sample_rate: int = WAV2LIP.sample_rate, fps: float = FPS) -> int:
    """Number of whole video frames the audio covers."""
    return int(n_samples * fps // sample_rate)

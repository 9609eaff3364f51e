"""Lip-sync a face video to an audio track with a trained generator and write an mp4 with the audio muxed in.

The face input is a cropped face video, a folder of face jpgs, or a preprocessed face item; with an item
and ``paste=True`` the generated faces are pasted back into the item's source video using its crop boxes."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from .align import FPS, frame_chunks, frames_for_audio
from .audio import load_audio, write_video_with_audio
from .data import mask_lower, read_faces, to_tensor
from .mel import melspectrogram
from .preview import to_uint8

log = logging.getLogger(__name__)


@torch.no_grad()
def generate(gen, faces: np.ndarray, audio: np.ndarray, fps: float = FPS, batch: int = 4,
             progress: bool = True) -> np.ndarray:
    """faces (N, S, S, 3) uint8 at the generator's size, audio 16 kHz -> (M, S, S, 3) uint8, M = frames of audio.

    Face frames loop when the audio is longer; each window of T frames is its own reference (as Wav2Lip)."""
    from tqdm import tqdm

    gen.eval()
    device = next(gen.parameters()).device
    t, before = gen.window, gen.config.chunk_before(training=False)
    m = frames_for_audio(len(audio), fps=fps)
    if m < 1:
        raise ValueError("the audio is shorter than one video frame")
    mel = melspectrogram(audio)
    starts = list(range(0, m, t))
    out = np.empty((m, *faces.shape[1:]), np.uint8)
    quiet = {} if progress else {"disable": True}  # otherwise tqdm's defaults (and TQDM_DISABLE) apply
    for b in tqdm(range(0, len(starts), batch), desc="lipsync", unit="batch", **quiet):
        idx = [np.minimum(np.arange(s, s + t), m - 1) for s in starts[b:b + batch]]  # (b, T) audio frames
        clip = to_tensor(np.stack([faces[i % len(faces)] for i in idx]))  # (b, T, 3, S, S)
        inputs = torch.cat([mask_lower(clip), clip], dim=2)
        chunks = torch.from_numpy(np.stack([frame_chunks(mel, i, fps, before=before) for i in idx]))[:, :, None]
        pred = to_uint8(gen(inputs.to(device), chunks.to(device)))  # (b, T, S, S, 3)
        for i, p in zip(idx, pred):
            out[i] = p  # repeated tail indices just rewrite the last frame
    return out


def paste_back(item, faces: np.ndarray):
    """Yield the item's source frames (H, W, 3) with the generated crops pasted at its boxes, one per face.

    The source is decoded as a stream (and restarted when the audio outlasts it), never held whole."""
    import cv2

    from ..video import iter_frames

    boxes, found = item.meta.get("boxes"), item.meta.get("face_found")
    if not boxes:
        raise ValueError(f"{item.root}: meta.json has no crop boxes to paste back into")
    j = 0
    while j < len(faces):
        for k, frame in enumerate(iter_frames(item.meta["source"])):
            if j == len(faces) or k == len(boxes):
                break
            if found is None or found[k]:
                x1, y1, x2, y2 = (int(round(v)) for v in boxes[k])
                patch = cv2.resize(faces[j], (x2 - x1, y2 - y1), interpolation=cv2.INTER_CUBIC)
                h, w = frame.shape[:2]
                cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
                if cx2 > cx1 and cy2 > cy1:
                    frame = frame.copy()
                    frame[cy1:cy2, cx1:cx2] = patch[cy1 - y1:cy2 - y1, cx1 - x1:cx2 - x1]
            yield frame
            j += 1


def lipsync_file(gen, face_path, audio_path, out_path, batch: int = 4, paste: bool = False,
                 keep_size: bool = True, preview=None, progress: bool = True) -> Path:
    """Read faces and audio, generate, write ``out_path`` (mp4 with the audio). Returns the path.

    ``preview``: also write a PNG of 8 input faces (top) and the generated faces (bottom)."""
    import cv2

    from ..data.layout import is_item, load_item
    from ..video import probe

    face_path = Path(face_path)
    size = gen.config.face_size
    item = load_item(face_path) if face_path.is_dir() and is_item(face_path) else None
    info = probe(face_path) if item is None and face_path.is_file() else None
    fps = item.fps if item is not None else (info.fps if info is not None else FPS)
    faces = read_faces(face_path, size)
    audio = load_audio(audio_path)
    frames = generate(gen, faces, audio, fps, batch, progress=progress)
    if preview:
        from .preview import write_grid

        pick = np.linspace(0, len(frames) - 1, min(8, len(frames))).round().astype(int)
        write_grid(preview, [faces[pick % len(faces)], frames[pick]])
    if paste:
        if item is None:
            raise ValueError(f"{face_path}: --paste needs a preprocessed face item (with crop boxes)")
        frames = paste_back(item, frames)
    elif keep_size and info is not None and (info.height, info.width) != (size, size):
        frames = (cv2.resize(f, (info.width, info.height), interpolation=cv2.INTER_CUBIC) for f in frames)
    write_video_with_audio(out_path, frames, audio, fps=fps)
    return Path(out_path)

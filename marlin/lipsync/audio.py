"""Audio decoding (any container PyAV reads -> 16 kHz mono float32) and muxing audio into an mp4."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_path, temp_name
from ..video.io import VideoError

SAMPLE_RATE = 16000


def load_audio(path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode the first audio stream of ``path`` to mono float32 in [-1, 1] at ``sample_rate``: (n_samples,)."""
    import av

    p = Path(path)
    if not p.is_file():
        raise VideoError(p, "audio file does not exist")
    try:
        container = av.open(str(p))
    except Exception as e:
        raise VideoError(p, f"not a readable media file ({type(e).__name__}: {e})") from None
    with container:
        if not container.streams.audio:
            raise VideoError(p, "contains no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks = []
        try:
            for frame in container.decode(container.streams.audio[0]):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except Exception as e:
            raise VideoError(p, f"audio decoding failed ({type(e).__name__}: {e})") from None
    if not chunks:
        raise VideoError(p, "audio stream holds no samples")
    return np.concatenate(chunks).astype(np.float32)


def mux_audio(video_path, audio: np.ndarray, out_path, sample_rate: int = SAMPLE_RATE, bitrate: int = 96000) -> None:
    """Copy the video stream of ``video_path`` and add ``audio`` ((n,) float32 mono) as AAC, atomically."""
    import av

    out_path = Path(out_path)
    audio = np.clip(np.asarray(audio, dtype=np.float32).reshape(1, -1), -1, 1)
    try:
        with atomic_path(out_path) as tmp, av.open(str(video_path)) as src, av.open(str(tmp), mode="w") as dst:
            vin = src.streams.video[0]
            vout = dst.add_stream_from_template(vin)
            aout = dst.add_stream("aac", rate=sample_rate, layout="mono")
            aout.bit_rate = bitrate
            for packet in src.demux(vin):
                if packet.dts is None:
                    continue
                packet.stream = vout
                dst.mux(packet)
            hop = 1024
            for start in range(0, audio.shape[1], hop):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[:, start:start + hop]),
                                                   format="flt", layout="mono")
                frame.sample_rate = sample_rate
                frame.pts = start
                for packet in aout.encode(frame):
                    dst.mux(packet)
            for packet in aout.encode(None):
                dst.mux(packet)
    except VideoError:
        raise
    except Exception as e:
        raise VideoError(out_path, f"muxing audio failed ({type(e).__name__}: {e})") from None


def write_video_with_audio(path, frames, audio: np.ndarray, fps: float = 25.0, sample_rate: int = SAMPLE_RATE,
                           crf: int = 18) -> None:
    """H.264 video of ``frames`` ((T, H, W, 3) uint8, or an iterable of frames) with ``audio`` muxed in as AAC;
    atomic."""
    from ..video import write_video

    path = Path(path)
    silent = temp_name(path, ".silent.mp4")
    try:
        write_video(silent, frames, fps=fps, crf=crf)
        mux_audio(silent, audio, path, sample_rate)
    finally:
        silent.unlink(missing_ok=True)

"""Audio decoding/muxing, Wav2Lip's mel spectrogram and frame <-> mel alignment."""
import av
import numpy as np
import pytest

from marlin.lipsync.align import frame_chunks, frames_for_audio, mel_start, mel_steps, mel_window
from marlin.lipsync.audio import load_audio, write_video_with_audio
from marlin.lipsync.mel import WAV2LIP, _hz_to_mel, _mel_to_hz, mel_filterbank, melspectrogram
from marlin.video import VideoError, write_video

SR = 16000


def tone(freq, seconds=1.0, amp=0.5):
    t = np.arange(int(SR * seconds)) / SR
    return amp * np.sin(2 * np.pi * freq * t)


def test_slaney_mel_scale():
    assert _hz_to_mel(1000.0) == pytest.approx(15.0)
    assert _hz_to_mel(2000.0) == pytest.approx(15 + 27 * np.log(2) / np.log(6.4))
    assert _hz_to_mel(500.0) == pytest.approx(7.5)
    f = np.array([55.0, 700.0, 1000.0, 3000.0, 7600.0])
    np.testing.assert_allclose(_mel_to_hz(_hz_to_mel(f)), f, rtol=1e-9)


def test_filterbank_shape_and_slaney_area():
    fb = mel_filterbank()
    assert fb.shape == (80, 401) and (fb >= 0).all()
    df = SR / WAV2LIP.n_fft  # 20 Hz per bin: each normalised triangle has area ~1 in Hz
    areas = fb.sum(1) * df
    np.testing.assert_allclose(areas[30:], 1.0, rtol=0.05)  # wide filters: the sampled area is exact enough
    assert fb[:, :2].sum() == 0  # nothing below fmin = 55 Hz


def test_mel_shape_range_and_tone_peak():
    wav = tone(1000.0)
    m = melspectrogram(wav)
    assert m.shape == (80, 1 + len(wav) // 200) and m.dtype == np.float32
    assert m.min() >= -4 and m.max() <= 4
    edges = _mel_to_hz(np.linspace(_hz_to_mel(55.0), _hz_to_mel(7600.0), 82))
    expected = int(np.argmin(np.abs(edges[1:-1] - 1000.0)))
    assert abs(int(m[:, 40].argmax()) - expected) <= 1
    assert (melspectrogram(np.zeros(8000)) == -4).all()  # silence sits on the floor


def test_mel_level_scale():
    # x10 amplitude = +20 dB = +20 * 8 / 100 in normalised units
    lo, hi = melspectrogram(tone(1500.0, amp=0.003)), melspectrogram(tone(1500.0, amp=0.03))
    k = int(hi[:, 40].argmax())
    assert hi[k, 40] - lo[k, 40] == pytest.approx(1.6, abs=0.01)


def test_alignment_windows():
    assert mel_steps(5) == 16 and mel_steps(16) == 51 and mel_start(25) == 80
    assert frames_for_audio(SR * 2) == 50
    mel = np.arange(100, dtype=np.float32)[None].repeat(80, 0)  # column index as value
    assert mel_window(mel, 10, 5)[0].tolist() == list(range(32, 48))
    np.testing.assert_array_equal(mel_window(mel, 30, 5)[0, -1], 99)  # past the end: edge repeat
    chunks = frame_chunks(mel, [0, 10])
    assert chunks.shape == (2, 80, 16)
    assert chunks[1, 0, 0] == mel_start(8) and chunks[0, 0, 0] == 0  # centred on the frame, clipped at 0


def test_burst_lands_in_its_frames():
    wav = np.zeros(SR * 2)
    wav[int(SR * 0.8):int(SR * 1.0)] = tone(800.0, 0.2)  # frames 20..24 at 25 fps
    mel = melspectrogram(wav)
    e = frame_chunks(mel, range(50)).max(1).mean(1)  # loudest bin, averaged over the chunk
    assert 19 <= int(np.argmax(e)) <= 25
    assert e[22] > e[5] + 1 and e[22] > e[40] + 1


def test_mux_roundtrip(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (25, 32, 32, 3), dtype=np.uint8)
    audio = tone(440.0, 1.0, 0.3).astype(np.float32)
    out = tmp_path / "a.mp4"
    write_video_with_audio(out, frames, audio)
    with av.open(str(out)) as c:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == 1
        assert c.streams.audio[0].sample_rate == SR
    back = load_audio(out)
    assert abs(len(back) - len(audio)) <= 2048
    n = len(audio) - 2000
    assert np.corrcoef(back[1000:n], audio[1000:n])[0, 1] > 0.98
    assert not list(tmp_path.glob(".*"))  # no temporaries left


def test_audio_errors_name_the_file(tmp_path):
    silent = tmp_path / "silent.mp4"
    write_video(silent, np.zeros((3, 16, 16, 3), np.uint8))
    with pytest.raises(VideoError, match="silent.mp4: contains no audio"):
        load_audio(silent)
    with pytest.raises(VideoError, match="missing.wav"):
        load_audio(tmp_path / "missing.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(VideoError, match="bad.wav"):
        load_audio(bad)

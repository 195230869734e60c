"""acr.audio: decoding every supported format, partial reads, resampling, window starts and the
errors bad files get."""

from pathlib import Path

import numpy as np
import pytest
import soundfile

from acr.audio import AudioError, audio_info, load_audio, resample, save_audio, window_starts

SAMPLE_RATE = 22050


def chirp(duration_s: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    time_s = np.arange(int(duration_s * sample_rate)) / sample_rate
    return (0.5 * np.sin(2 * np.pi * (200 + 300 * time_s) * time_s)).astype(np.float32)


FORMATS = {
    "wav": {},
    "flac": {},
    "ogg": {"format": "OGG", "subtype": "VORBIS"},
    "opus": {"format": "OGG", "subtype": "OPUS"},
    "mp3": {"format": "MP3"},
}


@pytest.mark.parametrize("extension", sorted(FORMATS))
def test_decodes_each_format_as_mono_at_the_requested_rate(tmp_path: Path, extension: str) -> None:
    rate = 48000 if extension == "opus" else SAMPLE_RATE  # opus only runs at 48 kHz
    stereo = np.stack([chirp(2.0, rate), 0.5 * chirp(2.0, rate)], axis=1)
    path = tmp_path / f"clip.{extension}"
    soundfile.write(path, stereo, rate, **FORMATS[extension])

    info = audio_info(path)
    assert info.channels == 2
    assert info.duration_s == pytest.approx(2.0, abs=0.06)
    audio = load_audio(path, sample_rate=16000)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == pytest.approx(32000, abs=0.06 * 16000)
    # Mono is the channel mean: 0.75 x the chirp; lossy codecs keep most of the energy.
    expected_rms = 0.75 * 0.5 / np.sqrt(2)
    assert np.sqrt(np.mean(audio**2)) == pytest.approx(expected_rms, rel=0.15)


@pytest.mark.parametrize("extension", sorted(FORMATS))
def test_partial_read_matches_the_same_stretch_of_a_full_decode(tmp_path: Path, extension: str):
    rate = 48000 if extension == "opus" else 16000  # 16 kHz mp3 needs the longest pre-roll
    path = tmp_path / f"clip.{extension}"
    soundfile.write(path, chirp(4.0, rate), rate, **FORMATS[extension])
    full = load_audio(path)
    for offset_s in (0.7, 1.5, 2.3):
        part = load_audio(path, offset_s=offset_s, duration_s=1.0)
        start = int(round(offset_s * rate))
        assert len(part) == rate
        # Same samples (to float rounding), lossy formats included: decoding restarts early.
        np.testing.assert_allclose(part, full[start : start + rate], atol=1e-6)


def test_read_past_the_end_is_shorter_and_past_the_start_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "clip.wav"
    save_audio(path, chirp(1.0), SAMPLE_RATE)
    assert len(load_audio(path, offset_s=0.5, duration_s=2.0)) == SAMPLE_RATE // 2
    with pytest.raises(AudioError, match="past the end"):
        load_audio(path, offset_s=1.5)


def test_resample_keeps_duration_and_frequency() -> None:
    tone = np.sin(2 * np.pi * 1000 * np.arange(44100) / 44100).astype(np.float32)
    resampled = resample(tone, 44100, 16000)
    assert len(resampled) == 16000
    spectrum = np.abs(np.fft.rfft(resampled))
    assert np.argmax(spectrum) == pytest.approx(1000, abs=2)  # 1 Hz bins over 1 s


def test_window_starts_cover_the_clip_and_a_short_clip_gets_one() -> None:
    np.testing.assert_allclose(window_starts(3.0, 1.0, 0.5), [0, 0.5, 1.0, 1.5, 2.0])
    np.testing.assert_allclose(window_starts(0.6, 1.0, 0.5), [0.0])


def test_corrupt_file_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.mp3"
    path.write_bytes(b"ID3\x03\x00 not really an mp3" * 10)
    with pytest.raises(AudioError, match="broken.mp3"):
        load_audio(path)


def test_missing_empty_and_zero_length_files_are_audio_errors(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="does not exist"):
        load_audio(tmp_path / "nowhere.wav")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="empty.wav"):
        audio_info(empty)
    zero_frames = tmp_path / "zero.wav"
    soundfile.write(zero_frames, np.zeros(0, dtype=np.float32), SAMPLE_RATE)
    with pytest.raises(AudioError, match="empty"):
        load_audio(zero_frames)


@pytest.mark.parametrize(
    "rates", [(44100, 8000), (48000, 16000), (22050, 16000), (16000, 8000), (8000, 16000)]
)
def test_resampling_is_torchaudios_windowed_sinc(rates: tuple[int, int]) -> None:
    """acr.audio.resample applies torchaudio's kernel in numpy: the same samples, to float32
    rounding, and the same length."""
    import torch
    import torchaudio

    noise = np.random.default_rng(0).standard_normal(rates[0] * 3).astype(np.float32) * 0.3
    expected = torchaudio.functional.resample(torch.from_numpy(noise), *rates).numpy()
    resampled = resample(noise, *rates)
    assert resampled.dtype == np.float32 and len(resampled) == len(expected)
    np.testing.assert_allclose(resampled, expected, atol=3e-5)


def test_decoding_and_the_fingerprint_path_never_import_torch(tmp_path: Path) -> None:
    """torch costs a process 500 MB: indexing workers, `acr index` and `acr recognize` of a
    fingerprint index do without it."""
    import subprocess
    import sys

    save_audio(tmp_path / "song.wav", chirp(6.0), SAMPLE_RATE)
    probe = (
        "import sys; from acr.cli import main;"
        f" main(['index', '--catalog', {str(tmp_path)!r}, '--output',"
        f" {str(tmp_path / 'index')!r}, '--workers', '1']);"
        f" main(['recognize', '--index', {str(tmp_path / 'index')!r},"
        f" {str(tmp_path / 'song.wav')!r}]);"
        " print('torch' in sys.modules, file=sys.stderr)"
    )
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr.strip().splitlines()[-1] == "False"
    assert '"track_id": "song"' in ran.stdout

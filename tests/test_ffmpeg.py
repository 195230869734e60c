"""acr.ffmpeg through acr.audio: what libsndfile cannot read (AAC in m4a, WMA, audio in video
containers) decodes through FFmpeg with the same contract, is indexed and recognised, and a bad
file is an AudioError with the reason. The files are made here with PyAV's own encoders."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from acr.audio import AudioError, audio_info, read_audio, scan_audio
from acr.retrieval.build import build_index
from acr.retrieval.recognizer import Recognizer
from acr.synth import synthesize_track

SONG_S = 12.0
# name: (container, audio codec, sample rate, with a video stream, decoded lag in samples):
# mp4 and Matroska record the encoder's delay and the decoder undoes it; FFmpeg's WMA encoder
# drops its first 2,048 samples (a frame) instead.
FORMATS = {
    "aac.m4a": ("ipod", "aac", 44100, False, 0),
    "wma.wma": ("asf", "wmav2", 44100, False, 2048),
    "opus_video.mkv": ("matroska", "libopus", 48000, True, 0),
    "aac_video.mp4": ("mp4", "aac", 44100, True, 0),
}


def song(seed: int, rate: int) -> np.ndarray:
    """A stereo song: the generated track left, half of it right."""
    mono = synthesize_track(seed, SONG_S, rate)
    return np.stack([mono, 0.5 * mono])


def write_media(
    path: Path,
    container: str,
    codec: str | None,
    rate: int = 44100,
    audio: np.ndarray | None = None,
    video_s: float = 0.0,
    title: str | None = None,
) -> None:
    """A file made with PyAV's encoders: stereo ``audio`` ([2, samples]) in ``codec``, and
    ``video_s`` of black 64x48 pictures when asked for."""
    with av.open(str(path), "w", format=container) as output:
        if title is not None:
            output.metadata["title"] = title
        if video_s:
            picture = output.add_stream("mpeg4", rate=10)
            picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
        if audio is not None:
            sound = output.add_stream(codec, rate=rate, layout="stereo")
            sound.bit_rate = 128000
            size = sound.codec_context.frame_size or 1024
            for first in range(0, audio.shape[1], size):
                chunk = np.ascontiguousarray(audio[:, first : first + size], dtype=np.float32)
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = rate, first
                output.mux(sound.encode(frame))
            output.mux(sound.encode(None))
        if video_s:
            for number in range(round(video_s * 10)):
                image = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
                image.pts = number
                output.mux(picture.encode(image))
            output.mux(picture.encode(None))


def encode(path: Path, seed: int) -> np.ndarray:
    """Write song ``seed`` in the format ``path``'s name gives; return its mono mix."""
    container, codec, rate, video, _ = FORMATS[path.name.split("-")[-1]]
    audio = song(seed, rate).astype(np.float32)
    write_media(path, container, codec, rate, audio, video_s=SONG_S if video else 0.0)
    return audio.mean(axis=0)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """One song per format, each a different song (seed), and their mono mixes by file name."""
    folder = tmp_path_factory.mktemp("ffmpeg")
    written = {}
    for seed, name in enumerate(FORMATS):
        path = folder / f"song{seed}-{name}"
        written[path.name] = encode(path, seed)
    return folder, written


@pytest.mark.parametrize("name", FORMATS)
def test_a_file_libsndfile_cannot_read_decodes_through_ffmpeg(catalog, name: str) -> None:
    folder, written = catalog
    [path] = folder.glob(f"*-{name}")
    _, _, rate, _, lag = FORMATS[name]
    info = audio_info(path)
    assert info.format.startswith("FFMPEG:") and info.sample_rate == rate and info.channels == 2
    assert info.duration_s == pytest.approx(SONG_S, abs=0.1)
    audio, file_rate = read_audio(path)
    original = written[path.name]
    assert file_rate == rate and audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == pytest.approx(len(original), abs=0.1 * rate)
    # In time with the original and close to it (lossy codecs): the best lag within 4,096
    # samples is the format's, where the correlation is high.
    excerpt = original[rate : 2 * rate]
    lags = np.arange(-4096, 4097)
    correlations = [np.dot(audio[rate + shift : 2 * rate + shift], excerpt) for shift in lags]
    assert lags[np.argmax(correlations)] == -lag
    length = min(len(audio), len(original) - lag)
    assert np.corrcoef(audio[:length], original[lag : lag + length])[0, 1] > 0.95
    duration_s, level = scan_audio(path)
    assert duration_s == pytest.approx(len(audio) / rate)
    assert level == pytest.approx(np.sqrt(np.mean(np.square(audio, dtype=np.float64))), rel=1e-4)


@pytest.mark.parametrize("name", FORMATS)
def test_a_read_from_an_offset_is_that_span_of_the_whole_decode(catalog, name: str) -> None:
    """Seeking (mp4/m4a) or counting samples from the start (mkv, wma) lands on the sample:
    the span matches the whole decode (AAC's noise substitution is random, so ~ not ==)."""
    folder, _ = catalog
    [path] = folder.glob(f"*-{name}")
    whole, rate = read_audio(path)
    for offset_s in (0.7, 5.3):
        span, _ = read_audio(path, offset_s, 2.0)
        start = round(offset_s * rate)
        expected = whole[start : start + len(span)]
        assert len(span) == 2 * rate
        if FORMATS[name][0] in ("asf", "matroska"):  # decoded from the start: the same samples
            np.testing.assert_array_equal(span, expected)
        assert np.corrcoef(span, expected)[0, 1] > 0.99
        shifted = [np.dot(span[8:-8], whole[start + 8 + lag : start + len(span) - 8 + lag])
                   for lag in range(-5, 6)]  # fmt: skip
        assert np.argmax(shifted) == 5  # not a sample early or late


def test_a_catalog_in_these_formats_is_indexed_and_recognised(catalog, tmp_path: Path) -> None:
    folder, written = catalog
    summary = build_index(str(folder), str(tmp_path / "index"), workers=1)
    assert summary.tracks == len(FORMATS) and summary.skipped == 0
    recognizer = Recognizer.load(tmp_path / "index")
    for seed, name in enumerate(FORMATS):
        rate = 16000
        clip = synthesize_track(seed, SONG_S, rate)[4 * rate : 7 * rate]
        [best, *_] = recognizer.recognize(clip, rate).matches
        assert best.track_id == f"song{seed}-{name.rsplit('.', 1)[0]}"
        assert best.offset_s == pytest.approx(4.0, abs=0.1)


def test_bad_files_for_ffmpeg_are_audio_errors_with_the_reason(catalog, tmp_path: Path) -> None:
    folder, _ = catalog
    garbage = tmp_path / "garbage.m4a"
    garbage.write_bytes(np.random.default_rng(0).bytes(20000))
    with pytest.raises(AudioError, match=r"garbage\.m4a: cannot decode"):
        audio_info(garbage)
    [m4a] = folder.glob("*-aac.m4a")
    cut = tmp_path / "cut.m4a"
    cut.write_bytes(m4a.read_bytes()[:2000])  # the header, no audio
    with pytest.raises(AudioError, match=r"cut\.m4a: "):
        read_audio(cut)
    silent_video = tmp_path / "picture_only.mp4"
    write_media(silent_video, "mp4", None, video_s=1.0)
    with pytest.raises(AudioError, match="holds no audio stream"):
        audio_info(silent_video)


def test_tags_that_are_not_utf8_do_not_stop_the_audio(catalog, tmp_path: Path) -> None:
    """Older files carry tags in Latin-1 and the like; PyAV decodes tags as UTF-8 by default
    (a UnicodeDecodeError opening such a file, met on the soundtrack corpus)."""
    path = tmp_path / "latin1.m4a"
    stereo = song(0, 44100)[:, : 44100 * 2]
    write_media(path, "ipod", "aac", 44100, stereo, title="TITLE-PLACEHOLDER")
    data = path.read_bytes()
    assert data.count(b"TITLE-PLACEHOLDER") == 1
    path.write_bytes(data.replace(b"TITLE-PLACEHOLDER", "Café Müller à 1".encode("latin-1")
                                  .ljust(len(b"TITLE-PLACEHOLDER"), b"\xe9")))  # fmt: skip
    assert audio_info(path).format.startswith("FFMPEG:")
    audio, rate = read_audio(path)
    assert rate == 44100 and len(audio) == pytest.approx(2 * 44100, abs=2048)

"""Audio decoding, mono mixing and resampling: the one place acr touches audio files.

soundfile (libsndfile >= 1.1) decodes wav, flac, ogg/vorbis, opus and mp3 and can seek, so a
partial read decodes only the frames it needs; what it cannot open (AAC and ALAC in m4a/mp4,
WMA, the audio of video containers) is decoded through FFmpeg (acr.ffmpeg, PyAV); resampling
is torchaudio's windowed sinc in numpy (:func:`resample`), so decoding never imports torch.

What cannot hold music is refused here, with the reason, so that no caller indexes or answers
noise: a sample rate below ``MIN_SAMPLE_RATE``, non-finite samples, zero frames; callers refuse
audio shorter than ``MIN_MUSIC_S``.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from acr import ffmpeg

# After a seek, libsndfile's mp3 and vorbis decoders lack the previous frames' bit reservoir and
# overlap for a few frames (measured: up to ~0.3 s of garbage in 16 kHz mp3). Decoding from this
# many frames earlier and dropping them makes a partial read equal to the full decode.
SEEK_PREROLL_FRAMES = 8192
FORMATS_NEEDING_PREROLL = ("MP3", "MPEG", "OGG")
MIX_BLOCK_FRAMES = 65536  # frames decoded at a time (_blocks)
RESAMPLE_ZEROS = 6  # the sinc's zero crossings either side (torchaudio's lowpass_filter_width)
RESAMPLE_ROLLOFF = 0.99  # the cutoff, as a share of the lower Nyquist frequency (torchaudio's)
RESAMPLE_BLOCKS = 4096  # blocks of input frames resampled in one matrix product
RESAMPLE_CONTEXT_S = 0.05  # decoded either side of a span read in pieces (read_resampled)


SNDFILE_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff")
FFMPEG_EXTENSIONS = (".m4a", ".aac", ".wma", ".mka", ".mp4", ".m4v", ".mkv", ".webm", ".mov")
AUDIO_EXTENSIONS = SNDFILE_EXTENSIONS + FFMPEG_EXTENSIONS
# The engines analyse 8-16 kHz audio; a file sampled below telephone rate (a header that says
# 1-100 Hz is corrupt, not music) would be upsampled into noise.
MIN_SAMPLE_RATE = 8000
# Shorter audio holds no music to recognise (a 1-sample file, a header claiming 2 GB over 20
# samples); also the shortest query acr answers.
MIN_MUSIC_S = 0.5
NON_FINITE = "holds non-finite samples (NaN or infinity)"
# A track quieter than -80 dBFS over its whole length holds nothing to recognise or learn from.
SILENCE_RMS = 1e-4
SILENT = "silent (below -80 dBFS)"


def audio_files(root: Path) -> list[Path]:
    """Every audio file (by extension) under ``root``, recursively, sorted."""
    return sorted(
        path
        for path in Path(root).rglob("*")
        if path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file()
    )


class AudioError(Exception):
    """An audio file that cannot be used: missing, unreadable, empty or out of range."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says, read without decoding the audio."""

    path: str
    sample_rate: int
    frames: int
    channels: int
    format: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def audio_info(path: str | Path) -> AudioInfo:
    """Read the header; raises AudioError for missing, unreadable or zero-length files and for
    sample rates below ``MIN_SAMPLE_RATE``."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "file does not exist" if not path.exists() else "not a file")
    try:
        sound = soundfile.info(_native(path))
        info = AudioInfo(str(path), sound.samplerate, sound.frames, sound.channels, sound.format)
    except (soundfile.LibsndfileError, RuntimeError) as error:
        try:
            info = AudioInfo(str(path), *ffmpeg.probe(path))
        except ffmpeg.DecodeError as ffmpeg_error:
            # The reason of the decoder the file's extension calls for.
            ffmpeg_file = path.suffix.lower() in FFMPEG_EXTENSIONS
            raise _decode_error(path, ffmpeg_error if ffmpeg_file else error) from error
    if info.frames <= 0 or info.sample_rate <= 0:
        raise AudioError(path, "audio is empty (zero frames)")
    if info.sample_rate < MIN_SAMPLE_RATE:
        raise AudioError(
            path, f"sample rate {info.sample_rate} Hz is below {MIN_SAMPLE_RATE} Hz: not music"
        )
    return info


def _native(path: str | Path) -> bytes:
    """The path as the OS spells it: a file name that is not valid UTF-8 reaches Python with
    surrogate escapes, which soundfile's own str -> bytes encoding rejects."""
    return os.fsencode(path)


def _decode_error(path: Path, error: Exception) -> AudioError:
    # libsndfile says "File does not exist or is not a regular file" for any data it cannot
    # open, such as a corrupt mp3; the file was found, so say what is really wrong.
    message = str(error)
    if "does not exist or is not a regular file" in message:
        return AudioError(path, "cannot decode: corrupt, or not an audio format acr reads")
    return AudioError(path, f"cannot decode ({message})")


def load_audio(
    path: str | Path,
    sample_rate: int | None = None,
    offset_s: float = 0.0,
    duration_s: float | None = None,
) -> np.ndarray:
    """Decode ``[offset_s, offset_s + duration_s)`` as mono float32, resampled to ``sample_rate``
    (default: the file's own rate); see :func:`read_audio`."""
    audio, file_rate = read_audio(path, offset_s, duration_s)
    return resample(audio, file_rate, sample_rate or file_rate)


def read_audio(
    path: str | Path, offset_s: float = 0.0, duration_s: float | None = None
) -> tuple[np.ndarray, int]:
    """Decode ``[offset_s, offset_s + duration_s)`` as mono float32 at the file's own rate;
    returns the audio and that rate.

    Only the requested frames are decoded (soundfile seeks). A window that runs past the end of
    the file is returned shorter; a window that starts past the end is an AudioError.
    """
    info = audio_info(path)
    if offset_s < 0:
        raise AudioError(path, f"offset_s must be >= 0, got {offset_s}")
    start_frame = int(round(offset_s * info.sample_rate))
    if start_frame >= info.frames:
        raise AudioError(path, f"offset {offset_s:.3f} s is past the end ({info.duration_s:.3f} s)")
    frames = -1 if duration_s is None else max(1, int(round(duration_s * info.sample_rate)))
    audio = read_frames(info, start_frame, frames)
    if len(audio) == 0:
        raise AudioError(path, "decoded zero frames")
    return audio, info.sample_rate


def read_frames(info: AudioInfo, start_frame: int, frames: int = -1) -> np.ndarray:
    """Frames ``[start_frame, start_frame + frames)`` of a file (``frames=-1``: to the end) as
    mono float32 at its own rate; shorter, or empty, where the file ends first.

    Decoded and mixed a block at a time (:func:`_blocks`): the interleaved frames of a whole
    10-minute 44.1-kHz stereo track would be 212 MB more.
    """
    if start_frame >= info.frames:
        return np.zeros(0, dtype=np.float32)
    path = Path(info.path)
    mono = np.empty(frames if frames > 0 else info.frames - start_frame, dtype=np.float32)
    filled = 0
    for block in _blocks(info, start_frame):
        if frames > 0:
            block = block[: frames - filled]
        if filled + len(block) > len(mono):  # the header said less than the file holds
            mono = np.concatenate([mono[:filled], np.empty(filled + len(block), np.float32)])
        mono[filled : filled + len(block)] = _mono(path, block)
        filled += len(block)
        if filled == frames:
            break
    return mono[:filled]


def _blocks(info: AudioInfo, start_frame: int = 0) -> Iterator[np.ndarray]:
    """The decoded ``[n, channels]`` float32 blocks of a file from ``start_frame`` to its end,
    by libsndfile or else FFmpeg (a block is overwritten by the next: use it before asking)."""
    path = Path(info.path)
    try:
        if info.format.startswith(ffmpeg.FORMAT_PREFIX):
            yield from ffmpeg.blocks(path, start_frame)
            return
        preroll = 0
        if info.format in FORMATS_NEEDING_PREROLL:
            preroll = min(start_frame, SEEK_PREROLL_FRAMES)
        with soundfile.SoundFile(_native(path)) as sound:
            if start_frame:
                sound.seek(start_frame - preroll)
            block = np.empty((MIX_BLOCK_FRAMES, sound.channels), dtype=np.float32)
            while read := len(sound.read(MIX_BLOCK_FRAMES, dtype="float32", out=block)):
                skip = min(preroll, read)
                preroll -= skip
                if skip < read:
                    yield block[skip:read]
    except (soundfile.LibsndfileError, RuntimeError, ffmpeg.DecodeError) as error:
        raise _decode_error(path, error) from error


def _mono(path: Path, audio: np.ndarray) -> np.ndarray:
    """The channels' mean, summed a column at a time: ``mean(axis=1)`` over interleaved frames
    took a fifth of the time of indexing a catalog. Non-finite samples are an AudioError."""
    channels = audio.shape[1]
    if channels == 1:
        mono = np.ascontiguousarray(audio[:, 0])
    else:
        mono = np.add(audio[:, 0], audio[:, 1])
        for channel in range(2, channels):
            mono += audio[:, channel]
        mono /= np.float32(channels)
    if not np.isfinite(mono).all():
        raise AudioError(path, NON_FINITE)
    return mono


def read_resampled(info: AudioInfo, sample_rate: int, start: int, stop: int) -> np.ndarray:
    """Samples ``[start, stop)`` of the file resampled to ``sample_rate``: equal to that span
    of :func:`resample` over the whole file, so a long file can be read in pieces of bounded
    memory. Decoded from a start on the resampling grid, with ``RESAMPLE_CONTEXT_S`` either
    side (the windowed-sinc kernel reaches a few dozen samples); shorter where the file ends.
    """
    ratio = math.gcd(info.sample_rate, sample_rate)
    step_in, step_out = info.sample_rate // ratio, sample_rate // ratio
    context = step_in * math.ceil(RESAMPLE_CONTEXT_S * ratio)  # file frames, on the grid
    aligned = start - start % step_out  # an output sample that falls on an input frame
    first = aligned * step_in // step_out
    last = -(-stop * step_in // step_out)
    read_from = max(0, first - context)
    audio = read_frames(info, read_from, last + context - read_from)
    skip = (first - read_from) * step_out // step_in + (start - aligned)
    return resample(audio, info.sample_rate, sample_rate)[skip : skip + stop - start]


@dataclass(frozen=True)
class Resampled:
    """A file's audio at ``sample_rate``, read a span at a time (:func:`read_resampled`):
    ``resampled(start, stop)`` is samples ``[start, stop)``. Picklable and small, so a worker
    can hand a long track to the main process without its samples."""

    info: AudioInfo
    sample_rate: int

    def __call__(self, start: int, stop: int) -> np.ndarray:
        return read_resampled(self.info, self.sample_rate, start, stop)

    def __len__(self) -> int:
        return resampled_length(self.info.frames, self.info.sample_rate, self.sample_rate)


def scan_audio(path: str | Path) -> tuple[float, float]:
    """Decode every frame, one block at a time: (duration_s, RMS level) in constant memory,
    whatever the file's length; non-finite samples are an AudioError. The duration is that of
    the audio that decodes: a header can claim more (a truncated mp3 keeps its frame count)."""
    info = audio_info(path)
    frames, energy = 0, 0.0
    for block in _blocks(info):
        mono = _mono(Path(path), block)
        frames += len(mono)
        energy += float(np.sum(np.square(mono, dtype=np.float64)))
    return frames / info.sample_rate, math.sqrt(energy / max(frames, 1))


def resample(audio: np.ndarray, orig_sample_rate: int, new_sample_rate: int) -> np.ndarray:
    """Band-limited resampling: torchaudio's windowed sinc (``sinc_interp_hann``, 6 zero
    crossings, rolloff 0.99), the same kernel applied in numpy.

    Hand-written so that decoding never imports torch: torch costs each indexing worker and
    every ``acr recognize`` about 500 MB and a second or two, and the fingerprint and melody
    need nothing else from it. The kernel is torchaudio's, computed the same way; each block
    of ``orig`` input frames gives ``new`` output samples as one matrix product, as
    torchaudio's strided convolution does. Within 2e-5 of torchaudio, and 2-3 times faster.
    """
    if orig_sample_rate == new_sample_rate:
        return np.ascontiguousarray(audio, dtype=np.float32)
    ratio = math.gcd(orig_sample_rate, new_sample_rate)
    orig, new = orig_sample_rate // ratio, new_sample_rate // ratio
    kernel, width = _sinc_kernel(orig, new)
    audio = np.asarray(audio, dtype=np.float32)
    padded = np.concatenate(
        [np.zeros(width, np.float32), audio, np.zeros(width + orig, np.float32)]
    )
    blocks = np.lib.stride_tricks.sliding_window_view(padded, len(kernel))[::orig]
    resampled = np.empty((len(blocks), new), dtype=np.float32)
    for first in range(0, len(blocks), RESAMPLE_BLOCKS):
        rows = slice(first, first + RESAMPLE_BLOCKS)
        np.matmul(np.ascontiguousarray(blocks[rows]), kernel, out=resampled[rows])
    return resampled.reshape(-1)[: resampled_length(len(audio), orig, new)]


def resampled_length(frames: int, orig_sample_rate: int, new_sample_rate: int) -> int:
    """How many samples :func:`resample` makes of ``frames``: ceil(frames * new / orig), as
    torchaudio."""
    return -(-frames * new_sample_rate // orig_sample_rate)


@functools.lru_cache(maxsize=16)
def _sinc_kernel(orig: int, new: int) -> tuple[np.ndarray, int]:
    """torchaudio's ``_get_sinc_resample_kernel`` for rates reduced by their gcd, as
    ``[taps, new]`` float32, and its half-width in input frames."""
    base = min(orig, new) * RESAMPLE_ROLLOFF
    width = math.ceil(RESAMPLE_ZEROS * orig / base)
    taps = np.arange(-width, width + orig, dtype=np.float64)[None, :] / orig
    # torchaudio divides the output phases in float32 before adding the taps in float64.
    phases = (np.arange(0, -new, -1) / new).astype(np.float32).astype(np.float64)[:, None]
    t = np.clip((phases + taps) * base, -RESAMPLE_ZEROS, RESAMPLE_ZEROS)
    window = np.cos(t * math.pi / RESAMPLE_ZEROS / 2) ** 2
    t = t * math.pi
    with np.errstate(invalid="ignore", divide="ignore"):
        kernels = np.where(t == 0, 1.0, np.sin(t) / t) * window * (base / orig)
    return np.ascontiguousarray(kernels.astype(np.float32).T), width


def power(audio: np.ndarray) -> float:
    """Mean square in float64, so level and SNR arithmetic stays exact for long clips."""
    return float(np.mean(np.square(audio, dtype=np.float64)))


def rms(audio: np.ndarray) -> float:
    """Root mean square level (1.0 is a full-scale square wave; -60 dBFS is 1e-3)."""
    return float(np.sqrt(power(audio)))


def fit_length(audio: np.ndarray, num_samples: int) -> np.ndarray:
    """Crop or zero-pad at the end to exactly ``num_samples``."""
    if len(audio) >= num_samples:
        return audio[:num_samples]
    return np.pad(audio, (0, num_samples - len(audio)))


def window_starts(duration_s: float, window_s: float, hop_s: float) -> np.ndarray:
    """Start times of sliding windows that fit in ``duration_s`` (one window if it is shorter)."""
    count = (
        int(np.floor((duration_s - window_s) / hop_s + 1e-6)) + 1 if duration_s > window_s else 1
    )
    return np.round(np.arange(count) * hop_s, 6)


def save_audio(path: str | Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write audio; the format follows the file extension (wav files are 16-bit PCM)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    subtype = "PCM_16" if path.suffix.lower() == ".wav" else None
    soundfile.write(_native(path), np.clip(audio, -1.0, 1.0), sample_rate, subtype=subtype)

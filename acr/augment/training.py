"""TrainingAugmentation: the random chain of effects that makes one contrastive training view."""

from dataclasses import dataclass

import numpy as np

from acr.audio import fit_length
from acr.augment.effects import (
    _resample_stretched,
    add_noise,
    add_reverb,
    apply_gain_db,
    band_limit,
    clip,
    convolve_room,
    equalize,
    gsm_codec,
    mono_float32,
    mp3_codec,
)
from acr.augment.sources import babble, noise_recording, pink_noise, recordings, room_recording


@dataclass
class TrainingAugmentation:
    """The random degradation chain that makes one contrastive training view.

    Order follows the signal path of a recorded query: playback speed and pitch at the source,
    the loudspeaker's tone, the room, background noise, the microphone's band limit, a codec,
    then gain and an overdriven input. Every probability and range is a field so a config file
    can set it. Noise comes from ``noise_dir`` (any audio files) or is generated, pink or
    babble; rooms from ``rir_dir`` (impulse responses) or are synthetic.
    """

    sample_rate: int = 16000
    noise_probability: float = 0.8
    snr_db_range: tuple[float, float] = (0.0, 20.0)
    noise_dir: str | None = None
    babble_share: float = 0.5
    reverb_probability: float = 0.5
    rt60_s_range: tuple[float, float] = (0.2, 1.0)
    rir_dir: str | None = None
    speed_probability: float = 0.3
    max_speed_change: float = 0.06
    pitch_probability: float = 0.3
    max_pitch_semitones: float = 2.0
    eq_probability: float = 0.3
    eq_gain_db_range: tuple[float, float] = (-10.0, 10.0)
    band_limit_probability: float = 0.3
    band_low_hz_range: tuple[float, float] = (50.0, 400.0)
    band_high_hz_range: tuple[float, float] = (3000.0, 7000.0)
    codec_probability: float = 0.2
    mp3_vbr_quality_range: tuple[float, float] = (4.0, 9.5)
    gain_db_range: tuple[float, float] = (-6.0, 6.0)
    clip_probability: float = 0.1
    drive_db_range: tuple[float, float] = (3.0, 12.0)

    def __post_init__(self) -> None:
        """Reject a bad config when it is loaded rather than inside a DataLoader worker."""
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be > 0, got {self.sample_rate}")
        for name in ("noise", "reverb", "speed", "pitch", "eq", "band_limit", "codec", "clip"):
            probability = getattr(self, f"{name}_probability")
            if not 0.0 <= probability <= 1.0:
                raise ValueError(f"{name}_probability must be in [0, 1], got {probability}")
        if not 0.0 <= self.babble_share <= 1.0:
            raise ValueError(f"babble_share must be in [0, 1], got {self.babble_share}")
        for name in (
            "snr_db",
            "rt60_s",
            "eq_gain_db",
            "band_low_hz",
            "band_high_hz",
            "mp3_vbr_quality",
            "gain_db",
            "drive_db",
        ):
            low, high = getattr(self, f"{name}_range")
            if low > high:
                raise ValueError(f"{name}_range must be (low, high), got ({low}, {high})")
        if not 0.0 <= self.max_speed_change < 1.0:
            raise ValueError(f"max_speed_change must be in [0, 1), got {self.max_speed_change}")
        if self.rt60_s_range[0] <= 0:
            raise ValueError(f"rt60_s_range must be positive, got {self.rt60_s_range}")
        for name in ("noise_dir", "rir_dir"):
            if getattr(self, name) is not None:
                try:
                    recordings(getattr(self, name))
                except ValueError as error:
                    raise ValueError(f"{name}: {error}") from error

    def __call__(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Return one augmented view with exactly len(audio) samples and peak at most 1."""
        view = self.source_view(audio, rng)
        if rng.random() < self.eq_probability:
            view = equalize(view, self.sample_rate, rng, self.eq_gain_db_range)
        if rng.random() < self.reverb_probability:
            view = self._room(view, rng)
        if rng.random() < self.noise_probability:
            view = add_noise(
                view, float(rng.uniform(*self.snr_db_range)), rng, self._noise(view, rng)
            )
        if rng.random() < self.band_limit_probability:
            view = self._band_limit(view, rng)
        if rng.random() < self.codec_probability:
            view = self.codec(view, rng)
        view = apply_gain_db(view, float(rng.uniform(*self.gain_db_range)))
        if rng.random() < self.clip_probability:
            view = self._overdrive(view, rng)
        return self._peak_safe(view)

    def _noise(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Background: a recording from noise_dir, or generated babble or pink noise."""
        if self.noise_dir is not None:
            return noise_recording(self.noise_dir, audio.size, self.sample_rate, rng)
        if rng.random() < self.babble_share:
            return babble(audio.size, self.sample_rate, rng)
        return pink_noise(audio.size, rng)

    def _room(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.rir_dir is None:
            return add_reverb(audio, self.sample_rate, float(rng.uniform(*self.rt60_s_range)), rng)
        path = str(rng.choice(recordings(self.rir_dir)))
        return convolve_room(audio, room_recording(path, self.sample_rate))

    def codec(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A low-bitrate mp3, or half the time the GSM phone codec."""
        if rng.random() < 0.5:
            return gsm_codec(audio, self.sample_rate)
        return mp3_codec(audio, self.sample_rate, float(rng.uniform(*self.mp3_vbr_quality_range)))

    def _overdrive(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Drive the peak ``drive_db`` past full scale into a hard clip."""
        peak = float(np.abs(audio).max()) or 1.0
        driven = apply_gain_db(audio / peak, float(rng.uniform(*self.drive_db_range)))
        return (clip(driven, 1.0) * peak).astype(np.float32)

    def source_view(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Random speed and pitch changes in one resampling, back at the input length: the
        part of the chain that acts at the source, and the part that acr.augment.batch leaves
        to the workers (every view has its own resampling ratio).

        A faster view is zero-padded at the end, a slower one cropped.
        """
        audio = mono_float32(audio)
        speed_factor, semitones = 1.0, 0.0
        if rng.random() < self.speed_probability:
            speed_factor += float(rng.uniform(-self.max_speed_change, self.max_speed_change))
        if rng.random() < self.pitch_probability:
            semitones = float(rng.uniform(-self.max_pitch_semitones, self.max_pitch_semitones))
        if speed_factor == 1.0 and semitones == 0.0:
            return audio
        resampled = _resample_stretched(audio, self.sample_rate, speed_factor, semitones)
        return fit_length(resampled, audio.size)

    def _band_limit(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Band-limit with random edges; the upper edge stays below Nyquist at any rate."""
        low_hz = float(rng.uniform(*self.band_low_hz_range))
        high_hz = min(float(rng.uniform(*self.band_high_hz_range)), 0.45 * self.sample_rate)
        return band_limit(audio, self.sample_rate, low_hz, high_hz)

    @staticmethod
    def _peak_safe(audio: np.ndarray) -> np.ndarray:
        """Scale down, rather than clip, when the chain pushed the peak beyond 1."""
        peak = float(np.max(np.abs(audio)))
        return audio / peak if peak > 1.0 else audio

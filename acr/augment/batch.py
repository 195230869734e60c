"""The training degradation chain on a batch of tensors, on whatever device trains the model.

``TrainingAugmentation`` degrades one numpy view at a time in DataLoader workers. Here the
same chain, with the same settings, runs on a whole batch after it reaches the training
device: EQ, room, noise, band limit, gain and overdrive are batched tensor operations, so on
a GPU they cost almost nothing and on a CPU they avoid per-view Python overhead. Two steps
stay per view: speed and pitch (a different resampling ratio for every view) run in the
workers (``TrainingAugmentation.source_view``), and the codecs (LAME and GSM via pedalboard)
run on the CPU for the few views that draw one.

Babble and recorded noise are expensive to make (a second of six-talker babble costs about
25 ms), so they come from a bank of clips made once, on first use, and cropped at random.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torchaudio.functional
from torch import nn

from acr.audio import fit_length
from acr.augment.effects import (
    EQ_HIGH_SHELF_SHARE_RANGE,
    EQ_LOW_SHELF_HZ_RANGE,
    EQ_PEAK_HIGHEST_SHARE,
    EQ_PEAK_LOWEST_HZ,
    EQ_PEAK_Q_RANGE,
)
from acr.augment.sources import (
    EARLY_REFLECTION_COUNT,
    EARLY_REFLECTION_MAX_S,
    EQUAL_ENERGY_RT60_S,
    babble,
    noise_recording,
    recordings,
    room_recording,
)
from acr.augment.training import TrainingAugmentation

SHELF_Q = 1.0 / math.sqrt(2.0)  # pedalboard's default for its shelf filters
BUTTERWORTH_Q = 1.0 / math.sqrt(2.0)


class BatchAugmentation(nn.Module):
    """Degrade a batch of views ``[batch, samples]`` as ``settings`` describes, on its device.

    Args:
        settings: the probabilities and ranges (the same object the workers' chain uses).
        noise_bank_clips: babble or recorded-noise clips kept for cropping.
        noise_bank_clip_s: length of each bank clip.
    """

    def __init__(
        self,
        settings: TrainingAugmentation,
        noise_bank_clips: int = 48,
        noise_bank_clip_s: float = 8.0,
    ) -> None:
        super().__init__()
        if noise_bank_clips < 1 or noise_bank_clip_s <= 0:
            raise ValueError("noise_bank_clips must be >= 1 and noise_bank_clip_s > 0")
        self.settings = settings
        self.noise_bank_clips = noise_bank_clips
        self.noise_bank_samples = int(noise_bank_clip_s * settings.sample_rate)
        self._noise_bank: torch.Tensor | None = None
        self._room_bank: torch.Tensor | None = None

    @torch.no_grad()
    def forward(self, views: torch.Tensor) -> torch.Tensor:
        """Return degraded copies of ``views``, same shape, each peak at most 1."""
        if views.ndim != 2 or views.shape[-1] == 0:
            raise ValueError(f"expected views of shape [batch, samples], got {tuple(views.shape)}")
        s = self.settings
        views = views.float().clone()
        steps = (
            (s.eq_probability, self._equalize),
            (s.reverb_probability, self._room),
            (s.noise_probability, self._add_noise),
            (s.band_limit_probability, self._band_limit),
            (s.codec_probability, self._codec),
        )
        for probability, step in steps:
            rows = self._draw_rows(views, probability)
            if rows.numel():
                views[rows] = step(views[rows])
        views = views * _db_to_gain(self._uniform(views, s.gain_db_range))[:, None]
        rows = self._draw_rows(views, s.clip_probability)
        if rows.numel():
            views[rows] = self._overdrive(views[rows])
        peaks = views.abs().amax(dim=1, keepdim=True)
        return views / peaks.clamp(min=1.0)

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _draw_rows(views: torch.Tensor, probability: float) -> torch.Tensor:
        return torch.nonzero(torch.rand(len(views), device=views.device) < probability)[:, 0]

    @staticmethod
    def _uniform(views: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
        low, high = value_range
        return low + (high - low) * torch.rand(len(views), device=views.device)

    @staticmethod
    def _numpy_rng() -> np.random.Generator:
        """A numpy generator drawn from torch's, so seed_everything replays numpy steps too."""
        return np.random.default_rng(int(torch.randint(2**62, (1,))))

    # -- steps ------------------------------------------------------------------------------
    def _equalize(self, views: torch.Tensor) -> torch.Tensor:
        """Low shelf, peak and high shelf with random gains (acr.augment.equalize, batched)."""
        rate, gains = self.settings.sample_rate, self.settings.eq_gain_db_range
        low_hz = self._uniform(views, EQ_LOW_SHELF_HZ_RANGE)
        log_peak_range = (math.log(EQ_PEAK_LOWEST_HZ), math.log(EQ_PEAK_HIGHEST_SHARE * rate))
        peak_hz = torch.exp(self._uniform(views, log_peak_range))
        peak_q = self._uniform(views, EQ_PEAK_Q_RANGE)
        high_hz = rate * self._uniform(views, EQ_HIGH_SHELF_SHARE_RANGE)
        views = _biquad(views, *low_shelf(low_hz, self._uniform(views, gains), rate))
        views = _biquad(views, *peak(peak_hz, self._uniform(views, gains), peak_q, rate))
        return _biquad(views, *high_shelf(high_hz, self._uniform(views, gains), rate))

    def _band_limit(self, views: torch.Tensor) -> torch.Tensor:
        """A 4th-order Linkwitz-Riley band-pass with random edges (acr.augment.band_limit)."""
        s = self.settings
        low_hz = self._uniform(views, s.band_low_hz_range)
        high_hz = self._uniform(views, s.band_high_hz_range).clamp(max=0.45 * s.sample_rate)
        return band_pass(views, low_hz, high_hz, s.sample_rate)

    def _room(self, views: torch.Tensor) -> torch.Tensor:
        """Convolve each view with a room, keeping its length and RMS."""
        if self.settings.rir_dir is None:
            rt60_s = self._uniform(views, self.settings.rt60_s_range)
            rooms = synthetic_rooms(rt60_s, self.settings.sample_rate)
        else:
            bank = self._rooms_from_folder(views.device)
            rooms = bank[torch.randint(len(bank), (len(views),), device=views.device)]
        reverberant = fft_convolve(views, rooms)
        return _match_power(reverberant, views)

    def _add_noise(self, views: torch.Tensor) -> torch.Tensor:
        """Add noise at an SNR drawn from the range; silent views stay silent."""
        snr_db = self._uniform(views, self.settings.snr_db_range)
        return add_noise_at_snr(views, self._noise(views), snr_db)

    def _noise(self, views: torch.Tensor) -> torch.Tensor:
        """Per view: a stretch of a noise_dir recording, or babble, or pink noise."""
        if self.settings.noise_dir is not None:
            return self._bank_crops(views)
        noise = pink_noise_batch(views)
        rows = self._draw_rows(views, self.settings.babble_share)
        if rows.numel():
            noise[rows] = self._bank_crops(views[rows])
        return noise

    def _codec(self, views: torch.Tensor) -> torch.Tensor:
        """mp3 or GSM per view on the CPU: the codecs are libraries, not tensor operations."""
        rng = self._numpy_rng()
        coded = [self.settings.codec(view, rng) for view in views.cpu().numpy()]
        return torch.from_numpy(np.stack(coded)).to(views.device)

    def _overdrive(self, views: torch.Tensor) -> torch.Tensor:
        """Drive each view's peak past full scale into a hard clip, then restore its scale."""
        peaks = views.abs().amax(dim=1, keepdim=True).clamp(min=1e-12)
        drive = _db_to_gain(self._uniform(views, self.settings.drive_db_range))[:, None]
        return (views / peaks * drive).clamp(-1.0, 1.0) * peaks

    # -- banks ------------------------------------------------------------------------------
    def _bank_crops(self, views: torch.Tensor) -> torch.Tensor:
        """A random stretch of a random bank clip for every view (wrapping around the clip)."""
        if self._noise_bank is None or self._noise_bank.device != views.device:
            self._noise_bank = self._make_noise_bank().to(views.device)
        bank = self._noise_bank
        clips = torch.randint(len(bank), (len(views),), device=views.device)
        offsets = torch.randint(bank.shape[1], (len(views),), device=views.device)
        positions = (offsets[:, None] + torch.arange(views.shape[1], device=views.device)) % (
            bank.shape[1]
        )
        return bank[clips[:, None], positions]

    def _make_noise_bank(self) -> torch.Tensor:
        s, rng = self.settings, self._numpy_rng()

        def clip() -> np.ndarray:
            if s.noise_dir is not None:
                return noise_recording(s.noise_dir, self.noise_bank_samples, s.sample_rate, rng)
            return babble(self.noise_bank_samples, s.sample_rate, rng)

        return torch.from_numpy(np.stack([clip() for _ in range(self.noise_bank_clips)]))

    def _rooms_from_folder(self, device: torch.device) -> torch.Tensor:
        """Every impulse response in ``rir_dir``, zero-padded to the longest, loaded once."""
        if self._room_bank is None or self._room_bank.device != device:
            rooms = [
                room_recording(path, self.settings.sample_rate)
                for path in recordings(self.settings.rir_dir)
            ]
            longest = max(room.size for room in rooms)
            padded = np.stack([fit_length(room, longest) for room in rooms])
            self._room_bank = torch.from_numpy(padded).to(device)
        return self._room_bank


# -- batched signal processing (also usable on their own) ------------------------------------
def _db_to_gain(decibels: torch.Tensor) -> torch.Tensor:
    return 10.0 ** (decibels / 20.0)


def _power(audio: torch.Tensor) -> torch.Tensor:
    return audio.double().square().mean(dim=-1)


def _match_power(audio: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Scale each row of ``audio`` to the mean power of the same row of ``reference``."""
    power = _power(audio)
    scale = torch.where(power > 0, (_power(reference) / power.clamp(min=1e-30)).sqrt(), 1.0)
    return (audio * scale[:, None]).float()


def add_noise_at_snr(
    audio: torch.Tensor, noise: torch.Tensor, snr_db: torch.Tensor
) -> torch.Tensor:
    """Add each row's noise scaled to its SNR (signal power over added noise power, in dB).

    Silent rows get no noise: any noise would make their SNR undefined.
    """
    signal_power, noise_power = _power(audio), _power(noise)
    if bool((noise_power == 0).any()):
        raise ValueError("a noise row is silent; it cannot be scaled to an SNR")
    scale = (signal_power / (noise_power * 10.0 ** (snr_db.double() / 10.0))).sqrt()
    return (audio + scale[:, None].float() * noise).float()


def pink_noise_batch(like: torch.Tensor) -> torch.Tensor:
    """Unit-RMS 1/f noise shaped like ``like`` (acr.augment.pink_noise, batched)."""
    rows, samples = like.shape
    bins = samples // 2 + 1
    spectrum = torch.randn(rows, bins, 2, device=like.device)
    spectrum = torch.view_as_complex(spectrum)
    weights = torch.arange(bins, device=like.device).float().clamp(min=1.0).rsqrt()
    weights[0] = 0.0
    noise = torch.fft.irfft(spectrum * weights, n=samples)
    return noise * _power(noise).clamp(min=1e-30).rsqrt()[:, None].float()


def synthetic_rooms(rt60_s: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """One unit-energy impulse response per RT60, zero-padded to the longest: a direct path
    at sample 0, early reflections and an exponentially decaying noise tail
    (acr.augment.synthetic_room_impulse_response, batched)."""
    device = rt60_s.device
    rows = len(rt60_s)
    length = int(sample_rate * max(float(rt60_s.max()), EARLY_REFLECTION_MAX_S)) + 1
    time_s = torch.arange(length, device=device) / sample_rate
    envelope = torch.exp(-math.log(1000.0) * time_s[None, :] / rt60_s[:, None])
    envelope = envelope * (time_s[None, :] <= rt60_s[:, None])  # each room's own length
    tail = torch.randn(rows, length, device=device) * envelope
    tail[:, 0] = 0.0
    tail_energy = tail.square().sum(dim=1, keepdim=True)
    rooms = tail * ((rt60_s[:, None] / EQUAL_ENERGY_RT60_S) / tail_energy).sqrt()
    rooms[:, 0] = 1.0
    max_delay = int(EARLY_REFLECTION_MAX_S * sample_rate)
    delays = torch.randint(1, max_delay + 1, (rows, EARLY_REFLECTION_COUNT), device=device)
    gains = 0.2 + 0.4 * torch.rand(rows, EARLY_REFLECTION_COUNT, device=device)
    signs = torch.randint(0, 2, (rows, EARLY_REFLECTION_COUNT), device=device) * 2.0 - 1.0
    rooms = rooms.scatter_add(1, delays, gains * signs)
    return rooms * rooms.square().sum(dim=1, keepdim=True).rsqrt()


def fft_convolve(audio: torch.Tensor, impulse_responses: torch.Tensor) -> torch.Tensor:
    """Row-wise linear convolution, truncated to the input length (the tail is dropped)."""
    samples = audio.shape[-1]
    size = samples + impulse_responses.shape[-1] - 1
    spectrum = torch.fft.rfft(audio, n=size) * torch.fft.rfft(impulse_responses, n=size)
    return torch.fft.irfft(spectrum, n=size)[..., :samples]


# RBJ "Audio EQ Cookbook" biquads with per-row parameters, written out because torchaudio's
# biquad helpers take one scalar setting for the whole batch. These are the formulas JUCE
# (and so pedalboard) uses, so a row filters as pedalboard's filter with the same settings.
def _angular(frequency_hz: torch.Tensor, sample_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
    omega = 2.0 * math.pi * frequency_hz.double() / sample_rate
    return torch.cos(omega), torch.sin(omega)


def low_shelf(
    frequency_hz: torch.Tensor, gain_db: torch.Tensor, sample_rate: int, q: float = SHELF_Q
) -> tuple[torch.Tensor, torch.Tensor]:
    """(b, a) of a low shelf, each [rows, 3]."""
    return _shelf(frequency_hz, gain_db, sample_rate, q, mirror=1.0)


def high_shelf(
    frequency_hz: torch.Tensor, gain_db: torch.Tensor, sample_rate: int, q: float = SHELF_Q
) -> tuple[torch.Tensor, torch.Tensor]:
    """(b, a) of a high shelf, each [rows, 3]."""
    return _shelf(frequency_hz, gain_db, sample_rate, q, mirror=-1.0)


def _shelf(
    frequency_hz: torch.Tensor, gain_db: torch.Tensor, sample_rate: int, q: float, mirror: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The cookbook's low shelf; ``mirror=-1`` turns it into the high shelf, whose formulas
    are the low shelf's with cos(omega) and the middle coefficients negated."""
    cos, sin = _angular(frequency_hz, sample_rate)
    cos = mirror * cos
    a = 10.0 ** (gain_db.double() / 40.0)
    beta = sin * a.sqrt() / q
    b = torch.stack(
        [
            a * ((a + 1) - (a - 1) * cos + beta),
            mirror * 2 * a * ((a - 1) - (a + 1) * cos),
            a * ((a + 1) - (a - 1) * cos - beta),
        ],
        dim=1,
    )
    den = torch.stack(
        [
            (a + 1) + (a - 1) * cos + beta,
            mirror * -2 * ((a - 1) + (a + 1) * cos),
            (a + 1) + (a - 1) * cos - beta,
        ],
        dim=1,
    )
    return b, den


def peak(
    frequency_hz: torch.Tensor, gain_db: torch.Tensor, q: torch.Tensor, sample_rate: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(b, a) of a peaking filter, each [rows, 3]."""
    cos, sin = _angular(frequency_hz, sample_rate)
    a = 10.0 ** (gain_db.double() / 40.0)
    alpha = sin / (2.0 * q.double())
    b = torch.stack([1 + alpha * a, -2 * cos, 1 - alpha * a], dim=1)
    den = torch.stack([1 + alpha / a, -2 * cos, 1 - alpha / a], dim=1)
    return b, den


def butterworth(
    frequency_hz: torch.Tensor, sample_rate: int, highpass: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(b, a) of a 2nd-order Butterworth low- or high-pass, each [rows, 3] (scipy's butter)."""
    cos, sin = _angular(frequency_hz, sample_rate)
    alpha = sin / (2.0 * BUTTERWORTH_Q)
    if highpass:
        b = torch.stack([(1 + cos) / 2, -(1 + cos), (1 + cos) / 2], dim=1)
    else:
        b = torch.stack([(1 - cos) / 2, 1 - cos, (1 - cos) / 2], dim=1)
    den = torch.stack([1 + alpha, -2 * cos, 1 - alpha], dim=1)
    return b, den


def band_pass(
    audio: torch.Tensor, low_hz: torch.Tensor, high_hz: torch.Tensor, sample_rate: int
) -> torch.Tensor:
    """Per-row 4th-order Linkwitz-Riley band-pass: two Butterworth sections at each edge."""
    highpass, lowpass = (
        butterworth(low_hz, sample_rate, True),
        butterworth(high_hz, sample_rate, False),
    )
    for b, a in (highpass, highpass, lowpass, lowpass):
        audio = _biquad(audio, b, a)
    return audio


def _biquad(audio: torch.Tensor, b: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Filter each row by its own normalised (b, a), in double precision for stability."""
    b, a = b / a[:, :1], a / a[:, :1]
    filtered = torchaudio.functional.lfilter(
        audio.double(), a.to(audio.device), b.to(audio.device), clamp=False, batching=True
    )
    return filtered.float()

"""ECAPA-TDNN embedder for music fingerprints (Desplanques et al. 2020, arXiv:2005.07143).

Written by hand: speechbrain ships one, but it drags a large dependency tree for ~150 lines.
The log-mel front end lives inside the module so the model takes raw waveforms.
"""

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor, nn

LOG_FLOOR = 1e-6


class TDNNBlock(nn.Module):
    """Conv1d -> ReLU -> BatchNorm, the frame layer used throughout the paper."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1):
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2
        self.convolution = nn.Conv1d(
            in_channels, out_channels, kernel_size, dilation=dilation, padding=padding
        )
        self.norm = nn.BatchNorm1d(out_channels)

    def forward(self, features: Tensor) -> Tensor:
        return self.norm(F.relu(self.convolution(features)))


class Res2NetConvolution(nn.Module):
    """Hierarchical split convolution: each group also sees the previous group's output,
    widening the receptive field at no extra cost (Gao et al. 2019, Res2Net)."""

    def __init__(self, channels: int, scale: int, dilation: int):
        super().__init__()
        if channels % scale:
            raise ValueError(f"channels ({channels}) must be divisible by res2net_scale ({scale})")
        self.scale = scale
        width = channels // scale
        self.blocks = nn.ModuleList(
            TDNNBlock(width, width, kernel_size=3, dilation=dilation) for _ in range(scale - 1)
        )

    def forward(self, features: Tensor) -> Tensor:
        groups = features.chunk(self.scale, dim=1)
        outputs = [groups[0]]
        previous = torch.zeros_like(groups[1])
        for group, block in zip(groups[1:], self.blocks, strict=True):
            previous = block(group + previous)
            outputs.append(previous)
        return torch.cat(outputs, dim=1)


class SqueezeExcitation(nn.Module):
    """Rescale channels from a global (whole-clip) summary (Hu et al. 2018)."""

    def __init__(self, channels: int, se_channels: int):
        super().__init__()
        self.squeeze = nn.Conv1d(channels, se_channels, kernel_size=1)
        self.excite = nn.Conv1d(se_channels, channels, kernel_size=1)

    def forward(self, features: Tensor) -> Tensor:
        summary = features.mean(dim=2, keepdim=True)
        weights = torch.sigmoid(self.excite(F.relu(self.squeeze(summary))))
        return features * weights


class SERes2NetBlock(nn.Module):
    """1x1 conv, dilated Res2Net conv, 1x1 conv, squeeze-excitation, residual (paper Fig. 1)."""

    def __init__(self, channels: int, scale: int, se_channels: int, dilation: int):
        super().__init__()
        self.layers = nn.Sequential(
            TDNNBlock(channels, channels, kernel_size=1),
            Res2NetConvolution(channels, scale, dilation),
            TDNNBlock(channels, channels, kernel_size=1),
            SqueezeExcitation(channels, se_channels),
        )

    def forward(self, features: Tensor) -> Tensor:
        return features + self.layers(features)


def weighted_statistics(features: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation over time, with weights summing to one along dim 2."""
    mean = (weights * features).sum(dim=2)
    variance = (weights * features.square()).sum(dim=2) - mean.square()
    return mean, variance.clamp(min=1e-8).sqrt()


class AttentiveStatisticsPooling(nn.Module):
    """Channel- and context-dependent attentive mean and std (paper Sec. 3.2): frames are
    concatenated with the clip's mean and std so attention can use global context."""

    def __init__(self, channels: int, attention_channels: int):
        super().__init__()
        self.attention = nn.Sequential(
            TDNNBlock(3 * channels, attention_channels, kernel_size=1),
            nn.Tanh(),
            nn.Conv1d(attention_channels, channels, kernel_size=1),
        )

    def forward(self, features: Tensor) -> Tensor:
        frame_count = features.shape[2]
        uniform = torch.full_like(features, 1.0 / frame_count)
        mean, std = weighted_statistics(features, uniform)
        context = torch.cat(
            [
                features,
                mean.unsqueeze(2).expand(-1, -1, frame_count),
                std.unsqueeze(2).expand(-1, -1, frame_count),
            ],
            dim=1,
        )
        weights = torch.softmax(self.attention(context), dim=2)
        mean, std = weighted_statistics(features, weights)
        return torch.cat([mean, std], dim=1)


class ECAPATDNN(nn.Module):
    """Raw waveform [batch, samples] -> unit-norm embedding [batch, embedding_dim].

    The embedding is L2-normalised instead of passing through a final BatchNorm: retrieval
    uses cosine similarity, and NT-Xent normalises anyway.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 64,
        n_fft: int = 512,
        win_length_s: float = 0.025,
        hop_length_s: float = 0.010,
        f_min_hz: float = 30.0,
        f_max_hz: float | None = None,
        channels: int = 256,
        embedding_dim: int = 128,
        res2net_scale: int = 8,
        se_channels: int = 128,
        attention_channels: int = 128,
        block_dilations: tuple[int, ...] = (2, 3, 4),
    ):
        super().__init__()
        # Declared so callers (EmbedderModule, the retrieval engine) know what to resample to.
        self.sample_rate = sample_rate
        self.embedding_dim = embedding_dim
        win_length = round(win_length_s * sample_rate)
        if win_length > n_fft:
            raise ValueError(f"window of {win_length} samples exceeds n_fft={n_fft}")
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=win_length,
            hop_length=round(hop_length_s * sample_rate),
            f_min=f_min_hz,
            f_max=f_max_hz,
            n_mels=n_mels,
        )
        self.input_block = TDNNBlock(n_mels, channels, kernel_size=5)
        self.blocks = nn.ModuleList(
            SERes2NetBlock(channels, res2net_scale, se_channels, dilation)
            for dilation in block_dilations
        )
        # Multi-layer feature aggregation (paper Sec. 3.3): 1536 channels for C=512.
        aggregated_channels = channels * len(block_dilations)
        self.aggregation = nn.Conv1d(aggregated_channels, aggregated_channels, kernel_size=1)
        self.pooling = AttentiveStatisticsPooling(aggregated_channels, attention_channels)
        self.pooled_norm = nn.BatchNorm1d(2 * aggregated_channels)
        self.projection = nn.Linear(2 * aggregated_channels, embedding_dim)

    def log_mel(self, waveform: Tensor) -> Tensor:
        """Log-mel minus its per-band time mean, so a gain or fixed EQ change cancels out.

        Computed in float32 with autocast off: the FFT and log are unsafe in half precision.
        """
        if waveform.dim() == 3:
            waveform = waveform.squeeze(1)
        if waveform.dim() != 2:
            raise ValueError(
                f"expected [batch, samples] or [batch, 1, samples], got {tuple(waveform.shape)}"
            )
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            log_mel = torch.log(self.mel(waveform.float()) + LOG_FLOOR)
            return log_mel - log_mel.mean(dim=2, keepdim=True)

    def forward(self, waveform: Tensor) -> Tensor:
        features = self.input_block(self.log_mel(waveform))
        block_outputs = []
        for block in self.blocks:
            features = block(features)
            block_outputs.append(features)
        aggregated = F.relu(self.aggregation(torch.cat(block_outputs, dim=1)))
        pooled = self.pooled_norm(self.pooling(aggregated))
        return F.normalize(self.projection(pooled), dim=1)

"""MuQ adapter: a frozen MuQ backbone with a small trained head (Zhu et al. 2025).

MuQ (``OpenMuQ/MuQ-large-msd-iter``) learns music by predicting Mel-RVQ tokens of masked audio:
24 kHz input, a 128-band log-mel front end, two residual conv blocks that subsample to 25
frames/s and 12 Conformer layers of 1024. The head and its rules are MERTAdapter's
(acr.models.mert_adapter): a softmax-weighted sum over the chosen hidden states, attentive
pooling and a projection to a unit vector; the backbone stays frozen and out of checkpoints,
and its features are not cached, for the reasons given there.

The model is built from the ``muq`` package's classes and the folder's config.json, and the
weights are loaded strictly from the folder: ``MuQ.from_pretrained`` would fall back to the Hub
and, by default, leave missing tensors at random without a word.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor, nn

from acr.models.ecapa import AttentiveStatisticsPooling

# The frozen-weight checkpoint hooks are MERTAdapter's; they need only backbone/frozen_names().
from acr.models.mert_adapter import _drop_frozen_weights, _restore_frozen_weights

BACKBONE_SAMPLE_RATE = 24000  # muq's MelSTFT is fixed at 24 kHz (hop 240: 100 mel frames/s)
WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")
WEIGHTS_HELP = (
    "acr never downloads at run time. On a machine with internet, fetch the weights with\n"
    "  hf download OpenMuQ/MuQ-large-msd-iter --local-dir weights/MuQ-large-msd-iter\n"
    "copy that folder (config.json, model.safetensors) to this machine, and point"
    " model.init_args.encoder.init_args.backbone at it."
)
# Parts of MuQModel that only pre-training reads (the token targets, the masked-mel
# reconstruction, the CLS token) and a positional conv its Conformer builds but never calls.
# They are removed before loading, so a weights file may hold them or not.
UNUSED_CHILDREN = ("rvq", "quantizer_", "recon_proj")
UNUSED_TENSORS = tuple(f"model.{name}" for name in UNUSED_CHILDREN) + (
    "model.cls_token",
    "model.conformer.pos_conv_embed.",
)


class MuQAdapter(nn.Module):
    """Raw waveform [batch, samples] -> unit-norm embedding [batch, embedding_dim].

    Args:
        backbone: a local folder with MuQ's config.json and model.safetensors (what
            ``hf download`` or ``MuQ.save_pretrained`` writes), or a hub id already in the
            local Hugging Face cache.
        sample_rate: the rate of the waveforms given to ``forward`` (the data module's rate);
            they are resampled to MuQ's 24 kHz inside the model.
        layers: hidden states to weigh (0 = the Conformer's input, i = layer i's output);
            None takes all. Layers above the highest one chosen are removed, not run.
        freeze: keep the backbone fixed and run it under ``torch.inference_mode``.
        unfreeze_top_layers: with ``freeze``, train the top K Conformer layers anyway.
        channels: width of the head's frame projection.
        attention_channels: hidden width of the attentive pooling.
        embedding_dim: output size.
    """

    def __init__(
        self,
        backbone: str,
        sample_rate: int = 24000,
        layers: list[int] | None = None,
        freeze: bool = True,
        unfreeze_top_layers: int = 0,
        channels: int = 256,
        attention_channels: int = 128,
        embedding_dim: int = 128,
    ) -> None:
        super().__init__()
        if unfreeze_top_layers < 0:
            raise ValueError(f"unfreeze_top_layers must be >= 0, got {unfreeze_top_layers}")
        if unfreeze_top_layers and not freeze:
            raise ValueError("unfreeze_top_layers needs freeze=true (freeze=false trains it all)")
        self.sample_rate = sample_rate
        self.embedding_dim = embedding_dim
        self.freeze = freeze
        self.backbone_sample_rate = BACKBONE_SAMPLE_RATE
        self.backbone = load_backbone(*resolve_backbone(backbone))
        self.resample = (
            torchaudio.transforms.Resample(sample_rate, BACKBONE_SAMPLE_RATE)
            if sample_rate != BACKBONE_SAMPLE_RATE
            else nn.Identity()
        )
        self.layers = self._keep_layers(layers)
        self.trainable_layer_count = self._set_trainable(unfreeze_top_layers)
        self.frozen_digest = self._digest_frozen()
        self.register_state_dict_post_hook(_drop_frozen_weights)
        self.register_load_state_dict_pre_hook(_restore_frozen_weights)

        width = self.backbone.config.encoder_dim
        self.layer_logits = nn.Parameter(torch.zeros(len(self.layers)))
        self.frame_norm = nn.LayerNorm(width)
        self.frame_projection = nn.Conv1d(width, channels, kernel_size=1)
        self.pooling = AttentiveStatisticsPooling(channels, attention_channels)
        self.pooled_norm = nn.BatchNorm1d(2 * channels)
        self.projection = nn.Linear(2 * channels, embedding_dim)

    @property
    def conformer(self) -> nn.Module:
        return self.backbone.model.conformer

    def _keep_layers(self, layers: list[int] | None) -> list[int]:
        """Validate ``layers`` and cut the Conformer above the highest one chosen."""
        count = len(self.conformer.layers) + 1
        chosen = list(range(count)) if layers is None else sorted(set(layers))
        if not chosen or chosen[0] < 0 or chosen[-1] >= count:
            raise ValueError(f"layers {layers}: the backbone has hidden states 0..{count - 1}")
        if chosen[-1] < count - 1:
            del self.conformer.layers[chosen[-1] :]
            # The Conformer layer-normalises its last hidden state only; without that norm the
            # cut model's top state is the whole model's hidden state chosen[-1].
            self.conformer.layer_norm = nn.Identity()
        return chosen

    def _set_trainable(self, unfreeze_top_layers: int) -> int:
        """Freeze the backbone but its top ``unfreeze_top_layers``; returns how many train."""
        transformer = self.conformer.layers
        if unfreeze_top_layers > len(transformer):
            raise ValueError(
                f"unfreeze_top_layers={unfreeze_top_layers} but only {len(transformer)}"
                " Conformer layers are run"
            )
        self.backbone.requires_grad_(not self.freeze)
        for layer in transformer[len(transformer) - unfreeze_top_layers :]:
            layer.requires_grad_(True)
        return unfreeze_top_layers if self.freeze else len(transformer)

    def frozen_names(self) -> set[str]:
        """Backbone tensors that never train: rebuilt from ``backbone``, never checkpointed."""
        trainable = {name for name, p in self.backbone.named_parameters() if p.requires_grad}
        return {name for name in self.backbone.state_dict() if name not in trainable}

    def _digest_frozen(self) -> str:
        """sha256 of the frozen tensors: a checkpoint refuses a different backbone."""
        digest = hashlib.sha256()
        state = self.backbone.state_dict()
        for name in sorted(self.frozen_names()):
            digest.update(name.encode())
            digest.update(state[name].detach().cpu().reshape(-1).view(torch.uint8).numpy())
        return digest.hexdigest()

    def get_extra_state(self) -> dict[str, Any]:
        return {"frozen_digest": self.frozen_digest}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if state["frozen_digest"] != self.frozen_digest:
            raise ValueError(
                "this checkpoint's adapter was trained on a different backbone: the frozen"
                " weights at `backbone` do not match the ones it was trained with"
            )

    def train(self, mode: bool = True) -> MuQAdapter:
        """Train the head; the backbone stays in eval mode (no dropout, and its conv front
        end's batch norms keep their statistics), so training and indexing see one model."""
        super().train(mode)
        self.backbone.eval()
        return self

    def backbone_input(self, waveform: Tensor) -> Tensor:
        """Resampled to 24 kHz; MuQ normalises its log-mel itself (mean and std in config)."""
        if waveform.dim() == 3:
            waveform = waveform.squeeze(1)
        if waveform.dim() != 2:
            raise ValueError(
                f"expected [batch, samples] or [batch, 1, samples], got {tuple(waveform.shape)}"
            )
        return self.resample(waveform.float())

    def hidden_states(self, waveform: Tensor) -> Tensor:
        """The chosen hidden states, [layers, batch, frames, hidden]."""
        audio = self.backbone_input(waveform)
        if self.freeze and not self.trainable_layer_count:
            with torch.inference_mode():
                states = self._run_backbone(audio)
            return states.clone()  # an ordinary tensor again, usable by autograd in the head
        # The rotary embedding caches its table per length; one made under inference mode
        # (validation) cannot be saved for backward, so a run with trainable layers remakes it.
        positions = self.conformer.embed_positions
        if hasattr(positions, "cached_rotary_positional_embedding"):
            positions.cached_rotary_positional_embedding = None
        return self._run_backbone(audio)

    def _run_backbone(self, audio: Tensor) -> Tensor:
        output = self.backbone(audio, output_hidden_states=True)
        return torch.stack([output.hidden_states[index] for index in self.layers])

    def forward(self, waveform: Tensor) -> Tensor:
        states = self.hidden_states(waveform)
        weights = torch.softmax(self.layer_logits, dim=0)
        frames = torch.einsum("l,lbth->bth", weights, states)
        features = F.relu(self.frame_projection(self.frame_norm(frames).transpose(1, 2)))
        pooled = self.pooled_norm(self.pooling(features))
        return F.normalize(self.projection(pooled), dim=1)


def resolve_backbone(backbone: str) -> tuple[Path, Path]:
    """config.json and the weights file of a local folder, or of a hub id in the local cache;
    otherwise a clear error. Never downloads."""
    folder = Path(backbone).expanduser()
    if folder.is_dir():
        config = folder / "config.json"
        if not config.is_file():
            raise FileNotFoundError(
                f"MuQ backbone {folder}: the folder has no config.json.\n{WEIGHTS_HELP}"
            )
        weights = next((folder / name for name in WEIGHTS_FILES if (folder / name).is_file()), None)
        if weights is None:
            raise FileNotFoundError(
                f"MuQ backbone {folder}: the folder has config.json but no"
                f" {' or '.join(WEIGHTS_FILES)}.\n{WEIGHTS_HELP}"
            )
        return config, weights
    from huggingface_hub import try_to_load_from_cache

    def cached(filename: str) -> Path | None:
        try:
            found = try_to_load_from_cache(backbone, filename)
        except ValueError:  # not a valid hub id either: a path that does not exist
            return None
        return Path(found) if isinstance(found, str) else None

    config = cached("config.json")
    weights = next(filter(None, map(cached, WEIGHTS_FILES)), None)
    if config is None or weights is None:
        raise FileNotFoundError(
            f"MuQ backbone {backbone!r}: no such folder (relative paths start at {Path.cwd()}),"
            f" and not in the local Hugging Face cache.\n{WEIGHTS_HELP}"
        )
    return config, weights


def load_backbone(config: Path, weights: Path) -> nn.Module:
    """``muq.MuQ`` built from ``config`` (its MuQConfig fields), with every tensor its
    features read loaded from ``weights``; in eval mode."""
    try:
        from muq import MuQ, MuQConfig
    except ImportError as error:
        raise ImportError("MuQAdapter needs the muq package: pip install muq==0.1.0") from error
    settings = json.loads(config.read_text())
    fields = {field.name for field in dataclasses.fields(MuQConfig)}
    with _global_generators_kept():
        model = MuQ(MuQConfig(**{key: value for key, value in settings.items() if key in fields}))
    inner = model.model
    for name in [name for name, _ in inner.named_children() if name.startswith(UNUSED_CHILDREN)]:
        delattr(inner, name)
    del inner.cls_token, inner.conformer.pos_conv_embed
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(weights)
    else:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    state = {key: value for key, value in state.items() if not key.startswith(UNUSED_TENSORS)}
    misfit = f"MuQ backbone {weights}: these weights do not fit {config}"
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # a tensor of another shape
        reasons = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
        raise ValueError(f"{misfit}: {reasons[0] if reasons else error}") from error
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{misfit}: {len(result.missing_keys)} tensors missing"
            f" {result.missing_keys[:3]}, {len(result.unexpected_keys)} unexpected"
            f" {result.unexpected_keys[:3]}"
        )
    return model.eval()


@contextmanager
def _global_generators_kept() -> Iterator[None]:
    """MuQModel's constructor seeds torch's and Python's global generators (with 142): keep
    the run's own seeding (seed_everything, the seeds of ``acr sweep``) as it was."""
    python_state = random.getstate()
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        random.setstate(python_state)

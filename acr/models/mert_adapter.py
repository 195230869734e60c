"""MERT adapter: a frozen music foundation model with a small trained head (Li et al. 2023).

The backbone (``m-a-p/MERT-v1-95M`` or any HuBERT/wav2vec2-shaped model that transformers
loads) turns audio into hidden states; the head learns a softmax-weighted sum over the chosen
layers (the MERT paper's probing setup), attentive pooling and a projection to a unit vector.

Backbone features are not cached: in every training pair the positive is degraded before it
reaches the backbone (the degradation is what the adapter must learn to ignore), and the clean
anchor is a 1-s crop at a random sample offset whose features depend, through self-attention,
on exactly that crop. A cache would serve only fixed crops of the anchor half of the batch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor, nn

from acr.models.ecapa import AttentiveStatisticsPooling

WEIGHTS_HELP = (
    "acr never downloads at run time. On a machine with internet, fetch the weights with\n"
    "  hf download m-a-p/MERT-v1-95M --local-dir weights/MERT-v1-95M\n"
    "(or huggingface_hub.snapshot_download('m-a-p/MERT-v1-95M', local_dir=...)), copy that"
    " folder to this machine, and point model.init_args.encoder.init_args.backbone at it."
)
NORMALIZE_EPSILON = 1e-7  # Wav2Vec2FeatureExtractor's zero-mean, unit-variance floor


class FrozenBackboneAdapter(nn.Module):
    """What the foundation-model adapters (MERTAdapter, acr.models.muq_adapter.MuQAdapter)
    share: the head (a softmax-weighted sum over the chosen hidden states, attentive pooling, a
    projection to a unit vector), freezing all of the backbone but its top layers, keeping the
    frozen weights out of checkpoints (a digest refuses another backbone), and the backbone in
    eval mode. A subclass loads its backbone, then calls ``_build``, and says how to reach its
    layers (``_transformer_layers``), cut them (``_keep_layers``) and run them
    (``_run_backbone``)."""

    layer_kind = "transformer"  # what the backbone's layers are called in messages

    def __init__(
        self, sample_rate: int, freeze: bool, unfreeze_top_layers: int, embedding_dim: int
    ) -> None:
        super().__init__()
        if unfreeze_top_layers < 0:
            raise ValueError(f"unfreeze_top_layers must be >= 0, got {unfreeze_top_layers}")
        if unfreeze_top_layers and not freeze:
            raise ValueError("unfreeze_top_layers needs freeze=true (freeze=false trains it all)")
        self.sample_rate = sample_rate
        self.embedding_dim = embedding_dim
        self.freeze = freeze

    def _build(
        self,
        backbone: nn.Module,
        backbone_sample_rate: int,
        layers: list[int] | None,
        unfreeze_top_layers: int,
        width: int,
        channels: int,
        attention_channels: int,
    ) -> None:
        """Attach ``backbone`` (hidden states ``width`` wide) and the head."""
        self.backbone = backbone
        self.backbone_sample_rate = backbone_sample_rate
        self.resample = (
            torchaudio.transforms.Resample(self.sample_rate, backbone_sample_rate)
            if self.sample_rate != backbone_sample_rate
            else nn.Identity()
        )
        self.layers = self._keep_layers(layers)
        self.trainable_layer_count = self._set_trainable(unfreeze_top_layers)
        self.frozen_digest = self._digest_frozen()
        self.register_state_dict_post_hook(_drop_frozen_weights)
        self.register_load_state_dict_pre_hook(_restore_frozen_weights)

        self.layer_logits = nn.Parameter(torch.zeros(len(self.layers)))
        self.frame_norm = nn.LayerNorm(width)
        self.frame_projection = nn.Conv1d(width, channels, kernel_size=1)
        self.pooling = AttentiveStatisticsPooling(channels, attention_channels)
        self.pooled_norm = nn.BatchNorm1d(2 * channels)
        self.projection = nn.Linear(2 * channels, self.embedding_dim)

    def _transformer_layers(self) -> nn.ModuleList:
        raise NotImplementedError

    def _keep_layers(self, layers: list[int] | None) -> list[int]:
        """Validate ``layers`` (None: every hidden state) and cut the backbone above the highest
        one chosen (``_cut_above``)."""
        count = len(self._transformer_layers()) + 1
        chosen = list(range(count)) if layers is None else sorted(set(layers))
        if not chosen or chosen[0] < 0 or chosen[-1] >= count:
            raise ValueError(f"layers {layers}: the backbone has hidden states 0..{count - 1}")
        self._cut_above(chosen[-1])
        return chosen

    def _cut_above(self, highest: int) -> None:
        """Remove the layers above hidden state ``highest``: they need not run."""
        raise NotImplementedError

    def _run_backbone(self, audio: Tensor) -> Tensor:
        """The chosen hidden states of ``audio``, [layers, batch, frames, hidden]."""
        raise NotImplementedError

    def _set_trainable(self, unfreeze_top_layers: int) -> int:
        """Freeze the backbone but its top ``unfreeze_top_layers``; returns how many train."""
        transformer = self._transformer_layers()
        if unfreeze_top_layers > len(transformer):
            raise ValueError(
                f"unfreeze_top_layers={unfreeze_top_layers} but only {len(transformer)}"
                f" {self.layer_kind} layers are run"
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

    def train(self, mode: bool = True) -> FrozenBackboneAdapter:
        """Train the head; the backbone stays in eval mode (no dropout, LayerDrop, masking or
        batch-norm updates), so a frozen backbone gives the same features in training and at
        index time."""
        super().train(mode)
        self.backbone.eval()
        return self

    def backbone_input(self, waveform: Tensor) -> Tensor:
        """[batch, samples] (or [batch, 1, samples]) resampled to the backbone's rate."""
        if waveform.dim() == 3:
            waveform = waveform.squeeze(1)
        if waveform.dim() != 2:
            raise ValueError(
                f"expected [batch, samples] or [batch, 1, samples], got {tuple(waveform.shape)}"
            )
        return self.resample(waveform.float())

    def _before_trainable_run(self) -> None:
        """What a backbone needs before a run that autograd records (nothing, here)."""

    def hidden_states(self, waveform: Tensor) -> Tensor:
        """The chosen hidden states, [layers, batch, frames, hidden]."""
        audio = self.backbone_input(waveform)
        if self.freeze and not self.trainable_layer_count:
            with torch.inference_mode():
                states = self._run_backbone(audio)
            return states.clone()  # an ordinary tensor again, usable by autograd in the head
        # Frozen parameters need no grad, so autograd records nothing below the first
        # trainable layer: the unfrozen top costs activations for itself only.
        self._before_trainable_run()
        return self._run_backbone(audio)

    def forward(self, waveform: Tensor) -> Tensor:
        states = self.hidden_states(waveform)
        weights = torch.softmax(self.layer_logits, dim=0)
        frames = torch.einsum("l,lbth->bth", weights, states)
        features = F.relu(self.frame_projection(self.frame_norm(frames).transpose(1, 2)))
        pooled = self.pooled_norm(self.pooling(features))
        return F.normalize(self.projection(pooled), dim=1)


class MERTAdapter(FrozenBackboneAdapter):
    """Raw waveform [batch, samples] -> unit-norm embedding [batch, embedding_dim].

    Args:
        backbone: a local folder written by ``save_pretrained`` / ``huggingface-cli download``,
            or a hub id already in the local Hugging Face cache.
        sample_rate: the rate of the waveforms given to ``forward`` (the data module's rate);
            they are resampled to the backbone's rate inside the model.
        layers: hidden states to weigh (0 = the transformer's input, i = layer i's output);
            None takes all. Layers above the highest one chosen are removed, not run.
        freeze: keep the backbone fixed and run it under ``torch.inference_mode``.
        unfreeze_top_layers: with ``freeze``, train the top K transformer layers anyway.
        backbone_sample_rate: the backbone's input rate; None reads ``sampling_rate`` from the
            folder's ``preprocessor_config.json`` (MERT: 24 kHz).
        trust_remote_code: run the model code shipped with the weights (MERT needs it:
            ``modeling_MERT.py``); only for folders you trust.
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
        backbone_sample_rate: int | None = None,
        trust_remote_code: bool = False,
        channels: int = 256,
        attention_channels: int = 128,
        embedding_dim: int = 128,
    ) -> None:
        super().__init__(sample_rate, freeze, unfreeze_top_layers, embedding_dim)
        location = resolve_backbone(backbone)
        model = load_backbone(location, trust_remote_code)
        preprocessing = read_preprocessing(location)
        backbone_sample_rate = backbone_sample_rate or preprocessing.get("sampling_rate")
        if not backbone_sample_rate:
            raise ValueError(
                f"{location}: no preprocessor_config.json with a sampling_rate;"
                " set backbone_sample_rate"
            )
        # Wav2Vec2FeatureExtractor normalises unless its config says otherwise.
        self.normalize_input = bool(preprocessing) and preprocessing.get("do_normalize", True)
        self._build(
            model,
            backbone_sample_rate,
            layers,
            unfreeze_top_layers,
            model.config.hidden_size,
            channels,
            attention_channels,
        )

    def _transformer_layers(self) -> nn.ModuleList:
        encoder = getattr(self.backbone, "encoder", None)
        layers = getattr(encoder, "layers", None)
        if not isinstance(layers, nn.ModuleList):
            raise TypeError(
                f"{type(self.backbone).__name__}: expected a HuBERT/wav2vec2-shaped model"
                " with encoder.layers"
            )
        return layers

    def _cut_above(self, highest: int) -> None:
        # Stable-layer-norm models normalise the last hidden state only: cutting would change it.
        if not getattr(self.backbone.config, "do_stable_layer_norm", False):
            del self._transformer_layers()[highest:]

    def backbone_input(self, waveform: Tensor) -> Tensor:
        """Resampled to the backbone's rate and, if its feature extractor says so, normalised."""
        audio = super().backbone_input(waveform)
        if self.normalize_input:
            mean = audio.mean(dim=1, keepdim=True)
            variance = audio.var(dim=1, keepdim=True, unbiased=False)
            audio = (audio - mean) / torch.sqrt(variance + NORMALIZE_EPSILON)
        return audio

    def _run_backbone(self, audio: Tensor) -> Tensor:
        output = self.backbone(audio, output_hidden_states=True, return_dict=True)
        return torch.stack([output.hidden_states[index] for index in self.layers])


def _drop_frozen_weights(
    module: MERTAdapter, state: dict[str, Tensor], prefix: str, metadata: Any
) -> None:
    for name in module.frozen_names():
        state.pop(f"{prefix}backbone.{name}", None)


def _restore_frozen_weights(
    module: MERTAdapter, state: dict[str, Tensor], prefix: str, *args: Any
) -> None:
    own = module.backbone.state_dict()
    for name in module.frozen_names():
        state.setdefault(f"{prefix}backbone.{name}", own[name])


def resolve_backbone(backbone: str) -> str:
    """A local folder, or a hub id found in the local cache; otherwise a clear error."""
    folder = Path(backbone).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"MERT backbone {folder}: the folder has no config.json.\n{WEIGHTS_HELP}"
            )
        return str(folder)
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(backbone, "config.json")
    except ValueError:  # not a valid hub id either: a path that does not exist
        cached = None
    if not isinstance(cached, str):
        raise FileNotFoundError(
            f"MERT backbone {backbone!r}: no such folder (relative paths start at {Path.cwd()}),"
            f" and not in the local Hugging Face cache.\n{WEIGHTS_HELP}"
        )
    return backbone


def load_backbone(location: str, trust_remote_code: bool) -> nn.Module:
    """``AutoModel.from_pretrained`` with downloads off."""
    try:
        from transformers import AutoModel
    except ImportError as error:
        raise ImportError("MERTAdapter needs transformers: pip install 'acr[mert]'") from error
    return AutoModel.from_pretrained(
        location, trust_remote_code=trust_remote_code, local_files_only=True
    )


def read_preprocessing(location: str) -> dict[str, Any]:
    """The backbone's feature-extractor settings (sampling_rate, do_normalize), if it has any."""
    folder = Path(location)
    if not folder.is_dir():
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(location, "preprocessor_config.json")
        if not isinstance(cached, str):
            return {}
        folder = Path(cached).parent
    path = folder / "preprocessor_config.json"
    return json.loads(path.read_text()) if path.is_file() else {}

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
import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor, nn

from acr.models.mert_adapter import FrozenBackboneAdapter

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


class MuQAdapter(FrozenBackboneAdapter):
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

    layer_kind = "Conformer"

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
        super().__init__(sample_rate, freeze, unfreeze_top_layers, embedding_dim)
        model = load_backbone(*resolve_backbone(backbone))
        self._build(
            model,
            BACKBONE_SAMPLE_RATE,
            layers,
            unfreeze_top_layers,
            model.config.encoder_dim,
            channels,
            attention_channels,
        )

    @property
    def conformer(self) -> nn.Module:
        return self.backbone.model.conformer

    def _cut_above(self, highest: int) -> None:
        if highest < len(self.conformer.layers):
            del self.conformer.layers[highest:]
            # The Conformer layer-normalises its last hidden state only; without that norm the
            # cut model's top state is the whole model's hidden state ``highest``.
            self.conformer.layer_norm = nn.Identity()

    def _transformer_layers(self) -> nn.ModuleList:
        return self.conformer.layers

    def _before_trainable_run(self) -> None:
        # The rotary embedding caches its table per length; one made under inference mode
        # (validation) cannot be saved for backward, so a run with trainable layers remakes it.
        positions = self.conformer.embed_positions
        if hasattr(positions, "cached_rotary_positional_embedding"):
            positions.cached_rotary_positional_embedding = None

    def _run_backbone(self, audio: Tensor) -> Tensor:
        output = self.backbone(audio, output_hidden_states=True)
        return torch.stack([output.hidden_states[index] for index in self.layers])


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

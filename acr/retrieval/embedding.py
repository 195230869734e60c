"""The embedding engine: a trained embedder's sliding-window vectors in an HNSW index."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from acr.audio import fit_length, window_starts
from acr.models import EmbedderModule
from acr.retrieval.engine import AudioPassthrough, Engine
from acr.retrieval.windows import WindowIndex, TrackMatch

MODEL_FILE = "model.ckpt"


def load_embedder(checkpoint: str | Path, device: str = "cpu") -> EmbedderModule:
    """An EmbedderModule from a checkpoint written by ``acr fit``, in eval mode."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint}: model checkpoint does not exist")
    model = EmbedderModule.load_from_checkpoint(checkpoint, map_location=device)
    if model.sample_rate is None:
        raise ValueError(f"{checkpoint}: the encoder does not declare a sample_rate")
    return model.eval()


class EmbeddingEngine(Engine):
    """Windows of ``window_s`` every ``hop_s`` embedded by the model and searched with HNSW.

    Args:
        checkpoint: an ``acr fit`` checkpoint; copied into the index so the index stands alone.
        window_s: window length; must match what the embedder was trained on.
        hop_s: catalog window hop (Chang et al. 2021: 0.5 s).
        query_hop_s: query window hop; denser, so some query window lines up with the catalog.
        neighbors: catalog windows retrieved per query window before voting.
        batch_size: windows per forward pass.
        device: ``cpu``, ``cuda`` or ``auto``.
    """

    name = "embedding"

    def __init__(
        self,
        checkpoint: str,
        window_s: float = 1.0,
        hop_s: float = 0.5,
        query_hop_s: float = 0.25,
        neighbors: int = 20,
        batch_size: int = 256,
        device: str = "auto",
    ) -> None:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = load_embedder(checkpoint, device)
        self.checkpoint = str(checkpoint)
        # Kept in memory: every snapshot of the index carries its own copy of the model.
        self._checkpoint_bytes = Path(checkpoint).read_bytes()
        self.checkpoint_sha256 = hashlib.sha256(self._checkpoint_bytes).hexdigest()
        self.device = device
        self.sample_rate = int(self.model.sample_rate)
        self.window_s, self.hop_s, self.query_hop_s = window_s, hop_s, query_hop_s
        self.window_samples = int(round(window_s * self.sample_rate))
        self.neighbors = neighbors
        self.batch_size = batch_size
        silence = np.zeros((1, self.window_samples), np.float32)
        self.index = WindowIndex(self.embed(silence).shape[1])

    @staticmethod
    def checkpoint_digest(checkpoint: str | Path) -> str:
        """sha256 of a checkpoint file: what an index records to tie itself to its model."""
        return hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()

    def extractor(self) -> AudioPassthrough:
        # Windows are cut in the main process, next to the model: they never cross processes.
        return AudioPassthrough()

    def embed(self, windows: np.ndarray) -> np.ndarray:
        """Unit embeddings of ``[n, window_samples]`` audio, in batches."""
        parts = []
        with torch.inference_mode():
            for first in range(0, len(windows), self.batch_size):
                batch = torch.from_numpy(windows[first : first + self.batch_size]).to(self.device)
                parts.append(self.model(batch).float().cpu().numpy())
        return np.concatenate(parts)

    def windows(self, audio: np.ndarray, hop_s: float) -> tuple[np.ndarray, np.ndarray]:
        """``[n, window_samples]`` windows every ``hop_s`` and their start times."""
        starts_s = window_starts(len(audio) / self.sample_rate, self.window_s, hop_s)
        starts = np.round(starts_s * self.sample_rate).astype(int)
        padded = fit_length(audio, max(len(audio), starts[-1] + self.window_samples))
        frames = np.lib.stride_tricks.sliding_window_view(padded, self.window_samples)[starts]
        return np.ascontiguousarray(frames), starts_s

    def add(self, track_id: str, features: np.ndarray) -> int:
        windows, starts_s = self.windows(features, self.hop_s)
        self.index.add(track_id, self.embed(windows), starts_s)
        return len(windows)

    def search(self, audio: np.ndarray, top_k: int = 5) -> list[TrackMatch]:
        if len(self.index) == 0 or len(audio) == 0:
            return []
        windows, starts_s = self.windows(np.asarray(audio, np.float32), self.query_hop_s)
        return self.index.rank_tracks(
            self.embed(windows), starts_s, top_k, self.neighbors, offset_bin_s=self.hop_s
        )

    @property
    def track_ids(self) -> list[str]:
        return list(self.index.track_ids)

    @property
    def item_count(self) -> int:
        return len(self.index)

    def settings(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self.checkpoint_sha256,
            "window_s": self.window_s,
            "hop_s": self.hop_s,
            "query_hop_s": self.query_hop_s,
            "neighbors": self.neighbors,
            "batch_size": self.batch_size,
        }

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.index.save(directory / "hnsw")
        (directory / MODEL_FILE).write_bytes(self._checkpoint_bytes)
        (directory / "settings.json").write_text(json.dumps(self.settings(), indent=2))

    @classmethod
    def load(cls, directory: Path) -> EmbeddingEngine:
        directory = Path(directory)
        settings = json.loads((directory / "settings.json").read_text())
        expected = settings.pop("checkpoint_sha256")
        settings["checkpoint"] = str(directory / MODEL_FILE)  # the copy travels with the index
        engine = cls(**settings)
        if engine.checkpoint_sha256 != expected:
            raise ValueError(f"{directory / MODEL_FILE}: model differs from the one indexed")
        engine.index = WindowIndex.load(directory / "hnsw")
        return engine

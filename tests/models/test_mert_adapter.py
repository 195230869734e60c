"""MERTAdapter on tiny random HuBERT backbones saved with save_pretrained, as MERT's folder is."""

import json
import math
from pathlib import Path

import pytest
import torch
from fixtures_data import TINY_CATALOG as SETTINGS
from fixtures_data import fit_two_steps
from fixtures_models import (
    TINY_HUBERT,
    TINY_SAMPLE_RATE,
    backbone_grads,
    contrastive_backward,
    write_hubert,
)
from fixtures_runs import recomputed

from acr.cli import main
from acr.models import MERTAdapter

HEAD = dict(channels=16, attention_channels=8, embedding_dim=24)


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_hubert(tmp_path_factory.mktemp("tiny-hubert"), TINY_HUBERT, TINY_SAMPLE_RATE)


def adapter(backbone: Path, **settings) -> MERTAdapter:
    torch.manual_seed(0)
    return MERTAdapter(str(backbone), **{"sample_rate": TINY_SAMPLE_RATE, **HEAD, **settings})


def test_loads_a_saved_backbone_and_returns_unit_embeddings(backbone: Path) -> None:
    model = adapter(backbone).eval()
    assert model.backbone_sample_rate == TINY_SAMPLE_RATE  # read from preprocessor_config.json
    assert model.normalize_input
    assert model.layers == [0, 1, 2]  # the input to the transformer and its 2 layers' outputs
    with torch.inference_mode():
        embeddings = model(torch.randn(3, TINY_SAMPLE_RATE))
    assert embeddings.shape == (3, 24)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(torch.softmax(model.layer_logits, 0), torch.full((3,), 1 / 3))


def test_input_is_resampled_to_the_backbones_rate(backbone: Path) -> None:
    model = adapter(backbone, sample_rate=8000)
    time_s = torch.arange(8000) / 8000
    tone = 0.5 * torch.sin(2 * math.pi * 1000.0 * time_s)
    audio = model.backbone_input(tone.unsqueeze(0))[0]
    assert audio.shape == (TINY_SAMPLE_RATE,)
    spectrum = torch.fft.rfft(audio).abs()
    assert spectrum.argmax().item() * TINY_SAMPLE_RATE / len(audio) == pytest.approx(1000.0, abs=1)
    assert audio.mean().abs() < 1e-4 and audio.std() == pytest.approx(1.0, abs=1e-3)


def test_layers_above_the_chosen_ones_are_not_run(backbone: Path) -> None:
    full, cut = adapter(backbone), adapter(backbone, layers=[0, 1])
    assert len(full.backbone.encoder.layers) == 2 and len(cut.backbone.encoder.layers) == 1
    waveform = torch.randn(2, TINY_SAMPLE_RATE)
    assert torch.allclose(full.hidden_states(waveform)[:2], cut.hidden_states(waveform), atol=1e-6)


def test_frozen_backbone_gets_no_gradient(backbone: Path) -> None:
    model = adapter(backbone)
    contrastive_backward(model, TINY_SAMPLE_RATE)
    assert all(grad is None for grad in backbone_grads(model).values())
    assert model.layer_logits.grad is not None and model.layer_logits.grad.abs().sum() > 0
    assert model.projection.weight.grad.abs().sum() > 0


def test_unfrozen_top_layers_get_gradients(backbone: Path) -> None:
    model = adapter(backbone, unfreeze_top_layers=1)
    contrastive_backward(model, TINY_SAMPLE_RATE)
    grads = backbone_grads(model)
    top = {name: grad for name, grad in grads.items() if name.startswith("encoder.layers.1.")}
    assert top and all(grad is not None and grad.abs().sum() > 0 for grad in top.values())
    assert all(grads[name] is None for name in grads if name not in top)


def test_checkpoint_keeps_only_what_trains_and_refuses_another_backbone(
    backbone: Path, tmp_path: Path
) -> None:
    model = adapter(backbone, unfreeze_top_layers=1).eval()
    state = model.state_dict()
    saved = {key for key in state if key.startswith("backbone.")}
    assert saved and all(key.startswith("backbone.encoder.layers.1.") for key in saved)
    with torch.no_grad():
        model.backbone.encoder.layers[1].feed_forward.output_dense.weight.add_(0.5)
    state = model.state_dict()
    restored = adapter(backbone, unfreeze_top_layers=1).eval()
    restored.load_state_dict(state)
    waveform = torch.randn(2, TINY_SAMPLE_RATE)
    with torch.inference_mode():
        assert torch.allclose(model(waveform), restored(waveform), atol=1e-6)
    other = write_hubert(tmp_path / "other", TINY_HUBERT, TINY_SAMPLE_RATE, seed=1)
    with pytest.raises(ValueError, match="different backbone"):
        adapter(other, unfreeze_top_layers=1).load_state_dict(state)


def test_missing_backbone_says_where_to_put_the_weights(
    backbone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "weights" / "MERT-v1-95M"
    with pytest.raises(FileNotFoundError, match="hf download m-a-p/MERT-v1-95M") as error:
        MERTAdapter(str(missing))
    assert str(missing) in str(error.value)
    missing.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        MERTAdapter(str(missing))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache"):
        MERTAdapter("m-a-p/MERT-v1-95M")


def test_bad_settings_name_the_field(backbone: Path) -> None:
    with pytest.raises(ValueError, match=r"layers \[0, 5\]: the backbone has hidden states 0..2"):
        adapter(backbone, layers=[0, 5])
    with pytest.raises(ValueError, match="unfreeze_top_layers=2 but only 1"):
        adapter(backbone, layers=[1], unfreeze_top_layers=2)
    with pytest.raises(ValueError, match="needs freeze=true"):
        adapter(backbone, freeze=False, unfreeze_top_layers=1)
    with pytest.raises(ValueError, match="set backbone_sample_rate"):
        (backbone / "preprocessor_config.json").rename(backbone / "moved.json")
        try:
            adapter(backbone)
        finally:
            (backbone / "moved.json").rename(backbone / "preprocessor_config.json")


@pytest.mark.slow
def test_shipped_config_fits_indexes_and_evaluates_with_a_tiny_backbone(
    backbone: Path, fma_root: Path, song_folder, shipped_config, workdir: Path
) -> None:
    encoder = {"backbone": str(backbone), "trust_remote_code": False}
    data = {"root": str(fma_root), **SETTINGS}
    cli = fit_two_steps(shipped_config("mert_adapter"), "runs/mert_adapter", data, encoder)
    assert cli.trainer.global_step == 2
    adapter_model = cli.model.encoder
    assert isinstance(adapter_model, MERTAdapter) and adapter_model.sample_rate == 24000
    checkpoint = workdir / "runs/mert_adapter/checkpoints/last.ckpt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    assert not any(key.startswith("encoder.backbone.") for key in state)

    catalog = song_folder(4, 12.0, 24000, folder=workdir / "catalog")
    common = ["--workers", "1"]
    assert main(["index", "--catalog", str(catalog), "--output", "index", "--engine",
                 "embedding", "--checkpoint", str(checkpoint), *common]) == 0  # fmt: skip
    assert main(["data", "make-queries", "--catalog", str(catalog), "--output", "queries",
                 "--lengths_s", "[3]", "--degradations", "[clean, noise]", "--seed", "1",
                 *common]) == 0  # fmt: skip
    assert main(["evaluate", "--index", "index", "--queries", "queries/queries.csv",
                 "--output", "report.json", "--bootstrap", "100"]) == 0  # fmt: skip
    evaluation = json.loads(Path("report.json").read_text())
    report = evaluation["systems"]["embedding"]
    assert report["overall"]["queries"] == 8
    # Clean queries are cut from the catalog: some query window lines up with a catalog window.
    assert report["degradation=clean"]["top1"] >= 0.75
    noise = recomputed(evaluation["per_query"]["embedding"], "degradation=noise")
    assert noise["queries"] == 4
    assert report["degradation=noise"]["mrr"] == pytest.approx(noise["mrr"])


def test_model_code_shipped_with_the_weights_loads_only_when_trusted(tmp_path: Path) -> None:
    """MERT's folder carries its own model classes (auto_map in config.json), as this one does."""
    folder = write_hubert(tmp_path / "custom", TINY_HUBERT, TINY_SAMPLE_RATE)
    (folder / "configuration_custom.py").write_text(
        "from transformers import HubertConfig\n\n\n"
        "class CustomConfig(HubertConfig):\n    model_type = 'custom_hubert'\n"
    )
    (folder / "modeling_custom.py").write_text(
        "from transformers import HubertModel\n\n"
        "from .configuration_custom import CustomConfig\n\n\n"
        "class CustomModel(HubertModel):\n    config_class = CustomConfig\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config.update(
        model_type="custom_hubert",
        auto_map={
            "AutoConfig": "configuration_custom.CustomConfig",
            "AutoModel": "modeling_custom.CustomModel",
        },
    )
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="trust_remote_code"):
        adapter(folder)
    model = adapter(folder, trust_remote_code=True)
    assert type(model.backbone).__name__ == "CustomModel"
    assert model(torch.randn(2, TINY_SAMPLE_RATE)).shape == (2, 24)

"""MuQAdapter on tiny random MuQ backbones saved with save_pretrained, as MuQ's folder is."""

import math
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fixtures_models import backbone_grads, contrastive_backward
from torch.utils.data import DataLoader

from acr.cli import main
from acr.models import EmbedderModule
from acr.models.muq_adapter import MuQAdapter
from acr.models.trained import load_encoder

RATE = 24000
HEAD = dict(channels=16, attention_channels=8, embedding_dim=24)
# The Conformer settings MuQModel passes to transformers' Wav2Vec2ConformerEncoder (hidden
# size and depth come from encoder_dim and encoder_depth), and the log-mel statistics: those of
# MuQ's pre-training recipe (github.com/tencent-ailab/MuQ).
CONFORMER = dict(
    hidden_act="swish",
    hidden_dropout=0.1,
    activation_dropout=0.1,
    attention_dropout=0.1,
    conformer_conv_dropout=0.1,
    conv_depthwise_kernel_size=31,
    intermediate_size=4096,
    num_attention_heads=16,
    position_embeddings_type="rotary",
    rotary_embedding_base=10000,
    layer_norm_eps=1e-5,
    layerdrop=0.0,
    num_conv_pos_embeddings=128,
    num_conv_pos_embedding_groups=16,
    feat_extract_activation="gelu",
)
MEL_STATISTICS = dict(melspec_2048_mean=6.768444971712967, melspec_2048_std=18.417922652295623)
# The architecture of OpenMuQ/MuQ-large-msd-iter (329M parameters; 12 Conformer layers of
# 1024 at 25 frames/s), for throughput measurements: weights do not change the cost.
MUQ_LARGE = dict(use_rvq_target=True, stat=MEL_STATISTICS, w2v2_config=CONFORMER)
# 2 Conformer layers of 32 behind a conv front end of 8 channels: 47k parameters.
TINY_MUQ = dict(
    conv_dim=8,
    encoder_dim=32,
    encoder_depth=2,
    codebook_size=64,
    stat=MEL_STATISTICS,
    w2v2_config=dict(
        CONFORMER,
        conv_depthwise_kernel_size=3,
        intermediate_size=64,
        num_attention_heads=2,
        num_conv_pos_embeddings=4,
        num_conv_pos_embedding_groups=2,
    ),
)


def write_muq(folder: Path, settings: dict, seed: int = 0) -> Path:
    """A randomly initialised MuQ saved as the Hub folder is: config.json, model.safetensors.

    MuQ's constructor seeds torch itself, so ``seed`` perturbs the weights afterwards."""
    from muq import MuQ, MuQConfig

    model = MuQ(MuQConfig(**settings))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.01 * torch.randn(parameter.shape, generator=generator))
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_muq(tmp_path_factory.mktemp("tiny-muq"), TINY_MUQ)


def adapter(backbone: Path | str, **settings) -> MuQAdapter:
    torch.manual_seed(0)
    return MuQAdapter(str(backbone), **{"sample_rate": RATE, **HEAD, **settings})


def test_loads_a_saved_backbone_and_returns_unit_embeddings(backbone: Path) -> None:
    model = adapter(backbone).eval()
    assert model.sample_rate == RATE and model.backbone_sample_rate == 24000
    assert model.layers == [0, 1, 2]  # the Conformer's input and its 2 layers' outputs
    assert model.hidden_states(torch.randn(2, RATE)).shape == (3, 2, 25, 32)  # 25 frames/s
    with torch.inference_mode():
        embeddings = model(torch.randn(3, RATE))
    assert embeddings.shape == (3, 24)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(torch.softmax(model.layer_logits, 0), torch.full((3,), 1 / 3))


def test_features_are_the_packages_own(backbone: Path) -> None:
    """Loading strictly from config.json and model.safetensors gives what MuQ.from_pretrained
    gives, less the tensors features never read."""
    from muq import MuQ

    reference = MuQ.from_pretrained(str(backbone), local_files_only=True).eval()
    model = adapter(backbone)
    waveform = torch.randn(2, RATE) * 0.1
    with torch.inference_mode():
        expected = torch.stack(reference(waveform, output_hidden_states=True).hidden_states)
    assert torch.allclose(model.hidden_states(waveform), expected, atol=1e-5)
    assert not any(name.startswith(("model.rvq", "model.quantizer_", "model.cls_token"))
                   for name in model.backbone.state_dict())  # fmt: skip


def test_input_is_resampled_to_24_khz_and_not_normalised(backbone: Path) -> None:
    model = adapter(backbone, sample_rate=16000)
    time_s = torch.arange(16000) / 16000
    tone = 0.5 * torch.sin(2 * math.pi * 1000.0 * time_s)
    audio = model.backbone_input(tone.unsqueeze(0))[0]
    assert audio.shape == (24000,)
    spectrum = torch.fft.rfft(audio).abs()
    assert spectrum.argmax().item() * 24000 / len(audio) == pytest.approx(1000.0, abs=1)
    assert audio.abs().max() == pytest.approx(0.5, abs=0.02)  # MuQ normalises its log-mel
    assert model(torch.randn(2, 16000)).shape == (2, 24)


def test_layers_above_the_chosen_ones_are_not_run(backbone: Path) -> None:
    full, cut = adapter(backbone), adapter(backbone, layers=[0, 1])
    assert len(full.conformer.layers) == 2 and len(cut.conformer.layers) == 1
    waveform = torch.randn(2, RATE)
    # The cut model's top state is layer 1's output, not its layer-normalised version.
    assert torch.allclose(full.hidden_states(waveform)[:2], cut.hidden_states(waveform), atol=1e-6)


def test_frozen_backbone_gets_no_gradient(backbone: Path) -> None:
    model = adapter(backbone)
    contrastive_backward(model, RATE)
    assert all(grad is None for grad in backbone_grads(model).values())
    assert model.layer_logits.grad is not None and model.layer_logits.grad.abs().sum() > 0
    assert model.projection.weight.grad.abs().sum() > 0


def test_unfrozen_top_layers_get_gradients_after_an_inference_pass(backbone: Path) -> None:
    """Validation runs under inference mode first; its cached rotary table must not reach
    the backward pass of the next training step."""
    model = adapter(backbone, unfreeze_top_layers=1).eval()
    with torch.inference_mode():
        model(torch.randn(4, RATE))
    contrastive_backward(model, RATE)
    grads = backbone_grads(model)
    top = {name: g for name, g in grads.items() if name.startswith("model.conformer.layers.1.")}
    assert top and all(grad is not None and grad.abs().sum() > 0 for grad in top.values())
    assert all(grads[name] is None for name in grads if name not in top)


def test_checkpoint_keeps_only_what_trains_and_refuses_another_backbone(
    backbone: Path, tmp_path: Path
) -> None:
    model = adapter(backbone, unfreeze_top_layers=1).eval()
    state = model.state_dict()
    saved = {key for key in state if key.startswith("backbone.")}
    assert saved and all(key.startswith("backbone.model.conformer.layers.1.") for key in saved)
    with torch.no_grad():
        model.conformer.layers[1].ffn2.output_dense.weight.add_(0.5)
    state = model.state_dict()
    restored = adapter(backbone, unfreeze_top_layers=1).eval()
    restored.load_state_dict(state)
    waveform = torch.randn(2, RATE)
    with torch.inference_mode():
        assert torch.allclose(model(waveform), restored(waveform), atol=1e-6)
    other = write_muq(tmp_path / "other", TINY_MUQ, seed=1)
    with pytest.raises(ValueError, match="different backbone"):
        adapter(other, unfreeze_top_layers=1).load_state_dict(state)


def test_missing_or_incomplete_weights_name_the_path(
    backbone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "weights" / "MuQ-large-msd-iter"
    with pytest.raises(FileNotFoundError, match="hf download OpenMuQ/MuQ-large-msd-iter") as error:
        MuQAdapter(str(missing))
    assert str(missing) in str(error.value).splitlines()[0]
    missing.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=f"{missing}: the folder has no config.json"):
        MuQAdapter(str(missing))
    (missing / "config.json").write_bytes((backbone / "config.json").read_bytes())
    with pytest.raises(FileNotFoundError, match="has config.json but no model.safetensors"):
        MuQAdapter(str(missing))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache"):
        MuQAdapter("OpenMuQ/MuQ-large-msd-iter")


def test_a_hub_id_loads_from_the_local_cache_only(
    backbone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    repository = cache / "models--OpenMuQ--MuQ-large-msd-iter"
    (repository / "refs").mkdir(parents=True)
    (repository / "refs" / "main").write_text("0" * 40)
    snapshot = repository / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (snapshot / name).write_bytes((backbone / name).read_bytes())
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = adapter("OpenMuQ/MuQ-large-msd-iter")
    assert model.frozen_digest == adapter(backbone).frozen_digest


def test_weights_of_another_architecture_are_refused(backbone: Path, tmp_path: Path) -> None:
    """MuQ.from_pretrained loads non-strictly: a mismatch would leave random tensors."""
    deeper = write_muq(tmp_path / "deeper", {**TINY_MUQ, "encoder_depth": 3})
    (deeper / "config.json").write_bytes((backbone / "config.json").read_bytes())
    with pytest.raises(ValueError, match="do not fit .*config.json: 0 tensors missing"):
        adapter(deeper)
    wider = write_muq(tmp_path / "wider", {**TINY_MUQ, "encoder_dim": 48})
    (wider / "config.json").write_bytes((backbone / "config.json").read_bytes())
    with pytest.raises(ValueError, match="model.safetensors: .* size mismatch"):
        adapter(wider)


def test_construction_leaves_the_runs_seeding_alone(backbone: Path) -> None:
    """MuQModel seeds torch's and Python's generators; seed_everything must still decide."""
    heads = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        random.seed(seed)
        heads.append(MuQAdapter(str(backbone), **HEAD).projection.weight)
        assert random.random() == random.Random(seed).random()
    assert not torch.equal(*heads)


def test_muq_is_imported_only_by_the_constructor(
    backbone: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    importing = "import sys; sys.modules['muq'] = None; import acr.models.muq_adapter"
    subprocess.run([sys.executable, "-c", importing], check=True)  # as if muq were missing
    monkeypatch.setitem(sys.modules, "muq", None)
    with pytest.raises(ImportError, match=r"pip install muq==0\.1\.0"):
        MuQAdapter(str(backbone))


def test_bad_settings_name_the_field(backbone: Path) -> None:
    with pytest.raises(ValueError, match=r"layers \[0, 5\]: the backbone has hidden states 0..2"):
        adapter(backbone, layers=[0, 5])
    with pytest.raises(ValueError, match="unfreeze_top_layers=2 but only 1"):
        adapter(backbone, layers=[1], unfreeze_top_layers=2)
    with pytest.raises(ValueError, match="needs freeze=true"):
        adapter(backbone, freeze=False, unfreeze_top_layers=1)


def test_trains_as_the_encoder_of_embedder_module(backbone: Path) -> None:
    import lightning as L

    encoder = adapter(backbone, sample_rate=16000)
    frozen = {name: p.clone() for name, p in encoder.backbone.named_parameters()}
    head = encoder.projection.weight.clone()
    model = EmbedderModule(encoder, warmup_steps=1)
    audio = torch.randn(16, 16000) * 0.1
    pairs = [{"anchor": clip, "positive": clip + 0.05 * torch.randn(16000)} for clip in audio]
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, DataLoader(pairs, batch_size=8))
    assert trainer.global_step == 2
    assert not torch.equal(encoder.projection.weight, head)
    assert all(torch.equal(p, frozen[name]) for name, p in encoder.backbone.named_parameters())


@pytest.mark.slow
def test_fits_from_the_cli_and_a_checkpoint_rebuilds_it(
    backbone: Path, tiny_config: str, workdir: Path
) -> None:
    encoder = {
        "class_path": "acr.models.muq_adapter.MuQAdapter",
        "init_args": {"backbone": str(backbone), "sample_rate": 16000, **HEAD},
    }
    cli = main(["fit", "--config", tiny_config, "--trainer.max_steps=2",
                f"--model.init_args.encoder={encoder}"])  # fmt: skip
    assert cli.trainer.global_step == 2 and isinstance(cli.model.encoder, MuQAdapter)
    checkpoint = workdir / "runs/tiny/checkpoints/last.ckpt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    assert not any(key.startswith("encoder.backbone.") for key in state)
    trained = load_encoder(checkpoint)  # torch alone, from the checkpoint's class_path
    assert isinstance(trained.encoder, MuQAdapter) and trained.sample_rate == 16000
    waveform = torch.randn(2, 16000)
    with torch.inference_mode():
        assert torch.allclose(trained.encoder(waveform), cli.model.encoder.eval()(waveform))

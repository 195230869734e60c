"""The ``acr`` command: LightningCLI for fit/validate/test/predict over acr's modules."""

from __future__ import annotations

from lightning.pytorch.cli import LightningCLI

import acr.retrieval  # noqa: F401  (registers RetrievalEvaluation for short class_path names)
from acr.datamodules import ACRDataModule
from acr.models import EmbedderModule


class ACRCLI(LightningCLI):
    """LightningCLI that also checks the data and the model agree on the sample rate."""

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        model_rate = getattr(self.model, "sample_rate", None)
        data_rate = getattr(self.datamodule, "sample_rate", None)
        if model_rate and data_rate and model_rate != data_rate:
            raise ValueError(
                f"data.init_args.sample_rate={data_rate} but the encoder expects {model_rate} Hz;"
                " set both to the same value"
            )


def main(args: list[str] | None = None) -> ACRCLI:
    """Run the CLI; ``args`` lets tests call it in-process (torchgeo style)."""
    return ACRCLI(
        EmbedderModule,
        ACRDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
        args=args,
    )

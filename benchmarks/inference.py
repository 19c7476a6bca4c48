"""Evaluation and inference throughput (images/s) on the 10,000 official test images.

  evaluation: the project's ``trainer.test`` loop (metrics, logging), at the config's eval batch size;
  inference:  the bare network under ``torch.inference_mode`` at several batch sizes.

    uv run python benchmarks/inference.py [--smoke] [hydra overrides]

``--smoke``: one repeat, one test batch, the bare network on 512 images (a check that it runs).
"""

from __future__ import annotations

import time

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from common import argument_parser, device_note, median, project_config
from mnist_budget.training.builders import build_datamodule, build_trainer
from mnist_budget.training.module import Classifier

REPEATS = 3
BATCH_SIZES = (128, 512, 2000, 10000)
SMOKE_BATCH_SIZES = (128, 512)  # on the first 512 test images


class TestTimer(Callback):
    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self.images = 0
        self.start = time.perf_counter()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.images += len(batch[1])

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - self.start


@torch.inference_mode()
def bare_inference(net: torch.nn.Module, images: torch.Tensor, batch_size: int) -> float:
    start = time.perf_counter()
    for chunk in range(0, len(images), batch_size):
        net(images[chunk : chunk + batch_size])
    if images.is_cuda:
        torch.cuda.synchronize()
    return len(images) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    args = argument_parser(__doc__).parse_intermixed_args(argv)
    repeats, batch_sizes = (1, SMOKE_BATCH_SIZES) if args.smoke else (REPEATS, BATCH_SIZES)
    smoke = ("trainer.limit_test_batches=1",) if args.smoke else ()
    cfg = project_config(
        "~callbacks.model_checkpoint", "~callbacks.last_checkpoint", "~callbacks.model_summary", *smoke, *args.overrides
    )
    L.seed_everything(cfg.seed, verbose=False)
    datamodule = build_datamodule(cfg)
    module = Classifier.from_config(cfg)
    rates = []
    for _ in range(repeats):
        timer = TestTimer()
        build_trainer(cfg, timer).test(module, datamodule=datamodule, verbose=False)
        rates.append(timer.images / timer.seconds)  # all 10,000 test images, unless trainer.limit_test_batches
    print(f"\n{device_note(cfg)}")
    print(f"evaluation (trainer.test, batch {cfg.data.eval_batch_size}): {median(rates):8.0f} images/s (median)")
    images = datamodule.prepare_images(datamodule.splits["test"].tensors[0], augment=False)
    if args.smoke:
        images = images[: max(batch_sizes)]
    net = module.net.to(images.device).eval()  # the trainer hands the module back on the CPU
    for batch_size in batch_sizes:
        rate = median(bare_inference(net, images, batch_size) for _ in range(repeats))
        print(f"inference (bare network, batch {batch_size:5d}):   {rate:8.0f} images/s (median)")


if __name__ == "__main__":
    main()

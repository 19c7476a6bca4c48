"""Time to target: seconds of training until the official test accuracy first reaches 99.4 %, for
the default config (or the overrides given), over one or several seeds.

The clock starts at the first training batch: one-time costs before it (data loading, model
summary, sanity check; compilation, where a config compiles) are reported separately. The test
set is evaluated after every epoch in this benchmark only, off the clock, as the config scores
it (with ``eval_tta``, the default's: each image's mean probability over its 1-pixel shifts); on
a GPU the clock is read after a CUDA synchronisation. Training stops at the first epoch that
reaches the target.

    uv run python benchmarks/time_to_target.py [--seeds 1,2,3,4,5] [--smoke] [hydra overrides]

``--smoke``: one epoch of one training batch and one validation batch, no sanity check (the
target is not reached: a check that it runs).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from common import argument_parser, compute_note, device_note, project_config
from mnist_budget.inference.classify import mean_probabilities
from mnist_budget.training.builders import build_datamodule, build_trainer
from mnist_budget.training.module import Classifier
from speed_probe import synchronized_clock

TARGET = 0.994
SMOKE_OVERRIDES = (
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=1",
    "trainer.num_sanity_val_steps=0",
)


class TestEveryEpoch(Callback):
    """After each epoch: official test accuracy, with the time it took kept off the clock."""

    def __init__(self, datamodule, tta: bool) -> None:
        self.datamodule = datamodule
        self.tta = tta
        self.created = time.perf_counter()
        self.start: float | None = None  # the first training batch
        self.eval_seconds = 0.0
        self.images = 0  # training images so far
        self.rows: list[tuple[int, float, float, int]] = []  # epoch, seconds, test accuracy, images trained

    @property
    def fixed_seconds(self) -> float:
        return (self.start or self.created) - self.created

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.start is None:
            self.start = synchronized_clock()
        self.images += len(batch[1])

    @torch.inference_mode()
    def test_accuracy(self, net: torch.nn.Module) -> float:
        images, labels = self.datamodule.splits["test"].tensors
        correct, batch = 0, self.datamodule.eval_batch_size  # the config's evaluation batch, as trainer.test uses
        for chunk in range(0, len(labels), batch):
            x = self.datamodule.prepare_images(images[chunk : chunk + batch], augment=False)
            scores = mean_probabilities(net, x, self.datamodule.spec.background) if self.tta else net(x)
            correct += (scores.argmax(1) == labels[chunk : chunk + batch]).sum().item()
        return correct / len(labels)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        paused = synchronized_clock()
        elapsed = paused - self.start - self.eval_seconds  # training time so far, earlier evaluations excluded
        pl_module.net.eval()
        accuracy = self.test_accuracy(pl_module.net)
        pl_module.net.train()
        self.eval_seconds += time.perf_counter() - paused
        self.rows.append((trainer.current_epoch + 1, elapsed, accuracy, self.images))
        print(f"epoch {trainer.current_epoch + 1}: test {100 * accuracy:.2f} % at {elapsed:.1f} s", flush=True)
        if accuracy >= TARGET:
            trainer.should_stop = True


def time_to_target(seed: int | None, overrides: Sequence[str] = ()) -> tuple[TestEveryEpoch, object]:
    """One run (``overrides``: the command line's); returns its probe (per-epoch rows, fixed costs) and its config."""
    cfg = project_config(
        "~callbacks.model_checkpoint",
        "~callbacks.last_checkpoint",
        *([f"seed={seed}"] if seed is not None else []),
        *overrides,
    )
    L.seed_everything(cfg.seed, verbose=False)
    datamodule = build_datamodule(cfg)
    probe = TestEveryEpoch(datamodule, tta=bool(cfg.eval_tta))
    trainer = build_trainer(cfg, probe)
    probe.created = time.perf_counter()
    trainer.fit(Classifier.from_config(cfg), datamodule=datamodule)
    return probe, cfg


def seed_list(text: str) -> list[int]:
    """``1,2,3`` -> [1, 2, 3]."""
    return [int(seed) for seed in text.split(",")]


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__)
    parser.add_argument(
        "--seeds",
        type=seed_list,
        default=[None],
        metavar="1,2,3",
        help="seeds to run, comma-separated (default: the config's)",
    )
    args = parser.parse_intermixed_args(argv)
    seeds = args.seeds
    overrides = [*(SMOKE_OVERRIDES if args.smoke else ()), *args.overrides]
    reached_seconds, lines, cfg, rates = [], [], None, []
    for seed in seeds:
        probe, cfg = time_to_target(seed, overrides)
        reached = [row for row in probe.rows if row[2] >= TARGET]
        label = f"seed {cfg.seed}"
        if reached:
            epoch, seconds, accuracy, images = reached[0]
            reached_seconds.append(seconds)
            lines.append(f"{label}: reached {100 * accuracy:.2f} % after {epoch} epochs, {seconds:.1f} s of training")
        else:
            epoch, seconds, accuracy, images = probe.rows[-1]
            lines.append(
                f"{label}: did NOT reach {100 * TARGET:.1f} %: {100 * accuracy:.2f} % after {epoch} epochs, {seconds:.1f} s"
            )
        lines[-1] += f" (one-time costs before the first batch: {probe.fixed_seconds:.1f} s)"
        rates.append(images / max(seconds, 1e-9))
    print(f"\n{device_note(cfg)}")
    print(
        f"test accuracy scored {'with' if cfg.eval_tta else 'without'} test-time augmentation (eval_tta={cfg.eval_tta})"
    )
    print(compute_note(cfg, statistics.median(rates), smoke=args.smoke))
    print("\n".join(lines))
    if len(seeds) > 1:
        median = f"median {statistics.median(reached_seconds):.1f} s" if reached_seconds else "no median"
        print(f"{len(reached_seconds)} of {len(seeds)} seeds reached {100 * TARGET:.1f} %; {median} of training")


if __name__ == "__main__":
    main()

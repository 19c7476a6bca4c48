"""The LightningModule: wraps a plain network built from the model config.

Its hyper-parameters are the model and optimiser configs as plain dictionaries and the data
set's name, so a checkpoint carries everything needed to rebuild the network and still loads
with ``torch.load(..., weights_only=True)``. A teacher to distil from (``distill=teacher``) is
no hyper-parameter and no submodule: it shapes training only, and the checkpoint never holds it.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from mnist_budget.checkpoints import dataset_of
from mnist_budget.data.sets import DataSet, dataset_name
from mnist_budget.inference.classify import mean_probabilities
from mnist_budget.models import build_network
from mnist_budget.training.distill import Distillation, load_teacher
from mnist_budget.training.optim import build_optimizer, build_scheduler

NUM_CLASSES = 10


class Classifier(L.LightningModule):
    """Cross-entropy classifier with per-stage accuracy, ``val/acc_best`` and a configurable optimiser."""

    def __init__(
        self, model: dict[str, Any], optim: dict[str, Any], dataset: str = "mnist", eval_tta: bool = False
    ) -> None:
        """``model``: a model config (``name``, ``budget``, ``net``); ``optim``: an optim config;
        ``dataset``: the data set it learns (saved, so that the tasks normalise and name classes
        as it did: ``mnist_budget.checkpoints.dataset_of``); ``eval_tta``: validate and test on
        the mean probability over each image and its one-pixel shifts
        (``mnist_budget.inference.classify``)."""
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.net: nn.Module = build_network(model["net"], model.get("name", "?"))
        # Label smoothing is part of the training recipe, so it lives in the optim config.
        self.criterion = nn.CrossEntropyLoss(label_smoothing=optim.get("label_smoothing", 0.0))
        self.example_input_array = torch.zeros(1, 1, 28, 28)  # lets the model summary show shapes
        # Keyed "<stage>_acc" / "<stage>_loss": a bare "train" key would clash with nn.Module.train.
        self.metrics = nn.ModuleDict()
        for stage in ("train", "val", "test"):
            self.metrics[f"{stage}_acc"] = MulticlassAccuracy(NUM_CLASSES, average="micro")
            self.metrics[f"{stage}_loss"] = MeanMetric()
        self.val_acc_best = MaxMetric()
        # Persistent: the metrics' running sums go into checkpoints, so a run resumed mid-epoch
        # reports the same epoch metrics as one that was never interrupted.
        for metric in (*self.metrics.values(), self.val_acc_best):
            metric.persistent(True)
        # What the test set shows beyond accuracy: per-class counts and the images it got wrong.
        self.test_confusion = MulticlassConfusionMatrix(NUM_CLASSES)
        self.test_mistakes: list[dict[str, Any]] = []
        self.test_matrix: list[list[int]] = []
        # A plain object, not a Module: nn.Module does not register the teacher inside it, so the
        # teacher stays out of state_dict(), checkpoints, the optimiser and Lightning's device moves.
        self.distillation: Distillation | None = None

    @classmethod
    def from_config(cls, cfg: DictConfig) -> Classifier:
        """Build from a composed run config, keeping only plain values as hyper-parameters; with
        ``distill.teacher``, the teacher it learns from too."""
        module = cls(
            model=OmegaConf.to_container(cfg.model, resolve=True),
            optim=OmegaConf.to_container(cfg.optim, resolve=True),
            dataset=dataset_name(cfg),
            eval_tta=bool(cfg.eval_tta),
        )
        module.distillation = load_teacher(cfg)
        return module

    @property
    def model_name(self) -> str:
        return self.hparams.model["name"]

    @property
    def data_set(self) -> DataSet:
        return dataset_of(self.hparams)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, stage: str, return_logits: bool = False
    ) -> torch.Tensor:
        """Loss (or, with ``return_logits``, the logits) of a batch; updates and logs the stage's metrics."""
        images, labels = batch
        if stage != "train" and self.hparams.get("eval_tta"):
            # Log-probabilities are logits whose softmax is the TTA mean: loss and accuracy use them as-is.
            logits = mean_probabilities(self, images, self.data_set.background).clamp_min(1e-12).log()
        else:
            logits = self(images)
        loss = self.training_loss(images, logits, labels) if stage == "train" else self.criterion(logits, labels)
        mean_loss, acc = self.metrics[f"{stage}_loss"], self.metrics[f"{stage}_acc"]
        # update(), not forward(): logged per epoch only, so no per-batch value needs computing.
        mean_loss.update(loss.detach(), weight=len(labels))
        acc.update(logits.detach(), labels)
        if stage == "train" and batch_idx != self.trainer.num_training_batches - 1:
            # Each self.log() call costs Lightning's bookkeeping (it copies the logged metric's
            # metadata; docs/performance.md, levers). The metric objects already hold every
            # batch's update, so logging them once, on the epoch's last batch, gives the same
            # epoch values (Lightning computes and resets them at the epoch's end).
            return loss
        self.log(f"{stage}/loss", mean_loss, on_step=False, on_epoch=True, prog_bar=stage != "test")
        self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, prog_bar=True)
        return logits if return_logits else loss

    def training_loss(self, images: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """What training minimises (and logs as train/loss): the cross-entropy, or with a teacher
        its share of it and of the distillation term (mnist_budget.training.distill)."""
        hard = self.criterion(logits, labels)
        return hard if self.distillation is None else self.distillation.loss(images, logits, hard)

    def on_fit_start(self) -> None:
        # Lightning has moved and cast the student by now, never the teacher (no submodule).
        if self.distillation is not None:
            self.distillation.follow(self.net)

    def on_train_start(self) -> None:
        # The sanity check ran validation already: forget it (val/acc_best never sees it, and a
        # resumed run keeps the best it restored).
        self.metrics["val_acc"].reset()
        self.metrics["val_loss"].reset()

    def on_train_epoch_start(self) -> None:
        # A checkpoint written after validation holds the finished epoch's sums (Lightning resets
        # them only later, at the epoch's end): a resumed run must not add the next epoch to them.
        self.metrics["train_acc"].reset()
        self.metrics["train_loss"].reset()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, batch_idx, "train")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, batch_idx, "val")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self.val_acc_best(self.metrics["val_acc"].compute())
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True)

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()
        self.test_mistakes = []

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        logits = self._step(batch, batch_idx, "test", return_logits=True)
        probabilities = logits.detach().float().softmax(dim=1)
        confidence, predicted = probabilities.max(dim=1)
        self.test_confusion.update(predicted, labels)
        data = self.data_set
        for i in (predicted != labels).nonzero().flatten().tolist():
            self.test_mistakes.append(
                {
                    "image": images[i, 0].float().cpu() * data.std + data.mean,
                    "label": int(labels[i]),
                    "predicted": int(predicted[i]),
                    "confidence": float(confidence[i]),
                }
            )

    def on_test_epoch_end(self) -> None:
        # Under DDP each process tested its own shard: the matrix sums over processes when
        # computed, and every process's mistakes are gathered (both are collective: all ranks).
        self.test_matrix = self.test_confusion.compute().cpu().tolist()
        if self.trainer.world_size > 1 and torch.distributed.is_initialized():
            parts: list[Any] = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(parts, self.test_mistakes)
            self.test_mistakes = [mistake for part in parts for mistake in part]

    def test_report(self) -> dict[str, Any]:
        """After ``trainer.test``: the confusion matrix, per-class accuracy and the misclassified images."""
        matrix = self.test_matrix
        per_class = {str(d): matrix[d][d] / max(1, sum(matrix[d])) for d in range(NUM_CLASSES)}
        return {"confusion_matrix": matrix, "per_class_acc": per_class, "mistakes": self.test_mistakes}

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = build_optimizer(self.hparams.optim, self.parameters())
        # Lightning knows the run's length: epochs x batches per epoch (limits included).
        scheduler = build_scheduler(self.hparams.optim, optimizer, lambda: int(self.trainer.estimated_stepping_batches))
        if scheduler is None:
            return {"optimizer": optimizer}
        interval = self.hparams.optim.get("interval", "epoch")
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}

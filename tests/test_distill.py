"""Knowledge distillation (``distill=teacher``): Hinton's loss, a teacher kept out of the student's
checkpoint, a short real run whose checkpoint ``task=eval`` reads without the teacher, and the
refusals of a bad teacher or bad settings before anything is written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import SHORT_RUN, compose_cfg, preflight_refusal, run_cli, snapshot
from mnist_budget.checkpoints import load_checkpoint
from mnist_budget.tasks.eval import evaluate
from mnist_budget.tasks.train import train
from mnist_budget.training.distill import Distillation
from mnist_budget.training.module import Classifier


@pytest.fixture
def teacher(trained_run: Path) -> Path:
    """A teacher checkpoint: the last weights of the shared short run (same data settings as the defaults)."""
    return trained_run / "checkpoints" / "last.ckpt"


def known_teacher() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10)).eval().requires_grad_(False)


def a_batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(16, 1, 28, 28, generator=generator), torch.randint(0, 10, (16,), generator=generator)


def test_the_loss_is_the_cross_entropy_at_weight_0_and_hintons_above(make_cfg):
    module = Classifier.from_config(make_cfg("optim.label_smoothing=0.1"))
    images, labels = a_batch()
    logits = module(images)
    cross_entropy = F.cross_entropy(logits, labels, label_smoothing=0.1)
    teacher = known_teacher()

    module.distillation = Distillation(teacher, temperature=3.0, weight=0.0)
    torch.testing.assert_close(module.training_loss(images, logits, labels), cross_entropy)

    module.distillation = Distillation(teacher, temperature=3.0, weight=0.7)
    loss = module.training_loss(images, logits, labels)
    soft_teacher, soft_student = (teacher(images) / 3).softmax(1), (logits / 3).softmax(1)
    kl = (soft_teacher * (soft_teacher.log() - soft_student.log())).sum(1).mean()  # KL(teacher || student)
    torch.testing.assert_close(loss, 0.3 * cross_entropy + 0.7 * 9 * kl)
    assert not torch.allclose(loss, cross_entropy)
    loss.backward()  # the student learns; the frozen teacher does not
    assert next(module.net.parameters()).grad is not None
    assert all(param.grad is None for param in teacher.parameters())


def test_without_a_teacher_the_loss_is_the_cross_entropy(make_cfg):
    module = Classifier.from_config(make_cfg())
    images, labels = a_batch()
    logits = module(images)
    assert module.distillation is None
    torch.testing.assert_close(module.training_loss(images, logits, labels), module.criterion(logits, labels))


def test_the_teacher_is_frozen_and_no_part_of_the_student(make_cfg, teacher):
    plain = Classifier.from_config(make_cfg())
    module = Classifier.from_config(make_cfg("distill=teacher", f"distill.teacher={teacher}"))
    distillation = module.distillation
    assert distillation is not None and (distillation.temperature, distillation.weight) == (4.0, 0.5)
    assert not distillation.teacher.training
    assert all(not param.requires_grad for param in distillation.teacher.parameters())
    assert list(module.state_dict()) == list(plain.state_dict())  # nothing of the teacher's
    teacher_params = {id(param) for param in distillation.teacher.parameters()}
    assert not teacher_params & {id(param) for param in module.parameters()}  # the optimiser never sees them
    assert set(module.hparams) == {"model", "optim", "dataset", "eval_tta"}  # no distill settings
    module.train()  # Lightning's switch to training mode reaches submodules only
    assert not distillation.teacher.training
    module.net.to(torch.bfloat16)  # as trainer.precision=bf16-true casts the student
    module.on_fit_start()
    assert all(param.dtype == torch.bfloat16 for param in distillation.teacher.parameters())


@pytest.mark.slow  # a real run with a teacher, then task=eval on its checkpoint
def test_a_short_run_with_a_teacher_writes_a_checkpoint_eval_reads_without_it(
    make_cfg, teacher, tmp_path, mnist_root, monkeypatch
):
    copy = tmp_path / "teacher" / "teacher.ckpt"
    copy.parent.mkdir()
    shutil.copy(teacher, copy)
    calls = []
    original = Distillation.loss

    def counted(self, images, student_logits, hard_loss):
        calls.append(next(self.teacher.parameters()).device == images.device)
        return original(self, images, student_logits, hard_loss)

    monkeypatch.setattr(Distillation, "loss", counted)
    train(make_cfg(*SHORT_RUN, "distill=teacher", f"distill.teacher={copy}", "eval_tta=false"))
    assert calls == [True] * 5  # each training batch, the teacher beside the student; not in validation or test

    student = tmp_path / "checkpoints" / "last.ckpt"
    saved = load_checkpoint(student)
    assert set(saved["hyper_parameters"]) == {"model", "optim", "dataset", "eval_tta"}
    assert all(key.startswith(("net.", "metrics.", "val_acc_best.")) for key in saved["state_dict"]), list(
        saved["state_dict"]
    )
    copy.unlink()  # eval must not need the teacher
    evaluate(compose_cfg(tmp_path / "eval", mnist_root, "task=eval", f"ckpt_path={student}", "eval_tta=false"))
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["task"] == "eval" and results["params"] == 19_634 and 0 <= results["test_acc"] <= 1


# Refusals ------------------------------------------------------------------------------------


def refused(folder: Path, data_dir: Path, *args: str) -> str:
    """The one-line refusal of ``args``, with ``folder`` (an earlier run's) left as it was."""
    before = snapshot(folder)
    line = preflight_refusal(*args, run_dir=folder, data_dir=data_dir)
    assert snapshot(folder) == before, "the refused command changed the earlier run's files"
    return line


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["distill=teacher"], "distill=teacher needs distill.teacher=<a teacher run's checkpoints/last.ckpt>"),
        (["distill.teacher=t.ckpt"], "distill.teacher=t.ckpt without the distill group's temperature and weight"),
        (
            ["distill=teacher", "distill.teacher=t.ckpt", "distill.temperature=0"],
            "distill.temperature=0 is invalid: it must be a positive number",
        ),
        (
            ["distill=teacher", "distill.teacher=t.ckpt", "distill.temperature=-2.5"],
            "distill.temperature=-2.5 is invalid: it must be a positive number",
        ),
        (
            ["distill=teacher", "distill.teacher=t.ckpt", "distill.weight=1.5"],
            "distill.weight=1.5 is invalid: it must be a share in [0, 1]",
        ),
        (
            ["distill=teacher", "distill.teacher=t.ckpt", "distill.weight=-0.1"],
            "distill.weight=-0.1 is invalid: it must be a share in [0, 1]",
        ),
    ],
)
def test_bad_distill_settings_are_refused(earlier_run, mnist_root, overrides, message):
    assert message in refused(earlier_run, mnist_root, *overrides)


def test_a_missing_teacher_or_a_file_that_is_no_checkpoint_is_refused(earlier_run, mnist_root, tmp_path):
    missing = tmp_path / "nope.ckpt"
    line = refused(earlier_run, mnist_root, "distill=teacher", f"distill.teacher={missing}")
    assert line == f"distill.teacher={missing} does not exist: give the path of a .ckpt file from a run's checkpoints/"
    notes = tmp_path / "notes.ckpt"
    notes.write_text("not a checkpoint")
    line = refused(earlier_run, mnist_root, "distill=teacher", f"distill.teacher={notes}")
    assert (
        line.startswith(f"distill.teacher={notes} is not a safe, readable checkpoint (") and "pick another file" in line
    )


def test_a_teacher_that_learnt_other_images_is_refused(earlier_run, mnist_root, teacher, tmp_path):
    checkpoint = torch.load(teacher, map_location="cpu", weights_only=True)
    fashion = tmp_path / "fashion.ckpt"
    torch.save(
        {**checkpoint, "hyper_parameters": {**checkpoint["hyper_parameters"], "dataset": "fashion_mnist"}}, fashion
    )
    line = refused(earlier_run, mnist_root, "distill=teacher", f"distill.teacher={fashion}")
    assert f"distill.teacher={fashion} was trained on fashion_mnist, this run on data.dataset=mnist" in line

    # Trained with another split (its run folder says so): it may have learnt this run's validation images.
    run = tmp_path / "teacher_run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("seed: 1\ndata:\n  val_size: 50\n  split_seed: ${seed}\n")
    (run / "checkpoints").mkdir()
    shutil.copy(teacher, run / "checkpoints" / "last.ckpt")
    line = refused(earlier_run, mnist_root, "distill=teacher", f"distill.teacher={run / 'checkpoints' / 'last.ckpt'}")
    assert "was trained with data.val_size=50 (its run's .hydra/config.yaml), this run has data.val_size=10000" in line
    assert line.endswith("train the teacher with this run's data settings (data=..., data.val_size, data.split_seed)")
    # The same split passes (the split seed through its interpolation).
    (run / ".hydra" / "config.yaml").write_text("seed: 12345\ndata:\n  val_size: 10000\n  split_seed: ${seed}\n")
    same_split = compose_cfg(
        tmp_path / "ok", mnist_root, "distill=teacher", f"distill.teacher={run}/checkpoints/last.ckpt"
    )
    assert Classifier.from_config(same_split).distillation is not None


@pytest.mark.parametrize(
    ("overrides", "start"),
    [
        (["distill=teacher", "distill.teacher=missing.ckpt"], "error: distill.teacher=missing.ckpt does not exist: "),
        (["distill=teacher", "distill.teacher=t.ckpt", "distill.weight=2"], "error: distill.weight=2 is invalid: "),
    ],
)
@pytest.mark.slow  # run.py processes, as a user runs them (the same refusals are checked in-process above)
def test_the_command_line_refuses_in_one_line_with_exit_2(earlier_run, mnist_root, overrides, start):
    before = snapshot(earlier_run)
    result = run_cli(*overrides, data_dir=mnist_root, run_dir=earlier_run)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(start), result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert snapshot(earlier_run) == before

"""The train task end to end on synthetic MNIST files: budget, early stop, checkpoints, results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_budget.errors import UserError
from mnist_budget.tasks.checks import check_training
from mnist_budget.tasks.preflight import check_run
from mnist_budget.tasks.train import train
from mnist_budget.training.builders import build_datamodule
from mnist_budget.training.module import Classifier

# A few batches per epoch keep these runs to seconds on two cores.
SHORT = [
    "trainer.limit_train_batches=8",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=1",
    "data.eval_batch_size=500",
    "data.batch_size=64",
    "trainer.log_every_n_steps=4",
]


def test_budget_smaller_than_the_model_stops_before_any_step(make_cfg, tmp_path):
    cfg = make_cfg(*SHORT, "model.budget=10000", "trainer.max_epochs=1")
    with pytest.raises(UserError, match=r"model fast_cnn has 19,634 trainable parameters, over its budget of 10,000"):
        train(cfg)
    assert not (tmp_path / "checkpoints").exists()
    assert not (tmp_path / "results.json").exists()


@pytest.mark.slow  # a real run of up to 12 short epochs
def test_early_stop_once_validation_accuracy_reaches_the_threshold(make_cfg, tmp_path):
    cfg = make_cfg(
        *SHORT,
        "trainer.max_epochs=12",
        "callbacks=[default,early_stopping]",
        "evaluation=every_epoch",
        "callbacks.early_stopping.stopping_threshold=0.9",
        "augment=none",
    )
    train(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    history = results["history"]
    assert len(history) < 12, "the threshold was never reached, so early stopping was not exercised"
    assert results["stopped_by"] == f"early stop: val/acc reached 0.9 in epoch {len(history)}"
    assert history[-1]["val/acc"] >= 0.9
    assert all(row["val/acc"] < 0.9 for row in history[:-1])


def test_run_writes_results_plot_checkpoints_and_real_hparams(make_cfg, tmp_path):
    cfg = make_cfg(*SHORT, "trainer.max_epochs=2")
    metrics = train(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    for key in ("model", "params", "budget", "epochs", "best_val_acc", "test_acc", "test_loss", "train_seconds"):
        assert key in results
    assert results["params"] == 19_634 and results["epochs"] == 2 == len(results["history"])
    assert results["test_acc"] == pytest.approx(metrics["test/acc"])
    # The default validates after its last epoch only (conf/evaluation/tta_at_end.yaml): the epoch-1
    # row carries no figures it did not measure.
    first, second = results["history"]
    assert "val/acc" not in first and "val/loss" not in first and "train/loss" in first
    assert 0 <= second["val/acc"] <= 1 and second["val/loss"] > 0 and results["eval_tta"] is True
    assert results["best_val_acc"] == pytest.approx(results["history"][-1]["val/acc"])
    assert metrics["val/acc"] == pytest.approx(results["history"][-1]["val/acc"])  # what hparams_search=record ranks
    assert (tmp_path / "training_metrics.png").stat().st_size > 0
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"train/loss", "val/acc", "val/acc_best", "test/acc", "model/params"} <= set(scalars)
    assert any(tag.startswith("lr") for tag in scalars)
    (hp_test_acc,) = events.Scalars("hp/test_acc")
    assert hp_test_acc.value == pytest.approx(results["test_acc"])

    # The best checkpoint reloads with weights_only=True and scores the same on the test set.
    import lightning as L

    raw = torch.load(results["best_checkpoint"], map_location="cpu", weights_only=True)
    assert raw["hyper_parameters"]["model"]["name"] == "fast_cnn"
    module = Classifier.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    trainer = L.Trainer(
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        precision=results["precision"],
        limit_test_batches=1,
    )
    (reloaded,) = trainer.test(module, datamodule=build_datamodule(cfg), verbose=False)
    assert reloaded["test/acc"] == pytest.approx(results["test_acc"])  # the final weights, as the run tested


@pytest.mark.slow  # two real runs (the slow suite's resume tests compare whole runs too)
def test_same_seed_same_metrics(make_cfg, tmp_path):
    histories = []
    for _ in range(2):
        cfg = make_cfg(*SHORT, "trainer.max_epochs=1", "trainer.limit_train_batches=4", "~callbacks.model_checkpoint")
        train(cfg)
        history = json.loads((tmp_path / "results.json").read_text())["history"]
        histories.append([{k: v for k, v in row.items() if k != "seconds"} for row in history])
    assert histories[0] == histories[1]


def test_bad_learning_rate_fails_before_loading_data(make_cfg, tmp_path):
    # The command line's checks (mnist_budget.tasks.runner runs them before Hydra's job starts).
    cfg = make_cfg("optim.lr=-1", f"paths.data_dir={tmp_path / 'nothing-here'}")
    with pytest.raises(UserError, match=r"optim.lr=-1 is invalid"):
        check_run(cfg, tmp_path)


def test_an_optimiser_torch_refuses_fails_before_loading_data(make_cfg, tmp_path):
    # A value that no rule of ours covers, refused by the optimiser itself when the preflight builds it.
    cfg = make_cfg("+optim.optimizer.dampening=0.5", f"paths.data_dir={tmp_path / 'nothing-here'}")
    with pytest.raises(UserError, match=r"invalid optimizer settings in optim: .*dampening"):
        check_training(cfg, tmp_path, multirun=False)


@pytest.mark.slow  # a real 2-epoch run
def test_results_keep_every_epoch_when_an_earlier_checkpoint_is_tested(make_cfg, tmp_path):
    # mode=min makes the "best" checkpoint an early one; testing it must not shorten the history.
    cfg = make_cfg(
        *SHORT,
        "trainer.max_epochs=2",
        "callbacks.model_checkpoint.mode=min",
        "test_checkpoint=best",
        "evaluation=every_epoch",
    )
    train(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["epochs"] == 2 == len(results["history"])
    assert results["tested_checkpoint"] == str(tmp_path / "checkpoints" / "epoch_000.ckpt")  # the worse epoch


def _conv_weights(module):
    # A weight with one input channel or a 1x1 kernel is contiguous in both layouts: it tells nothing.
    return [
        m.weight
        for m in module.net.modules()
        if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1 and m.kernel_size != (1, 1)
    ]


@pytest.mark.parametrize(
    ("layout", "device", "expect_channels_last"),
    [("channels_last", "cpu", True), ("contiguous", "cpu", False), ("auto", "cpu", True), ("auto", "cuda", True)],
)
def test_memory_format_callback_applies_the_resolved_layout(make_cfg, layout, device, expect_channels_last):
    from types import SimpleNamespace

    from mnist_budget.training.callbacks import MemoryFormat

    module = Classifier.from_config(make_cfg())
    # The callback only reads the trainer's device type, so a stand-in trainer says "cuda" without a GPU.
    trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=SimpleNamespace(type=device)))
    callback = MemoryFormat(layout)
    callback.setup(trainer, module, "fit")
    convs = _conv_weights(module)
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) == expect_channels_last for w in convs)
    assert callback.layout == ("channels_last" if expect_channels_last else "contiguous")


def test_unknown_memory_layout_is_a_user_error(make_cfg):
    cfg = make_cfg("callbacks.memory_format.layout=nhwc")
    with pytest.raises(UserError, match=r"callbacks.memory_format.layout=nhwc is unknown"):
        train(cfg)


@pytest.mark.parametrize("total_steps", [2, 3, 5, 10, 100])
def test_one_cycle_warmup_share_fits_short_runs(total_steps):
    from mnist_budget.training.optim import fit_warmup_share

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    pct = fit_warmup_share(0.2, total_steps)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=total_steps, pct_start=pct)
    for _ in range(total_steps - 1):  # stepping the whole schedule must not divide by zero
        optimizer.step()
        scheduler.step()
    assert fit_warmup_share(0.2, 5_000) == 0.2  # long runs keep the configured share


@pytest.mark.parametrize(
    ("switch", "kind"),
    [
        ("enable_progress_bar", "ProgressBar"),
        ("enable_model_summary", "ModelSummary"),
        ("enable_checkpointing", "ModelCheckpoint"),
    ],
)
def test_lightning_switches_turn_their_callbacks_off(make_cfg, switch, kind):
    import lightning.pytorch.callbacks as lightning_callbacks

    from mnist_budget.training.builders import build_trainer

    trainer = build_trainer(make_cfg(f"++trainer.{switch}=false"))
    assert not any(isinstance(cb, getattr(lightning_callbacks, kind)) for cb in trainer.callbacks)


@pytest.mark.parametrize(("show", "bars"), [("auto", 0), ("true", 1), ("false", 0)])
def test_the_progress_bar_shows_on_a_terminal_only(make_cfg, show, bars):
    from lightning.pytorch.callbacks import ProgressBar

    from mnist_budget.training.builders import build_trainer

    trainer = build_trainer(make_cfg(f"callbacks.progress_bar.show={show}"))  # pytest's stderr is no terminal
    assert sum(isinstance(cb, ProgressBar) for cb in trainer.callbacks) == bars


@pytest.mark.slow  # a real short run, its network traced by torch.compile
def test_a_compiled_network_trains_and_its_checkpoint_loads_into_a_plain_one(make_cfg, tmp_path):
    from torch._dynamo.utils import counters

    from mnist_budget.checkpoints import load_network

    counters.clear()
    cfg = make_cfg(*SHORT, "trainer.max_epochs=1", "callbacks.compile.mode=default", "callbacks.compile.backend=eager")
    train(cfg)
    assert counters["stats"]["unique_graphs"] >= 1  # torch.compile traced the network
    # Compiled in place: the weights keep their names, so the checkpoint is a plain network's.
    net, _ = load_network(tmp_path / "checkpoints" / "last.ckpt")
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert json.loads((tmp_path / "results.json").read_text())["epochs"] == 1


def test_the_resume_line_runs_python_as_the_user_did(monkeypatch, tmp_path):
    # `python run.py` outside the project's environment is another Python: the line says uv run
    # python under uv run (which sets UV), else this interpreter's own path.
    import sys

    from mnist_budget.training.callbacks import interruption_message

    stopped = {
        "signal": "SIGTERM",
        "epoch": 2,
        "step": 17,
        "checkpoint": str(tmp_path / "last.ckpt"),
        "saved_now": True,
    }
    monkeypatch.setenv("UV", "/usr/bin/uv")
    assert "resume with: uv run python run.py seed=3 ckpt_path=last" in str(
        interruption_message(stopped, tmp_path, ["seed=3"])
    )
    monkeypatch.delenv("UV")
    assert f"resume with: {sys.executable} run.py seed=3 ckpt_path=last" in str(
        interruption_message(stopped, tmp_path, ["seed=3"])
    )


@pytest.mark.parametrize(
    "trigger", ["callbacks.last_checkpoint.every_n_train_steps=3", "~callbacks.last_checkpoint.train_time_interval"]
)
def test_last_checkpoint_is_saved_after_every_epoch_and_once_at_the_end(make_cfg, tmp_path, monkeypatch, trigger):
    # With a step trigger (every 3 steps of two 8-step epochs) and with none: after each epoch once,
    # and not again when training ends.
    from mnist_budget.training.callbacks import AtomicCheckpointIO

    saves: list[tuple[str, int]] = []
    write = AtomicCheckpointIO.save_checkpoint

    def noted(self, checkpoint, path, storage_options=None):
        saves.append((Path(path).name, checkpoint["global_step"]))
        write(self, checkpoint, path, storage_options)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", noted)
    train(make_cfg(*SHORT, "trainer.max_epochs=2", trigger))
    last = [step for name, step in saves if name == "last.ckpt"]
    between = [3, 6, 9, 12, 15] if "every_n_train_steps" in trigger else []  # every 3 global steps
    assert last == sorted([*between, 8, 16])

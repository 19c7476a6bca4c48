"""Every refusal of the command line's preflight, in-process: one line naming the bad value, and an
earlier run's files in the same folder left exactly as they were. (tests/test_cli.py checks the
same through ``python run.py`` for a few of them: exit code 2, one ``error:`` line, no traceback.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, malicious_checkpoint, preflight_refusal, snapshot, write_idx


def refused_in(folder: Path, data_dir: Path, *args: str, fragments: tuple[str, ...]) -> str:
    before = snapshot(folder)
    line = preflight_refusal(*args, run_dir=folder, data_dir=data_dir)
    for fragment in fragments:
        assert fragment in line, line
    assert snapshot(folder) == before, "the refused command changed the earlier run's files"
    return line


# (overrides, fragments the error line must hold): refused before Hydra starts the job.
CONFIG_CASES = [
    (["model=resnet9000"], ("unknown model option 'resnet9000'", "gap_cnn")),
    (["optim=adamw"], ("unknown optim option 'adamw'",)),
    (["optim.lr=-1"], ("optim.lr=-1", "positive")),
    (["optim.lr=abc"], ("optim.lr='abc'",)),
    (["optim.momentum=2"], ("optim.momentum=2", "[0, 1)")),
    (["optim.weight_decay=-0.1"], ("optim.weight_decay=-0.1",)),
    (["optim.label_smoothing=1.5"], ("optim.label_smoothing=1.5",)),
    (["data.batch_size=0"], ("data.batch_size=0", "positive integer")),
    (["extra_train=fonts", "data.extra_train.copies=0"], ("copies=0", "whole number >= 1")),
    (["extra_train=fonts", "data.extra_train.low_res_p=1.5"], ("low_res_p=1.5", "share in [0, 1]")),
    (["extra_train=fonts", "data=fashion_mnist"], ("draws digits, not fashion_mnist", "data.extra_train=null")),
    (["extra_train=fonts", "data.download=false"], ("font 'amatic-sc' is missing", "79 of 79 missing")),
    (["data.eval_batch_size=-5"], ("data.eval_batch_size=-5",)),
    (["data.val_size=60000"], ("data.val_size=60000", "1 to 59999")),
    (["trainer.max_epochs=0"], ("trainer.max_epochs=0",)),
    (["seed=abc"], ("seed='abc'", "integer")),
    (["seed=1.5"], ("seed=1.5", "integer")),
    (["model.net.dropout=1.2"], ("model.net.dropout=1.2",)),
    (["experiment=reference_001", "model.net.dropout_end=1.5"], ("model.net.dropout_end=1.5",)),
    (["model.budget=5000"], ("19,634", "over its budget of 5,000")),
    (["model.net.channels=[8,16]"], ("model fast_cnn cannot be built",)),
    (["trainer.precision=17"], ("trainer.precision=17", "bf16-mixed")),
    (["++trainer.gpus=1"], ("trainer.gpus is not an argument of Lightning's Trainer",)),
    (["trainer.max_epoch=3"], ("trainer.max_epoch", "spelling")),
    (["optim.lr"], ("optim.lr",)),
    (["test_checkpoint=worst"], ("test_checkpoint='worst'", "best or last")),
    (["hparams_search=record"], ("hydra.sweeper.study_name is empty", "experiment=record_20k")),
    (["callbacks.memory_format.layout=diagonal"], ("layout=diagonal",)),
    (["callbacks=[default,ema]", "callbacks.ema.decay=1.5"], ("callbacks.ema.decay=1.5",)),
    (["augment._args_.0.degrees=-1"], ("augment degrees=-1",)),
    (["unsure_below=abc"], ("unsure_below='abc' is invalid: it must be a probability in [0, 1]",)),
    (["task=predict", "tta=maybe"], ("tta='maybe' is invalid: it must be true or false",)),
    (["data.dataset=cifar"], ("data.dataset='cifar' is unknown: use one of mnist, fashion_mnist",)),
    (["++trainer.overfit_batches=3"], ("trainer.overfit_batches=3", "debug=overfit")),
    # kornia wants tuples; YAML lists reach it as ListConfig: found on a batch, not in the first step
    (
        [
            "augment._args_.0._target_=kornia.augmentation.RandomElasticTransform",
            "~augment._args_.0.degrees",
            "~augment._args_.0.translate",
            "+augment._args_.0.sigma=[5.0,5.0]",
        ],
        ("augment cannot be built or fails on a batch",),
    ),
    pytest.param(
        ["trainer=gpu"],
        ("trainer.accelerator=gpu", "no CUDA GPU"),
        marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU"),
    ),
]


@pytest.mark.parametrize(
    ("overrides", "fragments"), CONFIG_CASES, ids=lambda value: " ".join(value) if isinstance(value, list) else ""
)
def test_bad_config_is_refused_before_anything_is_written(earlier_run, mnist_root, overrides, fragments):
    refused_in(earlier_run, mnist_root, *overrides, fragments=fragments)


def test_run_folder_under_a_file_is_refused(tmp_path, mnist_root):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    line = preflight_refusal(run_dir=blocker / "run", data_dir=mnist_root)
    assert f"hydra.run.dir={blocker / 'run'} cannot be created" in line and "is a file" in line


def test_sweep_folder_under_a_file_is_refused(tmp_path, mnist_root):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    line = preflight_refusal(
        "-m", "seed=1,2", f"hydra.sweep.dir={blocker / 'sweep'}", run_dir=tmp_path, data_dir=mnist_root
    )
    assert "hydra.sweep.dir=" in line and "is a file" in line


# Checkpoints ---------------------------------------------------------------------------------


def fake_checkpoint(path: Path, model: str = "fast_cnn", **optim) -> Path:
    torch.save(
        {
            "state_dict": {},
            "epoch": 0,
            "global_step": 1,
            "hyper_parameters": {"model": {"name": model}, "optim": optim},
        },
        path,
    )
    return path


def test_missing_checkpoint(earlier_run, mnist_root, tmp_path):
    refused_in(earlier_run, mnist_root, f"ckpt_path={tmp_path / 'nope.ckpt'}", fragments=("nope.ckpt does not exist",))


def test_checkpoint_that_is_not_one(earlier_run, mnist_root, tmp_path):
    text = tmp_path / "notes.ckpt"
    text.write_text("just text")
    refused_in(
        earlier_run, mnist_root, f"ckpt_path={text}", fragments=("notes.ckpt is not a safe, readable checkpoint",)
    )


def test_truncated_checkpoint(earlier_run, mnist_root, tmp_path):
    whole = fake_checkpoint(tmp_path / "whole.ckpt")
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(whole.read_bytes()[: len(whole.read_bytes()) // 2])
    refused_in(earlier_run, mnist_root, f"ckpt_path={cut}", fragments=("cut.ckpt is not a safe, readable checkpoint",))


def test_checkpoint_whose_unpickling_would_run_code(earlier_run, mnist_root, tmp_path):
    marker = tmp_path / "code-ran"
    evil = malicious_checkpoint(tmp_path / "evil.ckpt", marker)
    refused_in(
        earlier_run, mnist_root, f"ckpt_path={evil}", fragments=("evil.ckpt is not a safe, readable checkpoint",)
    )
    assert not marker.exists()


def test_checkpoint_of_another_model(earlier_run, mnist_root, tmp_path):
    other = fake_checkpoint(tmp_path / "other.ckpt", model="reference_004")
    refused_in(
        earlier_run,
        mnist_root,
        f"ckpt_path={other}",
        fragments=("trained for model 'reference_004'", "model=reference_004"),
    )


def test_checkpoint_with_other_optimiser_settings(earlier_run, mnist_root, tmp_path):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config")
    checkpoint = {
        "state_dict": {},
        "epoch": 0,
        "global_step": 1,
        "hyper_parameters": {
            "model": OmegaConf.to_container(cfg.model, resolve=True),
            "optim": OmegaConf.to_container(cfg.optim, resolve=True),
        },
    }
    checkpoint["hyper_parameters"]["optim"]["lr"] = 0.05
    path = tmp_path / "lr005.ckpt"
    torch.save(checkpoint, path)
    refused_in(
        earlier_run, mnist_root, f"ckpt_path={path}", fragments=(f"optim.lr={cfg.optim.lr} (the checkpoint has 0.05)",)
    )


def test_resume_last_where_there_is_none(earlier_run, mnist_root):
    refused_in(earlier_run, mnist_root, "ckpt_path=last", fragments=("ckpt_path=last found no", "last.ckpt"))


# Data ----------------------------------------------------------------------------------------


def test_missing_data_without_download(earlier_run, tmp_path):
    empty = tmp_path / "no-data"
    refused_in(
        earlier_run, empty, "data.download=false", fragments=(f"MNIST is missing from {empty / 'MNIST' / 'raw'}",)
    )


def test_truncated_data_file(earlier_run, tmp_path):
    root = tmp_path / "damaged"
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 100), ("t10k", 100)):  # the preflight reads headers and sizes only
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 255, (count, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, count))
    images = raw / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:5000])
    refused_in(earlier_run, root, fragments=("t10k-images-idx3-ubyte is truncated",))

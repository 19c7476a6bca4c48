"""Other idx data sets (data=fashion_mnist): found where torchvision looks, unpacked from the .gz
originals, normalised with their own constants, and remembered by the checkpoint so that eval,
predict, export and serve treat the network as it was trained."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import (
    SHORT_RUN,
    compose_cfg,
    preflight_refusal,
    synthetic_digits,
    write_idx,
)
from mnist_budget.checkpoints import dataset_of, load_network
from mnist_budget.data.datamodule import MNISTDataModule
from mnist_budget.data.loading import load_mnist
from mnist_budget.data.sets import DATASETS, normalise
from mnist_budget.errors import UserError

FASHION = DATASETS["fashion_mnist"]


def write_gzipped_fashion(root: Path, train_count: int = 12_000, test_count: int = 1_000) -> Path:
    """Synthetic files as Fashion-MNIST is distributed (and as Debian's package ships it): four .gz,
    smaller than the real ones (enough for the 10,000-image validation split) to stay quick."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for prefix, count in (("train", train_count), ("t10k", test_count)):
        images, labels = synthetic_digits(count, rng)
        for name, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            write_idx(raw / name, array)
            (raw / f"{name}.gz").write_bytes(gzip.compress((raw / name).read_bytes()))
            (raw / name).unlink()
    return root


@pytest.fixture(scope="module")
def fashion_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gzipped_fashion(tmp_path_factory.mktemp("fashion"))


@pytest.fixture(scope="module")
def fashion_run(tmp_path_factory: pytest.TempPathFactory, fashion_root: Path) -> Path:
    from mnist_budget.tasks.train import train

    run = tmp_path_factory.mktemp("fashion-run")
    train(compose_cfg(run, fashion_root, "data=fashion_mnist", *SHORT_RUN, "trainer.limit_test_batches=1.0"))
    return run


def test_gzipped_files_are_unpacked_and_read(fashion_root):
    images, labels = load_mnist(fashion_root, train=False, name="fashion_mnist")
    assert images.shape == (1_000, 28, 28) and labels.max() == 9
    assert (fashion_root / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()


def test_a_damaged_gz_file_is_refused_in_one_line(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    packed = gzip.compress(np.random.default_rng(0).integers(0, 255, 5000, dtype=np.uint8).tobytes())
    (raw / "train-images-idx3-ubyte.gz").write_bytes(packed[: len(packed) // 2])  # cut short
    with pytest.raises(
        UserError, match=r"train-images-idx3-ubyte.gz cannot be unpacked .*: replace it with the original file"
    ):
        load_mnist(tmp_path, train=True, name="fashion_mnist")
    assert sorted(path.name for path in raw.iterdir()) == ["train-images-idx3-ubyte.gz"]  # no half-unpacked file


def test_each_data_set_is_normalised_with_its_own_constants(fashion_root, mnist_root):
    batch = torch.rand(4, 1, 28, 28)
    fashion = MNISTDataModule(str(fashion_root), dataset="fashion_mnist", download=False)
    mnist = MNISTDataModule(str(mnist_root), download=False)
    assert torch.allclose(fashion.prepare_images(batch, augment=False), (batch - 0.2860) / 0.3530)
    assert torch.allclose(mnist.prepare_images(batch, augment=False), (batch - 0.1307) / 0.3081)


def test_an_unknown_data_set_is_refused_in_one_line(mnist_root, tmp_path):
    with pytest.raises(UserError, match="data.dataset='cifar' is unknown: use one of mnist, fashion_mnist"):
        MNISTDataModule(str(mnist_root), dataset="cifar")
    line = preflight_refusal("data.dataset=cifar", run_dir=tmp_path / "run", data_dir=mnist_root)
    assert "data.dataset='cifar' is unknown" in line


def test_missing_fashion_files_say_where_to_get_them(tmp_path):
    line = preflight_refusal(
        "data=fashion_mnist", "data.download=false", run_dir=tmp_path / "run", data_dir=tmp_path / "empty"
    )
    assert "FashionMNIST is missing from" in line and "dataset-fashion-mnist" in line and ".gz" in line


@pytest.mark.slow  # a training run, an evaluation and an ONNX export
def test_the_checkpoint_remembers_its_data_set_and_the_tasks_follow_it(fashion_run, fashion_root, mnist_root, tmp_path):
    from mnist_budget.inference.classify import Predictor
    from mnist_budget.tasks.eval import evaluate
    from mnist_budget.tasks.export import export

    ckpt = fashion_run / "checkpoints" / "last.ckpt"
    net, hparams = load_network(ckpt)
    assert dataset_of(hparams) == FASHION
    # eval on the wrong data set is refused before the job; on its own it matches training's test.
    line = preflight_refusal("task=eval", f"ckpt_path={ckpt}", run_dir=tmp_path / "wrong", data_dir=mnist_root)
    assert "was trained on fashion_mnist, data.dataset=mnist" in line and "(data=fashion_mnist)" in line
    scores = evaluate(
        compose_cfg(tmp_path / "eval", fashion_root, "task=eval", "data=fashion_mnist", f"ckpt_path={ckpt}")
    )
    trained = json.loads((fashion_run / "results.json").read_text())
    assert scores["test/acc"] == pytest.approx(trained["test_acc"], abs=1e-6)
    # export names the classes and the constants, and verifies on Fashion-MNIST's test set
    export(compose_cfg(tmp_path / "export", fashion_root, "task=export", "data=fashion_mnist", f"ckpt_path={ckpt}"))
    info = json.loads((tmp_path / "export" / "model.onnx.json").read_text())
    assert info["classes"][0] == "T-shirt/top" and info["normalisation"] == {
        "mean": 0.2860,
        "std": 0.3530,
        "formula": "(pixel / 255 - mean) / std",
    }
    assert info["dataset"] == "fashion_mnist" and info["verified"]["argmax_agreement"] == 1.0
    # predict normalises as training did
    images = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        expected = net(normalise(images, FASHION)).softmax(1)
    assert torch.allclose(Predictor(net, FASHION, batch_size=3)(images), expected, atol=1e-6)


def test_a_resume_keeps_the_data_set_and_old_checkpoints_count_as_mnist(tmp_path):
    """checkpoint_to_resume: a checkpoint of one data set does not resume on another; one written
    before data sets had names (no ``dataset`` key) learnt MNIST."""
    from mnist_budget.checkpoints import checkpoint_to_resume

    model, optim = {"name": "fast_cnn", "net": {"channels": [8]}}, {"lr": 0.2}
    training_state = {"epoch": 0, "global_step": 3, "loops": {}, "optimizer_states": [], "lr_schedulers": []}
    hparams = {"model": model, "optim": optim, "dataset": "fashion_mnist"}
    path = tmp_path / "checkpoints" / "last.ckpt"
    path.parent.mkdir()
    torch.save({"hyper_parameters": hparams, "state_dict": {}, **training_state}, path)
    assert checkpoint_to_resume("last", tmp_path, model, optim, "fashion_mnist")[0] == path
    with pytest.raises(UserError, match=r"with data.dataset=mnist \(the checkpoint has fashion_mnist\)"):
        checkpoint_to_resume("last", tmp_path, model, optim, "mnist")
    del hparams["dataset"]
    torch.save({"hyper_parameters": hparams, "state_dict": {}, **training_state}, path)
    assert checkpoint_to_resume("last", tmp_path, model, optim, "mnist")[0] == path

"""After training: eval, predict and export on a model trained here (in-process), and their refusals."""

from __future__ import annotations

import csv
import io
import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import malicious_checkpoint, preflight_refusal
from mnist_budget.checkpoints import load_network
from mnist_budget.data.loading import load_mnist, to_float_images
from mnist_budget.data.preprocess import (
    ImageProblem,
    centre_by_mass,
    load_image,
    mnist_style,
)
from mnist_budget.data.sets import normalise
from mnist_budget.errors import UserError
from mnist_budget.inference.classify import SHIFTS, Predictor
from mnist_budget.tasks.eval import evaluate
from mnist_budget.tasks.export import export
from mnist_budget.tasks.predict import predict


@pytest.fixture(scope="module")
def trained(trained_run) -> Path:
    """The last checkpoint of a short real training run (synthetic digits)."""
    for name in ("confusion_matrix.png", "misclassified.png", "training_metrics.png"):
        assert (trained_run / name).stat().st_size > 0  # every training run leaves the same figures as eval
    return trained_run / "checkpoints" / "last.ckpt"


def refusal(task, cfg) -> str:
    """The one-line UserError a task raises."""
    with pytest.raises(UserError) as refused:
        task(cfg)
    assert "\n" not in str(refused.value)
    return str(refused.value)


# A digit-like shape in MNIST's own form: a white "7" (bar and diagonal) on black, 28x28.
def mnist_seven() -> np.ndarray:
    digit = np.zeros((28, 28), np.uint8)
    digit[5:8, 7:21] = 255
    for row in range(8, 24):
        col = 20 - (row - 8) // 2
        digit[row, col - 1 : col + 2] = 255
    return digit


def as_photo(
    digit: np.ndarray, size: int, offset: tuple[int, int], ink=(30, 40, 140), paper=(235, 228, 200)
) -> Image.Image:
    """The digit enlarged to ``size``, in dark ink on light paper, off-centre on a bigger sheet."""
    big = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC), np.float32)[..., None] / 255
    sheet = np.zeros((size * 2, size * 2, 1), np.float32)
    sheet[offset[0] : offset[0] + size, offset[1] : offset[1] + size] = big
    rgb = sheet * np.array(ink, np.float32) + (1 - sheet) * np.array(paper, np.float32)
    return Image.fromarray(np.uint8(rgb))


def saved(image: Image.Image, path: Path, **options) -> Path:
    image.save(path, **options)
    return path


def write_inputs(folder: Path) -> dict[str, Path]:
    """Images of the same digit as users send them, plus the files predict must skip."""
    folder.mkdir()
    seven = mnist_seven()
    files = {
        "mnist_png": saved(Image.fromarray(seven), folder / "a_mnist.png"),
        "inverted_png": saved(Image.fromarray(255 - seven), folder / "b_inverted.png"),
        "enlarged_offcentre_colour_jpeg": saved(as_photo(seven, 300, (20, 250)), folder / "c_photo.jpg", quality=70),
        "bmp": saved(
            as_photo(seven, 120, (100, 10), ink=(10, 10, 10), paper=(250, 250, 250)).convert("L"), folder / "d_scan.bmp"
        ),
        "transparent_png": saved(Image.fromarray(np.zeros((28, 28, 4), np.uint8)), folder / "e_transparent_blank.png"),
    }
    (folder / "f_notes.png").write_text("not an image")
    (folder / "g_empty.jpg").write_bytes(b"")
    whole = io.BytesIO()
    as_photo(seven, 200, (0, 0)).save(whole, format="JPEG")
    (folder / "h_cut.jpg").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 3])
    return files


# Preprocessing ------------------------------------------------------------------------------


def test_mnist_style_undoes_what_photos_and_scans_do(tmp_path):
    seven = mnist_seven().astype(np.float32) / 255
    reference = torch.from_numpy(centre_by_mass(seven[5:24, 6:22] / 1.0))[None]  # its ink box, centred
    for name, path in write_inputs(tmp_path / "inputs").items():
        if name == "transparent_png":
            continue
        got = mnist_style(load_image(path))
        assert got.shape == (1, 28, 28) and float(got.min()) >= 0.0 and float(got.max()) <= 1.0
        rows, cols = np.nonzero(got[0].numpy() > 0.3)
        assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 in range(18, 23), name  # longer side ~20
        mass = got[0].numpy()
        centre = [float((np.indices(mass.shape)[axis] * mass).sum() / mass.sum()) for axis in (0, 1)]
        assert all(abs(c - 13.5) < 1.0 for c in centre), (name, centre)  # centre of mass in the middle
        # Same digit: high correlation with the reference (the ink box is 19 high, scaled to 20).
        correlation = float(np.corrcoef(got.flatten(), reference.flatten())[0, 1])
        assert correlation > 0.6, (name, correlation)


def test_blank_and_unreadable_images_are_refused_with_a_reason(tmp_path):
    files = write_inputs(tmp_path / "inputs")
    with pytest.raises(ImageProblem, match="no ink"):
        mnist_style(load_image(files["transparent_png"]))
    with pytest.raises(ImageProblem, match="not an image"):
        load_image(tmp_path / "inputs" / "f_notes.png")
    with pytest.raises(ImageProblem, match="empty file"):
        load_image(tmp_path / "inputs" / "g_empty.jpg")
    with pytest.raises(ImageProblem, match="damaged image"):
        load_image(tmp_path / "inputs" / "h_cut.jpg")


# Eval ---------------------------------------------------------------------------------------


def test_eval_scores_the_checkpoint_and_draws_its_mistakes(trained, make_cfg, tmp_path):
    run = tmp_path
    evaluate(make_cfg("task=eval", f"ckpt_path={trained}", "eval_tta=false"))  # as the run was tested
    results = json.loads((run / "results.json").read_text())
    training = json.loads((trained.parents[1] / "results.json").read_text())
    assert results["task"] == "eval" and results["model"] == "fast_cnn" and results["eval_tta"] is False
    assert results["test_acc"] == pytest.approx(training["test_acc"])  # the same final weights
    matrix = np.array(results["confusion_matrix"])
    assert matrix.sum() == 10_000 and results["misclassified"] == 10_000 - np.trace(matrix)
    assert set(results["per_class_acc"]) == {str(d) for d in range(10)}
    assert (run / "confusion_matrix.png").stat().st_size > 0 and (run / "misclassified.png").stat().st_size > 0
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert {"test/confusion_matrix", "test/misclassified"} <= set(events.Tags()["images"])


def test_eval_tta_scores_each_image_by_its_shifts_as_predict_does(trained, make_cfg, mnist_root, tmp_path):
    evaluate(
        make_cfg(
            "task=eval",
            f"ckpt_path={trained}",
            "eval_tta=true",
            "trainer.precision=32-true",
            "trainer.limit_test_batches=2",
            "data.eval_batch_size=500",
        )
    )
    results = json.loads((tmp_path / "results.json").read_text())
    net, _ = load_network(trained)
    images, labels = (part[:1000] for part in load_mnist(mnist_root, train=False))  # the 2 batches, in order
    # predict shifts [0, 1] images (0 comes in), evaluation shifts normalised ones (their background comes in)
    tta = Predictor(net, tta=True, batch_size=1000)(to_float_images(images))
    assert not torch.allclose(
        tta, Predictor(net, batch_size=1000)(to_float_images(images)), atol=1e-3
    )  # TTA changes the scores
    by_hand = (tta.argmax(1) == labels).float().mean()
    assert results["eval_tta"] is True and results["test_acc"] == pytest.approx(float(by_hand), abs=1e-4)


# Predict ------------------------------------------------------------------------------------


def test_predict_a_folder_reads_the_good_files_and_lists_the_bad(trained, make_cfg, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    write_inputs(inputs)
    run = tmp_path
    predict(make_cfg("task=predict", f"ckpt_path={trained}", f"input={inputs}", "save_preprocessed=true"))
    stdout = capsys.readouterr().out
    rows = list(csv.DictReader((run / "predictions.csv").open()))
    assert [Path(row["path"]).name for row in rows] == sorted(p.name for p in inputs.iterdir())
    by_name = {Path(row["path"]).name: row for row in rows}
    predicted = [name for name, row in by_name.items() if row["digit"]]
    assert predicted == ["a_mnist.png", "b_inverted.png", "c_photo.jpg", "d_scan.bmp"]
    assert "no ink" in by_name["e_transparent_blank.png"]["error"]
    assert "not an image" in by_name["f_notes.png"]["error"] and "empty" in by_name["g_empty.jpg"]["error"]
    assert "damaged" in by_name["h_cut.jpg"]["error"]
    for name in predicted:
        top3 = by_name[name]["top3"].split()
        assert len(top3) == 3 and float(by_name[name]["probability"]) == float(top3[0].split(":")[1])
        assert f"{name}: {by_name[name]['digit']} (" in stdout  # one console line per file
    # The four readable images are the same digit: after preprocessing the network sees much the same.
    seen = sorted((run / "preprocessed").glob("*.png"))
    assert len(seen) == 4
    arrays = [np.asarray(Image.open(p), np.float32) for p in seen]
    assert all(np.corrcoef(arrays[0].flatten(), a.flatten())[0, 1] > 0.6 for a in arrays[1:])


def test_predict_writes_json_and_matches_the_network(trained, make_cfg, tmp_path):
    files = write_inputs(tmp_path / "inputs")
    run = tmp_path
    predict(make_cfg("task=predict", f"ckpt_path={trained}", f"input={files['inverted_png']}", "output=out.json"))
    (row,) = json.loads((run / "out.json").read_text())
    net, _ = load_network(trained)
    with torch.no_grad():
        probs = net(normalise(mnist_style(load_image(files["inverted_png"]))[None])).softmax(1)[0]
    assert row["digit"] == int(probs.argmax()) and row["probability"] == pytest.approx(float(probs.max()), abs=1e-4)


@pytest.mark.parametrize(
    ("make_input", "fragment"),
    [
        (lambda d: d / "missing.png", "does not exist"),
        (lambda d: (d / "empty-folder").mkdir() or d / "empty-folder", "holds no image files"),
        (lambda d: str(d / "*.nothing"), "matches no files"),
        (lambda d: (d / "notes.png").write_text("hi") and d / "notes.png", "not an image Pillow can open"),
        (lambda d: (d / "zero.png").write_bytes(b"") or d / "zero.png", "empty file"),
        (lambda d: saved(Image.new("RGB", (64, 64), (250, 250, 250)), d / "blank.png"), "no ink found"),
    ],
    ids=["missing", "empty-folder", "glob-no-match", "not-an-image", "zero-bytes", "blank"],
)
def test_predict_with_nothing_to_read_is_refused(trained, make_cfg, tmp_path, make_input, fragment):
    target = make_input(tmp_path)
    assert fragment in refusal(predict, make_cfg("task=predict", f"ckpt_path={trained}", f"input={target}"))


def test_predict_refuses_bad_checkpoints(trained, make_cfg, mnist_root, tmp_path):
    image = saved(Image.fromarray(mnist_seven()), tmp_path / "seven.png")
    marker = tmp_path / "code-ran"
    evil = malicious_checkpoint(tmp_path / "evil.ckpt", marker)
    truncated = tmp_path / "cut.ckpt"
    truncated.write_bytes(trained.read_bytes()[:5000])
    other = tmp_path / "other-model.ckpt"
    checkpoint = torch.load(trained, weights_only=True)
    checkpoint["hyper_parameters"]["model"]["net"]["channels"] = [4, 8, 16, 20]  # weights no longer fit
    torch.save(checkpoint, other)
    for path, fragment in (
        (evil, "not a safe, readable checkpoint"),
        (truncated, "not a safe, readable checkpoint"),
        (other, "does not hold weights of model 'fast_cnn'"),
    ):
        assert fragment in refusal(predict, make_cfg("task=predict", f"ckpt_path={path}", f"input={image}"))
    assert not marker.exists()
    line = preflight_refusal("task=predict", f"input={image}", run_dir=tmp_path / "no-ckpt", data_dir=mnist_root)
    assert "task=predict needs ckpt_path=" in line


# Export -------------------------------------------------------------------------------------


@pytest.mark.slow  # 5-10 s per format (torch.export traces the network): CI runs it with the slow suite
@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_export_writes_a_verified_file_with_a_dynamic_batch(trained, make_cfg, mnist_root, tmp_path, fmt):
    run = tmp_path
    export(make_cfg("task=export", f"format={fmt}", f"ckpt_path={trained}"))
    path = run / f"model.{fmt}"
    info = json.loads(Path(f"{path}.json").read_text())
    assert info["input"]["shape"] == ["batch", 1, 28, 28] and info["classes"] == [str(d) for d in range(10)]
    assert info["normalisation"]["mean"] == pytest.approx(0.1307)
    assert info["verified"]["max_abs_logit_diff"] <= 1e-4 and info["verified"]["argmax_agreement"] == 1.0
    net, _ = load_network(trained)
    # The file's test accuracy is the fp32 network's (training may have scored it in bf16: another figure).
    test_images, test_labels = load_mnist(mnist_root, train=False)
    with torch.no_grad():
        fp32 = (net(normalise(to_float_images(test_images))).argmax(1) == test_labels).float().mean()
    assert info["verified"]["test_acc"] == pytest.approx(float(fp32), abs=1e-4)
    assert sorted(p.name for p in run.iterdir() if p.suffix in (".onnx", ".pt2", ".data")) == [path.name]  # one file

    images = torch.randn(3, 1, 28, 28)  # a batch size the export never saw
    if fmt == "onnx":
        import onnxruntime as ort

        logits = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
            None, {"image": images.numpy()}
        )[0]
    else:
        logits = torch.export.load(str(path)).module()(images).detach().numpy()
    with torch.no_grad():
        assert np.abs(net(images).numpy() - logits).max() <= 1e-4


def test_export_refuses_an_unknown_format(trained, mnist_root, tmp_path):
    line = preflight_refusal(
        "task=export", "format=tflite", f"ckpt_path={trained}", run_dir=tmp_path / "run", data_dir=mnist_root
    )
    assert "format=tflite is not supported" in line


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (
            ("task=predict", "input={image}", "predict_batch_size=0"),
            "predict_batch_size=0 is invalid: it must be a positive integer",
        ),
        (
            ("task=predict", "input={image}", "output={image}/table.csv"),
            "is a file, not a folder: choose another output",
        ),
        (("task=export", "tolerance=abc"), "tolerance='abc' is invalid: it must be a positive number"),
        (("task=export", "output={image}/model.onnx"), "is a file, not a folder: choose another output"),
    ],
    ids=["predict-batch-0", "predict-output-under-a-file", "export-tolerance", "export-output-under-a-file"],
)
def test_a_task_setting_that_would_fail_after_the_work_is_refused_first(
    trained, mnist_root, tmp_path, overrides, fragment
):
    """Each of these used to pass the preflight and stop with a traceback once the work was done."""
    image = saved(Image.fromarray(mnist_seven()), tmp_path / "seven.png")
    args = [arg.format(image=image) for arg in overrides]
    line = preflight_refusal(*args, f"ckpt_path={trained}", run_dir=tmp_path / "run", data_dir=mnist_root)
    assert fragment in line and not (tmp_path / "run").exists()


@pytest.mark.parametrize(("unsure_below", "flagged"), [(0.0, "false"), (1.01, "true")])
def test_predict_flags_digits_below_the_confidence_threshold(
    trained, make_cfg, tmp_path, capsys, unsure_below, flagged
):
    files = write_inputs(tmp_path / "inputs")
    predict(
        make_cfg(
            "task=predict", f"ckpt_path={trained}", f"input={files['inverted_png']}", f"unsure_below={unsure_below}"
        )
    )
    (row,) = list(csv.DictReader((tmp_path / "predictions.csv").open()))
    assert row["unsure"] == flagged
    assert ("UNSURE" in capsys.readouterr().out) == (flagged == "true")


def test_test_time_augmentation_averages_the_shifted_images(trained):
    net, _ = load_network(trained)
    images = torch.rand(3, 1, 28, 28)
    images[:, :, :2], images[:, :, -2:], images[:, :, :, :2], images[:, :, :, -2:] = 0, 0, 0, 0
    with torch.no_grad():
        by_hand = torch.stack([net(normalise(images.roll(s, dims=(2, 3)))).softmax(1) for s in SHIFTS]).mean(0)
    assert torch.allclose(Predictor(net, tta=True, batch_size=2)(images), by_hand, atol=1e-6)
    assert not torch.allclose(Predictor(net, batch_size=2)(images), by_hand, atol=1e-4)


def test_tta_shifts_move_ink_and_let_none_wrap_round():
    from mnist_budget.inference.classify import shifted

    images = torch.zeros(1, 1, 28, 28)
    images[0, 0, 27, 5] = 1.0  # on the bottom edge
    assert shifted(images, 1, 0).sum() == 0  # moved down and out, not onto the top row
    assert shifted(images, -1, 0)[0, 0, 26, 5] == 1.0 and shifted(images, 0, 1)[0, 0, 27, 6] == 1.0
    # Normalised images bring in their own background (what 0 ink became), not 0.
    assert shifted(images - 0.5, 0, 1, background=-0.5)[0, 0, :, 0].eq(-0.5).all()


# Serve (the server itself: tests/test_serve.py) ------------------------------------------------


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("backend=tensorrt", "backend=tensorrt is unknown"),
        ("port=70000", "port=70000 is invalid"),
        ("workers=0", "workers=0 is invalid: it must be a positive integer (server processes)"),
        ("max_files=-3", "max_files=-3 is invalid: it must be a positive integer"),
        ("max_body_bytes=abc", "max_body_bytes='abc' is invalid: it must be a positive integer"),
        # an address that no interface here has (TEST-NET-3, reserved for documentation):
        ("host=203.0.113.7", "cannot listen on host=203.0.113.7"),
    ],
)
def test_serve_refuses_bad_settings_before_starting(trained, mnist_root, tmp_path, override, fragment):
    line = preflight_refusal(
        "task=serve", f"ckpt_path={trained}", override, run_dir=tmp_path / "serve", data_dir=mnist_root
    )
    assert fragment in line and not (tmp_path / "serve").exists()


def test_serve_refuses_a_port_in_use_before_loading_anything(trained, mnist_root, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = preflight_refusal(
            "task=serve", f"ckpt_path={trained}", f"port={port}", run_dir=tmp_path / "serve", data_dir=mnist_root
        )
    assert f"cannot listen on host=127.0.0.1 port={port}" in line and "pick another port=" in line


@pytest.mark.parametrize("tta", [False, True])
def test_serve_and_predict_give_the_same_answer_for_the_same_file(trained, make_cfg, tmp_path, tta):
    from mnist_budget.inference.serving import predictor_for, read_files, settings_of

    files = write_inputs(tmp_path / "inputs")
    predict(
        make_cfg(
            "task=predict", f"ckpt_path={trained}", f"input={files['inverted_png']}", "output=out.json", f"tta={tta}"
        )
    )
    (row,) = json.loads((tmp_path / "out.json").read_text())
    settings = settings_of(make_cfg("task=serve", f"ckpt_path={trained}", "backend=torch", f"tta={tta}"), cores=1)
    predictor, _ = predictor_for(settings)
    (answer,) = read_files([("digit.png", files["inverted_png"].read_bytes())], predictor, settings["unsure_below"])
    assert predictor.tta is tta
    assert (answer["digit"], answer["probability"], answer["unsure"]) == (
        row["digit"],
        row["probability"],
        row["unsure"],
    )
    assert [list(pair) for pair in row["top3"]] == [list(pair) for pair in answer["top3"]]


@pytest.mark.parametrize("size", [1, 3, 7, 15, 31])
def test_the_stroke_thickening_filter_is_pillows_max_filter(size):
    # mnist_style thickens thin strokes with a separable maximum filter: Pillow's MaxFilter, whose
    # edges repeat the image's border pixels as ours do, on a picture padded wider than the window.
    import numpy as np
    from PIL import Image, ImageFilter

    from mnist_budget.data.preprocess import max_filter

    pixels = np.pad((np.random.default_rng(size).random((23, 37)) * 255).astype(np.uint8), size // 2 + 1)
    expected = np.asarray(Image.fromarray(pixels).filter(ImageFilter.MaxFilter(size)))
    assert (max_filter(pixels, size) == expected).all()

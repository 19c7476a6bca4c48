"""``task=predict`` on a folder of files that are not what a digit classifier hopes for: every good
file is predicted, every bad one is listed with its reason, and nothing stops the run."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_budget.data.preprocess import load_image, mnist_style
from mnist_budget.tasks.predict import predict
from test_tasks import as_photo, mnist_seven, saved


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A few-hundred-byte PNG whose header declares ``width`` x ``height`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grey
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )
    return path


def hostile_folder(folder: Path) -> tuple[set[str], set[str]]:
    """The files a user's folder may hold; returns (names that must be predicted, names that must be listed)."""
    folder.mkdir()
    seven = mnist_seven()
    photo = as_photo(seven, 200, (30, 60))  # RGB, dark ink on light paper
    good = {
        "plain seven.png": saved(Image.fromarray(seven), folder / "plain seven.png"),  # a space in the name
        "sieben_ß_七.png": saved(Image.fromarray(255 - seven), folder / "sieben_ß_七.png"),  # non-ASCII name
        "sixteen_bit.png": saved(
            Image.fromarray((255 - np.asarray(photo.convert("L"), np.uint16)) * 257), folder / "sixteen_bit.png"
        ),
        "cmyk.jpg": saved(photo.convert("CMYK"), folder / "cmyk.jpg"),
        "palette.png": saved(photo.convert("P", palette=Image.Palette.ADAPTIVE), folder / "palette.png"),
        "alpha.png": saved(photo.convert("RGBA"), folder / "alpha.png"),
        "rotated_exif.jpg": folder / "rotated_exif.jpg",
        "animated.gif": folder / "animated.gif",
        "enormous.png": folder / "enormous.png",
        "link_to_good.png": folder / "link_to_good.png",
        # Over 1,024 px, so reduced while loading, in modes Pillow's reduce does not take itself:
        "big_bilevel_scan.png": saved(
            photo.convert("L").resize((1600, 1600)).convert("1"), folder / "big_bilevel_scan.png"
        ),
        "big_palette.png": saved(
            photo.resize((1600, 1600)).convert("P", palette=Image.Palette.ADAPTIVE), folder / "big_palette.png"
        ),
        "big_sixteen_bit.png": saved(
            Image.fromarray((255 - np.asarray(photo.convert("L").resize((1600, 1600)), np.uint16)) * 257),
            folder / "big_sixteen_bit.png",
        ),
        "lab.tif": saved(photo.convert("LAB"), folder / "lab.tif"),  # Pillow turns LAB into RGB, not straight to grey
    }
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view": the pixels are stored turned
    photo.transpose(Image.Transpose.ROTATE_90).save(good["rotated_exif.jpg"], exif=exif)
    photo.save(good["animated.gif"], save_all=True, append_images=[Image.new("RGB", photo.size, "white")], duration=100)
    big = Image.new("L", (4000, 4000), 255)  # 16 megapixels: loaded at reduced size
    big.paste(photo.convert("L").resize((2000, 2000)), (1000, 1000))
    big.save(good["enormous.png"])
    good["link_to_good.png"].symlink_to(folder / "plain seven.png")
    png_declaring(folder / "bomb.png", 40_000, 40_000)
    (folder / "broken_link.png").symlink_to(folder / "gone.png")
    (folder / "notes.png").write_text("not an image")
    (folder / "empty.jpg").write_bytes(b"")
    saved(Image.new("RGB", (64, 64), "white"), folder / "blank.png")
    (folder / "folder.png").mkdir()  # a directory with an image's name: not a file to read
    bad = {"bomb.png", "broken_link.png", "notes.png", "empty.jpg", "blank.png"}
    return set(good), bad


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Path, set[str], set[str]]:
    folder = tmp_path_factory.mktemp("hostile") / "inputs"
    return (folder, *hostile_folder(folder))


def test_every_good_file_is_predicted_and_every_bad_one_listed(trained_run, make_cfg, tmp_path, hostile):
    folder, good, bad = hostile
    predict(
        make_cfg(
            "task=predict",
            f"ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}",
            f"input={folder}",
            "output=out.json",
        )
    )
    rows = {Path(row["path"]).name: row for row in json.loads((tmp_path / "out.json").read_text())}
    assert set(rows) == good | bad  # the directory named folder.png is not listed
    assert {name for name, row in rows.items() if row["digit"] is not None} == good
    reasons = {name: rows[name]["error"] for name in bad}
    assert "decompression bomb" in reasons["bomb.png"]
    assert "cannot be read" in reasons["broken_link.png"] and "not an image" in reasons["notes.png"]
    assert "empty file" in reasons["empty.jpg"] and "no ink" in reasons["blank.png"]


def test_every_kind_of_file_becomes_the_same_digit(hostile):
    folder, good, _ = hostile
    reference = mnist_style(load_image(folder / "plain seven.png")).flatten().numpy()
    for name in sorted(good):
        image = load_image(folder / name)
        assert max(image.size) <= 1024, name  # reduced while loading: memory stays bounded
        seen = mnist_style(image).flatten().numpy()
        assert np.corrcoef(seen, reference)[0, 1] > 0.6, name


def test_a_value_hydra_cannot_parse_gets_told_how_to_quote_it(tmp_path, mnist_root):
    from conftest import preflight_refusal

    line = preflight_refusal(
        "task=predict", "ckpt_path=x.ckpt", "input=/home/me/My Digits (2)/", run_dir=tmp_path, data_dir=mnist_root
    )
    assert "'input=\"/home/me/My Digits (2)/\"'" in line


def test_a_folder_with_a_space_in_its_name_is_read(trained_run, make_cfg, tmp_path):
    folder = tmp_path / "my digits"  # Hydra takes the space as part of the value, unquoted
    folder.mkdir()
    saved(Image.fromarray(mnist_seven()), folder / "seven.png")
    predict(make_cfg("task=predict", f"ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}", f"input={folder}"))
    assert (tmp_path / "predictions.csv").read_text().count("seven.png") == 1


def test_a_bomb_alone_is_refused_in_one_line(trained_run, make_cfg, tmp_path):
    from mnist_budget.errors import UserError

    bomb = png_declaring(tmp_path / "bomb.png", 40_000, 40_000)
    with pytest.raises(UserError, match="nothing could be predicted: .*bomb.png: refused as a decompression bomb"):
        predict(make_cfg("task=predict", f"ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}", f"input={bomb}"))

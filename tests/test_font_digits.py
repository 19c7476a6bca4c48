"""Font digits (``extra_train=fonts``): drawn like predict's inputs, cached, refused clearly, and
appended to the training split alone."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from mnist_budget.data import font_digits
from mnist_budget.data.datamodule import MNISTDataModule
from mnist_budget.data.font_digits import FontDigits, coarse_scan
from mnist_budget.errors import UserError
from mnist_budget.training.builders import build_datamodule


@pytest.fixture(scope="module")
def drawn(font_root) -> tuple[torch.Tensor, torch.Tensor]:
    return FontDigits(copies=2, seed=0).load(font_root)


def test_each_font_draws_every_digit_as_mnist_style_images(drawn):
    images, labels = drawn
    assert images.dtype == torch.uint8 and images.shape == (2 * 2 * 10, 28, 28)  # 2 fonts x 2 copies x 10 digits
    assert labels.bincount(minlength=10).tolist() == [4] * 10
    # mnist_style's field: bright ink on black, inside the 20-pixel box, centred by its mass
    assert images.amax(dim=(1, 2)).min() > 200
    for axis in (1, 2):  # the ink's longer side fills the 20-pixel box
        lit = (images > 0).any(dim=axis).float()
        extent = 28 - lit.argmax(dim=1) - lit.flip(1).argmax(dim=1)
        assert extent.max() <= 21
    assert torch.maximum(*(((images > 0).any(dim=a).sum(dim=1)) for a in (1, 2))).min() >= 19
    rows = torch.arange(28.0)
    mass = images.float()
    centre_row = (mass.sum(dim=2) * rows).sum(dim=1) / mass.sum(dim=(1, 2))
    assert ((centre_row - 13.5).abs() < 1.5).all()


def test_the_same_seed_draws_the_same_digits_from_its_cache(font_root, drawn):
    again = FontDigits(copies=2, seed=0)
    cache = again.cache_path(font_root, again.font_files(font_root))
    assert cache.is_file()
    assert torch.equal(again.load(font_root)[0], drawn[0])
    other = FontDigits(copies=2, seed=1)
    assert other.cache_path(font_root, other.font_files(font_root)) != cache
    assert not torch.equal(other.load(font_root)[0], drawn[0])


def test_a_coarse_scan_leaves_8x8_blocks_of_17_levels():
    image = Image.new("L", (128, 128), 255)
    image.paste(0, (40, 20, 70, 110))  # a thick dark bar
    scanned = coarse_scan(image, np.random.default_rng(0))
    blocks = np.asarray(scanned.resize((8, 8), Image.Resampling.NEAREST))
    assert scanned.size[0] >= 60 and len(np.unique(blocks)) <= 17
    assert blocks.min() == 0 and blocks.max() == 255  # solid ink inside, paper around
    assert coarse_scan(Image.new("L", (128, 128), 255), np.random.default_rng(0)) is None


def test_a_missing_font_without_download_is_named(tmp_path):
    with pytest.raises(
        UserError, match=r"font 'caveat' is missing from .*fonts \(1 of 1 missing\).*download=true"
    ) as info:
        FontDigits(families=["caveat"], download=False).prepare(tmp_path)
    assert "\n" not in str(info.value)


def test_a_failed_font_download_says_what_to_do(tmp_path, monkeypatch):
    # Nothing listens on port 9 of this machine: the download fails at once, as it does offline.
    monkeypatch.setattr(font_digits, "FONTSOURCE", "http://127.0.0.1:9/{family}-{version}.tgz")
    with pytest.raises(UserError, match=r"download failed .*put .ttf, .otf or .woff .*data.extra_train=null") as info:
        FontDigits(families=["caveat"]).prepare(tmp_path)
    assert "\n" not in str(info.value)


def fake_package(folder, family: str, members: dict[str, bytes]) -> None:
    """A @fontsource-shaped .tgz at ``folder/<family>-5.3.0.tgz`` holding ``members``."""
    with tarfile.open(folder / f"{family}-5.3.0.tgz", "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(f"package/files/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_a_package_gives_its_regular_latin_woff(tmp_path, monkeypatch):
    face = (Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf").read_bytes()
    fake_package(
        tmp_path,
        "handy",
        {
            "handy-latin-ext-400-normal.woff": b"no digits in here",
            "handy-latin-700-normal.woff": b"bold",
            "handy-latin-400-italic.woff": b"italic",
            "handy-latin-400-normal.woff": face,
        },
    )
    monkeypatch.setattr(font_digits, "FONTSOURCE", f"file://{tmp_path}/{{family}}-{{version}}.tgz")
    fonts = FontDigits(families=["handy"], copies=1)
    assert (tmp_path / "data" / "fonts").exists() is False
    assert [p.name for p in fonts.font_files(tmp_path / "data")] == ["handy.woff"]
    assert (tmp_path / "data" / "fonts" / "handy.woff").read_bytes() == face
    assert fonts.load(tmp_path / "data")[1].tolist() == list(range(10))


@pytest.mark.parametrize(
    "members", [None, {"handy-latin-ext-400-normal.woff": b"x"}], ids=["not-a-tgz", "no-latin-woff"]
)
def test_a_bad_package_is_refused_in_one_line(tmp_path, monkeypatch, members):
    if members is None:
        (tmp_path / "handy-5.3.0.tgz").write_bytes(b"<html>not a package</html>")
    else:
        fake_package(tmp_path, "handy", members)
    monkeypatch.setattr(font_digits, "FONTSOURCE", f"file://{tmp_path}/{{family}}-{{version}}.tgz")
    with pytest.raises(UserError, match="download failed|holds no latin .woff") as info:
        FontDigits(families=["handy"]).prepare(tmp_path / "data")
    assert "\n" not in str(info.value)
    assert not list((tmp_path / "data" / "fonts").glob("handy*"))


@pytest.mark.parametrize("arguments", [{"copies": 0}, {"copies": 1.5}, {"low_res_p": 2}])
def test_bad_settings_are_refused(arguments):
    with pytest.raises(UserError, match="copies must be a whole number"):
        FontDigits(**arguments)


def test_no_fonts_is_refused(tmp_path):
    with pytest.raises(UserError, match="no fonts to draw digits with"):
        FontDigits().prepare(tmp_path)


def test_font_digits_join_the_training_split_only(font_root, drawn):
    datamodule = MNISTDataModule(str(font_root), download=False, extra_train=FontDigits(copies=2, seed=0))
    datamodule.prepare_data()
    datamodule.setup()
    train, val, test = (datamodule.splits[name].tensors for name in ("train", "val", "test"))
    assert len(train[0]) == 50_000 + len(drawn[0]) and len(val[0]) == 10_000 and len(test[0]) == 10_000
    assert torch.equal(train[1][-len(drawn[1]) :], drawn[1])
    assert torch.equal(train[0][-len(drawn[0]) :, 0], drawn[0].float() / 255)


def test_font_digits_with_another_data_set_are_refused(font_root):
    with pytest.raises(UserError, match="draws digits, not fashion_mnist"):
        MNISTDataModule(str(font_root), dataset="fashion_mnist", extra_train=FontDigits())


def test_the_config_names_its_fonts_and_leaves_the_benchmarks_out(make_cfg):
    cfg = make_cfg("extra_train=fonts")
    assert make_cfg().data.get("extra_train") is None
    fonts = instantiate(cfg.data.extra_train)
    assert isinstance(fonts, FontDigits) and len(fonts.families) == len(set(fonts.families)) == 79
    assert fonts.download is cfg.data.download
    # benchmarks/handwriting_styles.py reads these two from Debian's packages
    assert not {"comic-neue", "dancing-script"} & set(fonts.families)


@pytest.mark.slow
def test_a_font_is_fetched_from_the_npm_registry(tmp_path):
    fonts = FontDigits(families=["caveat"], copies=1)
    assert [p.name for p in fonts.font_files(tmp_path)] == ["caveat.woff"]
    images, labels = fonts.load(tmp_path)
    assert labels.tolist() == list(range(10)) and images.amax() > 200


def test_testing_a_checkpoint_draws_no_font_digits(make_cfg):
    cfg = make_cfg("experiment=robust")
    assert isinstance(build_datamodule(cfg).extra_train, FontDigits)
    assert build_datamodule(cfg, training=False).extra_train is None


def font_folder(tmp_path, *faces: str):
    (tmp_path / "fonts").mkdir()
    for face in faces:
        shutil.copy(f"{matplotlib.get_data_path()}/fonts/ttf/{face}.ttf", tmp_path / "fonts")
    return tmp_path


def test_a_damaged_font_file_is_named(tmp_path):
    root = font_folder(tmp_path, "DejaVuSans")
    (root / "fonts" / "broken.ttf").write_bytes(b"not a font")
    with pytest.raises(UserError, match=r"font file .*broken.ttf cannot be read .*delete or replace it") as info:
        FontDigits(copies=1).prepare(root)
    assert "\n" not in str(info.value)


def test_a_damaged_cache_is_drawn_again(tmp_path):
    root = font_folder(tmp_path, "DejaVuSans")
    fonts = FontDigits(copies=1)
    images, _ = fonts.load(root)
    fonts.prepare(root).write_bytes(b"half a zip file")
    again, labels = fonts.load(root)
    assert torch.equal(again, images) and labels.tolist() == list(range(10))


def test_a_font_without_digits_draws_none(tmp_path):
    root = font_folder(tmp_path, "DejaVuSans", "STIXSizOneSymReg")  # large brackets and integrals, no digits
    images, labels = FontDigits(copies=1).load(root)
    assert labels.tolist() == list(range(10))  # DejaVu Sans's ten only

"""bench.imageio.read_image on every kind of real-world file: odd modes are converted, broken files are clear errors;
atomic writes give files the mode a plain open() would."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from bench.errors import UnreadableImageError
from bench.imageio import atomic_write_bytes, read_image, to_rgb8, write_image

H, W = 24, 40


def _gradient() -> np.ndarray:
    x = np.linspace(0, 255, W, dtype=np.float64)[None, :].repeat(H, 0)
    y = np.linspace(0, 255, H, dtype=np.float64)[:, None].repeat(W, 1)
    return np.stack([x, y, 255 - x], axis=2).astype(np.uint8)


def _save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


@pytest.mark.parametrize(
    "name, make, check",
    [
        ("grey.png", lambda: Image.fromarray(_gradient()[..., 0], "L"),
         lambda a: np.array_equal(a[..., 0], a[..., 1]) and a[0, -1, 0] == 255),
        ("bilevel.png", lambda: Image.fromarray(_gradient()[..., 0] > 127).convert("1"),
         lambda a: set(np.unique(a)) <= {0, 255}),
        ("palette.png", lambda: Image.fromarray(_gradient()).convert("P"), lambda a: a.std() > 10),
        ("palette.gif", lambda: Image.fromarray(_gradient()).convert("P"), lambda a: a.std() > 10),
        ("rgba.png", lambda: Image.fromarray(np.dstack([_gradient(), np.zeros((H, W), np.uint8)]), "RGBA"),
         lambda a: (a == 255).all()),  # fully transparent -> the white background
        ("la.png", lambda: Image.fromarray(np.dstack([np.full((H, W), 10, np.uint8)] * 2), "LA"),
         lambda a: abs(int(a[0, 0, 0]) - (10 * 10 + 255 * 245) // 255) <= 1),
        ("cmyk.jpg", lambda: Image.fromarray(_gradient()).convert("CMYK"), lambda a: a.std() > 10),
        ("cmyk.tif", lambda: Image.fromarray(_gradient()).convert("CMYK"), lambda a: a.std() > 10),
        ("grey16.png", lambda: Image.fromarray(np.full((H, W), 32768, np.uint16)),
         lambda a: abs(int(a[0, 0, 0]) - 128) <= 1),
        ("float.tif", lambda: Image.fromarray(np.full((H, W), 0.5, np.float32), "F"),
         lambda a: abs(int(a[0, 0, 0]) - 128) <= 1),
        ("int32.tif", lambda: Image.fromarray(np.full((H, W), 1000, np.int32), "I"),
         lambda a: abs(int(a[0, 0, 0]) - round(1000 / 65535 * 255)) <= 1),
        ("ycbcr.jpg", lambda: Image.fromarray(_gradient()).convert("YCbCr"), lambda a: a.std() > 10),
        ("rgb.webp", lambda: Image.fromarray(_gradient()), lambda a: a.std() > 10),
        ("rgb.bmp", lambda: Image.fromarray(_gradient()), lambda a: np.array_equal(a, _gradient())),
    ],
)
def test_odd_modes_become_rgb8(tmp_path, name, make, check):
    path = _save(make(), tmp_path / name)
    arr = read_image(path)
    assert arr.shape == (H, W, 3) and arr.dtype == np.uint8
    assert check(arr), (name, arr[0, :4, 0])


def test_16bit_rgb_png(tmp_path):
    rgb16 = (_gradient().astype(np.uint16) * 257)
    path = tmp_path / "rgb16.png"
    assert cv2.imwrite(str(path), rgb16[..., ::-1])
    arr = read_image(path)
    assert arr.shape == (H, W, 3) and arr.dtype == np.uint8
    assert np.abs(arr.astype(int) - _gradient().astype(int)).max() <= 1


def test_premultiplied_modes_convert():
    assert to_rgb8(Image.new("RGBa", (3, 2), (10, 20, 30, 255))).shape == (2, 3, 3)
    assert to_rgb8(Image.new("La", (3, 2))).shape == (2, 3, 3)


def test_exif_orientation_is_applied(tmp_path):
    img = np.zeros((H, W, 3), np.uint8)
    img[:4, :4] = (255, 0, 0)  # red block at the stored top-left
    pil = Image.fromarray(img)
    exif = pil.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = _save(pil, tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    arr = read_image(path)
    assert arr.shape == (W, H, 3)
    # after a 90 degree clockwise rotation the stored top-left lands at the top-right
    assert arr[1, -2, 0] > 200 and arr[1, -2, 1] < 60
    assert arr[-2, 1, 0] < 60


def test_broken_exif_is_ignored_not_fatal(tmp_path):
    pil = Image.fromarray(_gradient())
    exif = pil.getexif()
    exif[0x0112] = 99  # not a valid orientation
    path = _save(pil, tmp_path / "badexif.jpg", exif=exif.tobytes())
    assert read_image(path).shape == (H, W, 3)


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("zero.jpg", b"", "empty file"),
        ("text.jpg", b"this is not an image\n" * 10, "not an image file"),
        ("random.png", bytes(np.random.default_rng(1).integers(0, 255, 500, dtype=np.uint8)), "not an image file"),
        ("truncated.jpg", None, "truncated"),
        ("header_only.png", b"\x89PNG\r\n\x1a\n", "image"),
    ],
)
def test_broken_files_raise_with_reason(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(_jpeg_bytes()[:300] if content is None else content)
    with pytest.raises(UnreadableImageError) as info:
        read_image(path)
    msg = str(info.value)
    assert str(path) in msg and reason in msg, msg
    assert info.value.reason == "unreadable image"


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(UnreadableImageError, match="cannot open"):
        read_image(tmp_path / "nope.jpg")
    (tmp_path / "dir.jpg").mkdir()
    with pytest.raises(UnreadableImageError, match="not a regular file"):
        read_image(tmp_path / "dir.jpg")


def test_decompression_bomb_is_a_failure(tmp_path, monkeypatch):
    path = _save(Image.fromarray(_gradient()), tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(UnreadableImageError, match="too large"):
        read_image(path)


def test_multiframe_takes_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((H, W, 3), v, np.uint8)) for v in (0, 200)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    arr = read_image(path)
    assert arr.shape == (H, W, 3) and int(arr.mean()) < 20


# -- writing --------------------------------------------------------------------------------------------------------
@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002], ids=["022", "027", "002"])
def test_written_files_get_the_mode_open_would_give(tmp_path, umask, mask):
    umask(mask)
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")  # what a plain open() gives
    atomic_write_bytes(tmp_path / "sub" / "new.bin", b"data")
    write_image(tmp_path / "img.png", _gradient())
    expected = 0o666 & ~mask
    assert stat.S_IMODE(plain.stat().st_mode) == expected
    for p in (tmp_path / "sub" / "new.bin", tmp_path / "img.png"):
        assert stat.S_IMODE(p.stat().st_mode) == expected, (p, oct(p.stat().st_mode))
    assert (tmp_path / "sub" / "new.bin").read_bytes() == b"data"
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_replaced_file_keeps_its_mode(tmp_path, umask):
    umask(0o022)
    p = tmp_path / "manifest.json"
    p.write_text("{}")
    p.chmod(0o640)
    atomic_write_bytes(p, b'{"a": 1}')
    assert stat.S_IMODE(p.stat().st_mode) == 0o640 and p.read_bytes() == b'{"a": 1}'

"""Reading any real-world image file into uint8 RGB, and writing images atomically.

Pillow does the decoding; what is written here is the policy: apply the EXIF orientation, bring every mode
(greyscale, palette, RGBA, CMYK, 16-bit, float) to 8-bit RGB, and turn every decoding problem into an
:class:`~bench.errors.UnreadableImageError` that names the file and the reason.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from bench.errors import UnreadableImageError

__all__ = ["atomic_write_bytes", "file_sha256", "open_temp", "read_image", "to_rgb8", "write_image"]

log = logging.getLogger(__name__)


def to_rgb8(img: Image.Image) -> np.ndarray:
    """Convert a decoded PIL image of any mode to an (H, W, 3) uint8 RGB array."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        top = float(arr.max()) if arr.size else 0.0
        if mode == "F" and top <= 1.0:
            hi = 1.0  # float images in [0, 1]
        else:
            hi = 65535.0 if mode.startswith("I;16") or top > 255 else 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if mode in ("La", "RGBa"):  # premultiplied alpha: Pillow un-premultiplies to LA / RGBA
        img = img.convert("LA" if mode == "La" else "RGBA")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if mode == "RGB;16" or mode.startswith("BGR"):
        img = img.convert("RGB")
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(arr)


def _exif_upright(img: Image.Image, path: Path) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block leaves the image as stored (with a warning), not a failure."""
    try:
        return ImageOps.exif_transpose(img) or img
    except Exception as exc:  # noqa: BLE001 - malformed EXIF raises many kinds of errors inside Pillow
        log.warning("%s: EXIF orientation ignored (%s: %s)", path, exc.__class__.__name__, exc)
        return img


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read ``path`` as (H, W, 3) uint8 RGB with EXIF orientation applied.

    Raises:
        UnreadableImageError: missing, empty, truncated, not an image, or too large to decode safely.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise UnreadableImageError(p, f"cannot open: {exc.strerror or exc}") from None
    if size == 0:
        raise UnreadableImageError(p, "empty file (0 bytes)")
    if not p.is_file():
        raise UnreadableImageError(p, "not a regular file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as img:
                img.load()
                img = _exif_upright(img, p)
                arr = to_rgb8(img)
    except UnidentifiedImageError:
        raise UnreadableImageError(p, "not an image file Pillow can decode") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UnreadableImageError(p, f"image too large to decode safely: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated data, broken headers
        raise UnreadableImageError(p, f"broken or truncated image data: {exc}") from None
    except MemoryError:
        raise UnreadableImageError(p, "not enough memory to decode the image") from None
    except Exception as exc:  # noqa: BLE001 - a decoder bug on hostile data must stay a per-image failure
        raise UnreadableImageError(p, f"decoder error {exc.__class__.__name__}: {exc}") from None
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise UnreadableImageError(p, f"unexpected decoded shape {arr.shape}")
    return arr


def open_temp(folder: str | os.PathLike, prefix: str, suffix: str) -> tuple[int, Path]:
    """Create a new, uniquely named file in ``folder`` for writing; return ``(fd, path)``.

    The file gets the permissions a plain ``open()`` would give it (0666 minus the umask, and any default ACL of the
    folder), because the kernel applies them at ``os.open``. ``tempfile.mkstemp`` always creates 0600 files and has
    no mode argument, and reading the umask means changing it process-wide (racy with threads), hence this helper.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        path = Path(folder) / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file in {folder}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one.

    A new file gets the mode a plain ``open()`` would give it (0666 minus the umask); a replaced file keeps its mode.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = open_temp(p.parent, f".{p.name}.", ".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                os.fchmod(f.fileno(), stat.S_IMODE(os.stat(p).st_mode))
            except (FileNotFoundError, AttributeError):  # a new file; os.fchmod does not exist on Windows
                pass
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write a uint8 RGB (or greyscale) array as PNG/JPEG (by suffix), atomically."""
    import io

    p = Path(path)
    buf = io.BytesIO()
    fmt = "JPEG" if p.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    atomic_write_bytes(p, buf.getvalue())


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 hex digest of a file's bytes (streamed)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

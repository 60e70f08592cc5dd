"""Turn one source image into the stored form of docs/contracts.md ("Dataset folder").

Runs in worker processes, so it imports only Pillow (numpy only for the demo). Every
source is decoded exactly once; anything that cannot be used comes back as a `Processed`
with `reason` set (a sentence for a person) instead of raising, so one bad file never
stops a run.

Speed: big JPEGs are decoded with libjpeg's DCT scaling (`Image.draft`) to a short side of
at least DRAFT_SIDE pixels, which is several times faster than a full decode and far above
any stored size. The content hash is taken over those decoded pixels; DRAFT_SIDE is fixed
(independent of the image size option) so the hash, and with it the split, of a file never
depends on the options it was added with.
"""
from __future__ import annotations

import errno
import hashlib
import io
import math
import os
import re
import stat
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from trainer.contract import CROP_FRACTION, DEFAULT_CROP, DEFAULT_IMAGE_SIZE

MAX_ASPECT = 2.0
MAX_PIXELS = 64_000_000          # larger declared sizes are treated as decompression bombs
MAX_FILE_BYTES = 256 * 1024 * 1024   # an uncompressed 64 MP RGB TIFF is 192 MB; beyond this, not a photo
DRAFT_SIDE = 256                 # 12 MP JPEGs decode at 1/8 scale: 500x375, still 2x the largest stored size
DEFAULT_BACKGROUND = (255, 255, 255)


def _bomb(pixels: float, size: str = "") -> Skip:
    return Skip(f"decompression bomb: it declares {size + ' = ' if size else ''}{pixels / 1e6:.0f} megapixels, "
                f"above the limit of {MAX_PIXELS / 1e6:.0f} megapixels")


def stored_size(image_size: int) -> int:
    """Short side of a stored image: enough margin for the crop box (CROP_FRACTION) to cover image_size."""
    return math.ceil(image_size / CROP_FRACTION - 1e-9)


def min_side(image_size: int) -> int:
    """Smallest short side we accept; between this and stored_size images are upsampled."""
    return max(1, math.ceil(image_size / 2))


@dataclass(frozen=True)
class Options:
    image_size: int = DEFAULT_IMAGE_SIZE
    crop: str = DEFAULT_CROP
    background: tuple[int, int, int] = DEFAULT_BACKGROUND

    @property
    def stored_size(self) -> int:
        return stored_size(self.image_size)

    @property
    def min_side(self) -> int:
        return min_side(self.image_size)

    def to_dict(self) -> dict[str, Any]:
        return {"crop": self.crop, "image_size": self.image_size, "stored_size": self.stored_size,
                "crop_fraction": CROP_FRACTION, "background": list(self.background),
                "min_side": self.min_side}


@dataclass
class Processed:
    """The outcome for one source: either a stored PNG plus facts, or a reason to skip."""

    rel: str
    reason: str = ""
    png: bytes = b""
    sha256: str = ""
    width: int = 0                      # stored size
    height: int = 0
    source_size: tuple[int, int] = (0, 0)
    mean_rgb: tuple[float, float, float] = (0.0, 0.0, 0.0)
    upsampled: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.reason


class Skip(Exception):
    """Raised inside this module to end processing of one file with a reason."""


# ---- decoding ------------------------------------------------------------------------------

def open_image(data: bytes) -> Image.Image:
    """Open (not yet decode) an image, refusing decompression bombs before any pixel is read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise Skip("not an image: no image format recognises its contents") from None
    except Image.DecompressionBombError as exc:
        # Pillow's own check (above its global limit, which we leave alone for the rest of genml)
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise _bomb(float(found.group(1)) if found else MAX_PIXELS * 2) from None
    w, h = im.size
    if w <= 0 or h <= 0:
        raise Skip(f"truncated or corrupt: it declares a size of {w}x{h}")
    if w * h > MAX_PIXELS:
        raise _bomb(w * h, f"{w}x{h}")
    return im


def to_rgb(im: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB; transparency is composited on `background`."""
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        im = im if mode == "I" else im.convert("I")
        hi = im.getextrema()[1]
        scale = 1 / 256 if isinstance(hi, (int, float)) and hi > 255 else 1.0
        im = im.point(lambda v: v * scale).convert("L")
    elif mode == "F":
        hi = im.getextrema()[1]
        scale = 255.0 / hi if isinstance(hi, (int, float)) and hi > 1 else 255.0
        im = im.point(lambda v: v * scale).convert("L")
    elif mode == "CMYK":
        im = _cmyk_to_rgb(im)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode in ("LA", "La", "PA", "RGBa") or (im.mode in ("L", "RGB", "1") and "transparency" in im.info):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        flat = Image.new("RGB", im.size, background)
        flat.paste(im, mask=im.getchannel("A"))
        return flat
    return im if im.mode == "RGB" else im.convert("RGB")


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    """Use the embedded ICC profile when there is one (print CMYK looks wrong without it)."""
    icc = im.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
            if converted is not None:
                return converted
        except Exception:  # noqa: BLE001 - a broken profile: fall back to the plain formula
            pass
    return im.convert("RGB")


def decode(data: bytes, background: tuple[int, int, int]) -> tuple[Image.Image, tuple[int, int]]:
    """Bytes -> (RGB image, declared source size), EXIF orientation applied."""
    im = open_image(data)
    declared = im.size
    try:
        if im.format == "JPEG" and min(im.size) >= 2 * DRAFT_SIDE:
            im.draft(im.mode if im.mode in ("RGB", "L", "CMYK") else None, (DRAFT_SIDE, DRAFT_SIDE))
        im.load()
        orientation = im.getexif().get(0x0112, 1)
        upright = ImageOps.exif_transpose(im) if orientation in range(2, 9) else im
        rgb = to_rgb(upright if upright is not None else im, background)
    except Skip:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error) as exc:
        raise Skip(f"truncated or corrupt: {exc}") from None
    if (rgb.size[0] > rgb.size[1]) != (im.size[0] > im.size[1]):
        declared = (declared[1], declared[0])      # EXIF rotated it by 90 degrees
    return rgb, declared


# ---- geometry ------------------------------------------------------------------------------

def fit(rgb: Image.Image, options: Options, source_size: tuple[int, int]) -> tuple[Image.Image, bool]:
    """Resize so the short side is stored_size, cutting the long side (centred) to 2x the short."""
    w, h = rgb.size
    short = min(w, h)
    if min(source_size) < options.min_side:
        raise Skip(f"too small: {source_size[0]}x{source_size[1]} pixels; the minimum is "
                   f"{options.min_side} px on the short side for image size {options.image_size} "
                   f"(images from {options.min_side} to {options.stored_size - 1} px are upsampled)")
    long_max = math.floor(short * MAX_ASPECT)
    cw, ch = min(w, long_max), min(h, long_max)
    left, top = (w - cw) / 2, (h - ch) / 2
    target = options.stored_size
    longest = math.floor(target * MAX_ASPECT)
    if w <= h:
        nw, nh = target, min(longest, max(target, round(ch * target / short)))
    else:
        nw, nh = min(longest, max(target, round(cw * target / short))), target
    # Bilinear with Pillow's antialiasing support, like the trainer's crop resize; cheaper than bicubic.
    out = rgb.resize((nw, nh), Image.Resampling.BILINEAR, box=(left, top, left + cw, top + ch), reducing_gap=2.0)
    return out, min(source_size) < target


def pixel_hash(rgb: Image.Image) -> str:
    return hashlib.sha256(rgb.tobytes()).hexdigest()


def prepare(rel: str, rgb: Image.Image, source_size: tuple[int, int], options: Options) -> Processed:
    """Decoded RGB -> stored PNG and the facts the manifest needs."""
    sha = pixel_hash(rgb)
    stored, upsampled = fit(rgb, options, source_size)
    buf = io.BytesIO()
    # zlib level 1 with the RLE strategy: ~3x faster than the default and smaller than level 1 alone
    stored.save(buf, "PNG", compress_level=1, compress_type=zlib.Z_RLE)
    mean = tuple(float(v) for v in stored.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0)))  # type: ignore[union-attr]  # RGB: a tuple
    return Processed(rel=rel, png=buf.getvalue(), sha256=sha, width=stored.size[0], height=stored.size[1],
                     source_size=source_size, mean_rgb=mean, upsampled=upsampled)  # type: ignore[arg-type]  # 3 floats


# ---- one file ------------------------------------------------------------------------------

def read_source(path: str) -> bytes:
    """Read a file, turning OS failures into reasons; the source is opened read-only.

    Opened non-blocking and checked with fstat before any read: a file swapped for a
    named pipe after the scan would otherwise block the worker forever, and a device or a
    huge (say sparse) file would be read whole into memory. Files over MAX_FILE_BYTES
    are refused with the reason; at most that much is ever read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except PermissionError:
        raise Skip("unreadable: permission denied") from None
    except IsADirectoryError:
        raise Skip("not a file") from None
    except FileNotFoundError:
        raise Skip("missing: it was removed or is a broken symlink") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Skip("symlink loop: the link points back at itself") from None
        raise Skip(f"unreadable: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise Skip("not a file")
        if not stat.S_ISREG(st.st_mode):
            raise Skip("not a regular file (a named pipe, device or socket); only image files are read")
        if st.st_size > MAX_FILE_BYTES:
            raise Skip(f"too large: {st.st_size / 1e6:.0f} MB, above the limit of {MAX_FILE_BYTES / 1e6:.0f} MB "
                       "per image file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise Skip(f"unreadable: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise Skip(f"too large: it grew past the limit of {MAX_FILE_BYTES / 1e6:.0f} MB while being read")
    if not data:
        raise Skip("empty file (0 bytes)")
    return data


def process_file(root: str, rel: str, options: Options) -> Processed:
    try:
        data = read_source(os.path.join(root, rel))
        rgb, size = decode(data, options.background)
        del data
        return prepare(rel, rgb, size, options)
    except Skip as exc:
        return Processed(rel=rel, reason=str(exc))
    except MemoryError:
        return Processed(rel=rel, reason="too large to decode in the memory available")
    except Exception as exc:  # noqa: BLE001 - a decoder bug must not stop the run; say what happened
        return Processed(rel=rel, reason=f"could not be decoded: {type(exc).__name__}: {exc}")

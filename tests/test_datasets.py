"""`dataset add` on a corpus of good and bad inputs built here, plus the contract's invariants."""
from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pytest
from PIL import Image

from core.backend import Progress
from core.datasets import catalog
from core.datasets.build import Cancelled
from core.datasets.images import stored_size
from core.datasets.manifest import split_of
from core.datasets.tfrecord import decode_example, read_records
from core.errors import AlreadyExists, InvalidInput, NotFound
from core.registry import Registry
from core.workspace import Workspace

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _save(path: Path, im: Image.Image, fmt: str | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, fmt, **kw)
    return path


def _halves(size: tuple[int, int], left: tuple[int, int, int], right: tuple[int, int, int]) -> Image.Image:
    im = Image.new("RGB", size, right)
    im.paste(left, (0, 0, size[0] // 2, size[1]))
    return im


def _photo(seed: int, size: tuple[int, int] = (160, 120)) -> Image.Image:
    """A deterministic, distinct picture per seed."""
    im = Image.linear_gradient("L").resize(size).convert("RGB")
    im.paste(((seed * 53) % 256, (seed * 97) % 256, (seed * 31) % 256), (10, 10, 60, 50))
    return im


def _bomb_png() -> bytes:
    """A tiny valid-looking PNG whose header claims 30000 x 30000 pixels."""
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = data[12:29]                       # chunk type + 13 bytes of IHDR data
    ihdr[4:12] = struct.pack(">II", 30000, 30000)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def build_corpus(src: Path) -> dict[str, str]:
    """Write every case into src; return {relative path: expected outcome}. Outcomes:
    'ok', 'dup', 'ignored', or a phrase the skip reason must contain."""
    expect: dict[str, str] = {}
    _save(src / "good.jpg", _photo(1), quality=95)
    expect["good.jpg"] = "ok"
    _save(src / "UPPER.JPG", _photo(2), "JPEG")
    expect["UPPER.JPG"] = "ok"
    _save(src / "Shout.PNG", _photo(3), "PNG")
    expect["Shout.PNG"] = "ok"
    _save(src / "nested" / "deeper" / "still" / "deep.jpeg", _photo(4), "JPEG")
    expect["nested/deeper/still/deep.jpeg"] = "ok"
    _save(src / "ünïcødé" / "日本語 ✓.png", _photo(5))
    expect["ünïcødé/日本語 ✓.png"] = "ok"
    (src / "copies").mkdir()
    (src / "copies" / "good-copy.jpg").write_bytes((src / "good.jpg").read_bytes())
    expect["copies/good-copy.jpg"] = "dup"
    (src / "zero.jpg").write_bytes(b"")
    expect["zero.jpg"] = "empty file"
    (src / "notes.png").write_text("this is not a picture\n")
    expect["notes.png"] = "not an image"
    whole = (src / "good.jpg").read_bytes()
    (src / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    expect["truncated.jpg"] = "truncated or corrupt"
    png = io.BytesIO()
    _photo(6).save(png, "PNG")
    broken = bytearray(png.getvalue())
    broken[60:400] = os.urandom(340)
    (src / "corrupt.png").write_bytes(bytes(broken))
    expect["corrupt.png"] = "truncated or corrupt"
    (src / "bomb.png").write_bytes(_bomb_png())
    expect["bomb.png"] = "decompression bomb"
    _save(src / "one-pixel.png", Image.new("RGB", (1, 1), (9, 9, 9)))
    expect["one-pixel.png"] = "too small: 1x1 pixels; the minimum is 32 px"
    _save(src / "small.png", _photo(7, (40, 48)))
    expect["small.png"] = "ok"                                   # upsampled, counted in stats
    (src / "self.jpg").symlink_to("self.jpg")
    expect["self.jpg"] = "symlink loop"
    (src / "nested" / "loop").symlink_to("..")
    expect["nested/loop"] = "symlink loop"
    (src / "gone.jpg").symlink_to("does-not-exist.jpg")
    expect["gone.jpg"] = "broken symlink"
    (src / "readme.txt").write_text("hello")
    expect["readme.txt"] = "ignored"
    _save(src / ".hidden.jpg", _photo(8))
    expect[".hidden.jpg"] = "ignored"
    locked = _save(src / "locked.jpg", _photo(9))
    locked.chmod(0)
    expect["locked.jpg"] = "ok" if IS_ROOT else "unreadable: permission denied"
    # modes
    exif = Image.Exif()
    exif[0x0112] = 6                                             # rotate 90 degrees clockwise to display
    _save(src / "modes" / "exif-rotated.jpg", _halves((200, 100), (255, 0, 0), (0, 0, 255)), exif=exif.tobytes(),
          quality=95)
    expect["modes/exif-rotated.jpg"] = "ok"
    _save(src / "modes" / "cmyk.jpg", Image.new("CMYK", (100, 100), (0, 255, 255, 0)), quality=95)
    expect["modes/cmyk.jpg"] = "ok"
    sixteen = Image.frombytes("I;16", (100, 100), struct.pack("<H", 32768) * 100 * 100)
    _save(src / "modes" / "sixteen-bit.png", sixteen)
    expect["modes/sixteen-bit.png"] = "ok"
    rgba = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    rgba.paste((0, 255, 0, 255), (0, 0, 50, 100))
    _save(src / "modes" / "rgba.png", rgba)
    expect["modes/rgba.png"] = "ok"
    pal = Image.new("P", (100, 100), 0)
    pal.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    pal.paste(1, (50, 0, 100, 100))
    _save(src / "modes" / "palette.png", pal, transparency=0)
    expect["modes/palette.png"] = "ok"
    _save(src / "modes" / "gray.jpg", Image.new("L", (100, 100), 77))
    expect["modes/gray.jpg"] = "ok"
    return expect


def _snapshot(root: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            st = os.lstat(p)
            data = b""
            if p.is_file() and not p.is_symlink():
                try:
                    data = p.read_bytes()
                except PermissionError:
                    pass
            out[str(p.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, hashlib.sha256(data).hexdigest())
    return out


def _records(folder: Path, split: str) -> list[dict]:
    out = []
    for shard in sorted(folder.glob(f"{split}-*-of-*.tfrecord")):
        out += [decode_example(r) for r in read_records(shard)]
    return out


def _stored(folder: Path) -> dict[str, Image.Image]:
    out = {}
    for split in ("train", "validation"):
        for ex in _records(folder, split):
            out[ex["image/filename"][0].decode()] = Image.open(io.BytesIO(ex["image/encoded"][0]))
    return out


@pytest.fixture
def reg(workspace: Workspace) -> Registry:
    r = Registry(workspace.registry_path)
    yield r
    r.close()


def test_bad_input_corpus(tmp_path: Path, workspace: Workspace, reg: Registry) -> None:
    src = tmp_path / "src"
    src.mkdir()
    expect = build_corpus(src)
    before = _snapshot(src)
    reports: list[Progress] = []
    ds = catalog.add(workspace, reg, src, "corpus", crop="center", image_size=64, progress=reports.append,
                     cancel=None, workers=2)
    assert _snapshot(src) == before, "the source folder must never be modified"

    m = catalog.manifest(workspace, reg, "corpus")
    skipped = {s["path"]: s["reason"] for s in m["skipped"]}
    dups = {d["path"]: d["duplicate_of"] for d in m["duplicates"]}
    stored = _stored(Path(ds.path))
    for rel, outcome in expect.items():
        if outcome == "ok":
            assert rel in stored, (rel, skipped.get(rel))
        elif outcome == "dup":
            assert rel in dups and rel not in stored
        elif outcome == "ignored":
            assert rel not in stored and rel not in skipped
        else:
            assert rel in skipped, (rel, outcome)
            assert outcome in skipped[rel], (rel, skipped[rel])
    assert dups == {"copies/good-copy.jpg": "good.jpg"}
    assert set(skipped) == {r for r, o in expect.items() if o not in ("ok", "dup", "ignored")}

    ok = sum(1 for o in expect.values() if o == "ok")
    assert ds.train_count + ds.validation_count == ok == len(stored)
    assert m["counts"]["skipped"] == len(skipped) == ds.skipped_count
    assert m["counts"]["duplicates"] == 1 == ds.duplicate_count
    assert m["counts"]["ignored"] >= 2
    assert m["stats"]["upsampled"] == 1
    assert m["stats"]["sizes"]["min"] == [40, 48] and m["stats"]["sizes"]["max"] == [100, 200]
    assert m["stats"]["sizes"]["median"] == [160, 120] and len(m["stats"]["mean_rgb"]) == 3
    assert m["options"]["background"] == [255, 255, 255]
    assert reports and reports[-1].stage == "finish"

    s = stored_size(64)
    for rel, im in stored.items():
        assert im.mode == "RGB" and min(im.size) == s and max(im.size) <= 2 * s, (rel, im.size)
    # EXIF orientation 6: the left (red) half of the file ends up on top
    rot = stored["modes/exif-rotated.jpg"].convert("RGB")
    assert rot.size == (s, 2 * s)
    r, g, b = rot.getpixel((s // 2, s // 4))
    assert r > 200 and b < 60
    r, g, b = rot.getpixel((s // 2, 2 * s - s // 4))
    assert b > 200 and r < 60
    # CMYK (0, 255, 255, 0) is red
    r, g, b = stored["modes/cmyk.jpg"].getpixel((s // 2, s // 2))
    assert r > 200 and g < 60 and b < 60
    # 16-bit mid grey is scaled, not clipped to white
    assert abs(stored["modes/sixteen-bit.png"].getpixel((s // 2, s // 2))[0] - 128) <= 2
    # transparency is composited on the recorded background (white)
    assert stored["modes/rgba.png"].getpixel((s - 3, s // 2)) == (255, 255, 255)
    assert stored["modes/rgba.png"].getpixel((3, s // 2))[1] > 240
    assert stored["modes/palette.png"].getpixel((3, s // 2)) == (255, 255, 255)
    assert stored["modes/palette.png"].getpixel((s - 3, s // 2))[0] > 190
    assert stored["modes/gray.jpg"].getpixel((5, 5))[0] in range(74, 81)
    assert catalog.contact_sheet(workspace, reg, "corpus")[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(workspace.tmp_dir.glob("*.building"))


def test_split_is_by_content_and_stable_when_images_are_added(tmp_path: Path, workspace: Workspace,
                                                              reg: Registry) -> None:
    src = tmp_path / "grow"
    for i in range(40):
        _save(src / f"a{i:03d}.png", _photo(i))
    first = catalog.add(workspace, reg, src, "v1", image_size=32, progress=None, cancel=None, workers=1)
    for i in range(40, 80):
        _save(src / "more" / f"b{i:03d}.png", _photo(i))
    second = catalog.add(workspace, reg, src, "v2", image_size=32, progress=None, cancel=None, workers=2)

    def splits(folder: Path) -> dict[str, str]:
        out = {}
        for split in ("train", "validation"):
            for ex in _records(folder, split):
                sha = ex["image/sha256"][0].decode()
                assert split_of(sha) == split
                out[ex["image/filename"][0].decode()] = split
        return out

    old, new = splits(Path(first.path)), splits(Path(second.path))
    assert len(old) == 40 and len(new) == 80
    assert {k: new[k] for k in old} == old
    assert "validation" in new.values() and "train" in new.values()


def test_existing_name_is_refused_and_names_are_checked(tmp_path: Path, workspace: Workspace, reg: Registry) -> None:
    catalog.demo(workspace, reg, "d", 12, progress=None, cancel=None, workers=1)
    with pytest.raises(AlreadyExists) as err:
        catalog.demo(workspace, reg, "d", 12, progress=None, cancel=None, workers=1)
    assert "--replace" in err.value.hint
    with pytest.raises(InvalidInput):
        catalog.demo(workspace, reg, "../escape", 12, progress=None, cancel=None)
    with pytest.raises(InvalidInput):
        catalog.add(workspace, reg, tmp_path, "x", crop="sideways", image_size=64, progress=None, cancel=None)
    with pytest.raises(NotFound):
        catalog.add(workspace, reg, tmp_path / "nope", "x", crop="center", image_size=64, progress=None, cancel=None)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "zero.png").write_bytes(b"")
    with pytest.raises(InvalidInput) as err:
        catalog.add(workspace, reg, empty, "x", crop="center", image_size=64, progress=None, cancel=None)
    assert "empty file" in err.value.message
    assert [d.name for d in reg.list_datasets()] == ["d"]
    catalog.remove(workspace, reg, "d")
    assert reg.list_datasets() == [] and not workspace.dataset_dir("d").exists()
    with pytest.raises(NotFound):
        catalog.remove(workspace, reg, "d")


def test_cancel_leaves_nothing_and_a_rerun_works(workspace: Workspace, reg: Registry) -> None:
    cancel = threading.Event()

    def progress(p: Progress) -> None:
        if p.stage == "process" and p.done >= 8:
            cancel.set()

    with pytest.raises(Cancelled):
        catalog.demo(workspace, reg, "c", 400, progress=progress, cancel=cancel, workers=2)
    assert reg.list_datasets() == []
    assert not workspace.dataset_dir("c").exists()
    assert not list(workspace.tmp_dir.glob("dataset-c.building"))
    ds = catalog.demo(workspace, reg, "c", 16, progress=None, cancel=None, workers=1)
    assert ds.train_count + ds.validation_count == 16


def test_demo_is_deterministic(tmp_path: Path) -> None:
    from tests.fixtures.datasets import make_demo_dataset
    a = make_demo_dataset(tmp_path / "a", count=24, image_size=32)
    b = make_demo_dataset(tmp_path / "b", count=24, image_size=32)
    for split in ("train", "validation"):
        assert [r["image/sha256"] for r in _records(a, split)] == [r["image/sha256"] for r in _records(b, split)]


def test_demo_pictures_are_one_shape_inside_the_training_crop() -> None:
    """What makes the demo learnable in a first run: a plain background and one shape that
    the centre 75% crop (what training and serving cut) holds whole; and variety across
    pictures (every shape colour and background occurs)."""
    from core.datasets import demo
    from trainer.contract import CROP_FRACTION

    size = 64
    lo, hi = size * (1 - CROP_FRACTION) / 2, size * (1 + CROP_FRACTION) / 2
    fills, backgrounds = set(), set()
    for i in range(120):
        im = demo.render(0, i, size).convert("RGB")
        colours = im.getcolors(maxcolors=size * size)
        background = max(colours)[1]               # the most common colour
        assert background in demo.BACKGROUNDS
        backgrounds.add(background)
        diff = [(x, y) for y in range(size) for x in range(size)
                if im.getpixel((x, y)) != background]
        assert diff, f"picture {i} has no shape"
        xs, ys = [p[0] for p in diff], [p[1] for p in diff]
        assert lo <= min(xs) and max(xs) < hi and lo <= min(ys) and max(ys) < hi, i
        fills |= {c for _, c in colours if c in demo.COLOURS}
    assert fills == set(demo.COLOURS) and backgrounds == set(demo.BACKGROUNDS)


@pytest.mark.slow
def test_demo_fixture_reads_back_with_tensorflow(demo_dataset: Path) -> None:
    """The trainer's side of the contract: parse the shards with real tf.data."""
    import json

    import tensorflow as tf
    manifest = json.loads((demo_dataset / "manifest.json").read_text())
    assert manifest["format"] == "genml.dataset/1" and manifest["options"]["stored_size"] == 43
    spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
            "image/format": tf.io.FixedLenFeature([], tf.string),
            "image/height": tf.io.FixedLenFeature([], tf.int64),
            "image/width": tf.io.FixedLenFeature([], tf.int64),
            "image/filename": tf.io.FixedLenFeature([], tf.string),
            "image/sha256": tf.io.FixedLenFeature([], tf.string)}
    n = 0
    for split in ("train", "validation"):
        files = [str(demo_dataset / f) for f in manifest["shards"][split]]
        for rec in tf.data.TFRecordDataset(files):
            ex = tf.io.parse_single_example(rec, spec)
            img = tf.io.decode_image(ex["image/encoded"], channels=3)
            assert tuple(img.shape) == (int(ex["image/height"]), int(ex["image/width"]), 3)
            assert ex["image/format"].numpy() == b"png" and len(ex["image/sha256"].numpy()) == 64
            n += 1
    assert n == manifest["counts"]["train"] + manifest["counts"]["validation"] == 96


def test_one_build_per_name_at_a_time(workspace: Workspace, reg: Registry) -> None:
    started, release = threading.Event(), threading.Event()

    def progress(p: Progress) -> None:
        started.set()
        release.wait(30)

    results: list[object] = []
    t = threading.Thread(target=lambda: results.append(
        catalog.demo(workspace, reg, "busy", 10, progress=progress, cancel=None, workers=1)))
    t.start()
    assert started.wait(30)
    try:
        from core.errors import InvalidState
        with pytest.raises(InvalidState):
            catalog.demo(workspace, Registry(workspace.registry_path), "busy", 10, progress=None, cancel=None,
                         workers=1)
    finally:
        release.set()
        t.join(30)
    assert results and results[0].name == "busy"  # type: ignore[attr-defined]  # the thread put a Dataset


_CRASHING_WORKER = """
import json, os, sys
from core.datasets import build, images
real = images.process_file

def crashing(root, rel, options):
    if rel == "p07.png":
        os._exit(70)            # dies like a segfaulting decoder would, in the worker only
    return real(root, rel, options)

images.process_file = crashing
src = sys.argv[1]
tasks = list(build.file_tasks(src, sorted(os.listdir(src))))
out = list(build.run_tasks(tasks, images.Options(image_size=32), workers=2))
print(json.dumps({"expected": [t[2] for t in tasks], "got": [[p.rel, p.ok, p.reason] for p in out],
                  "start_method": build._context().get_start_method()}))
"""


def test_a_worker_that_dies_costs_one_file_not_the_run(tmp_path: Path) -> None:
    """A decoder that kills its process (a segfault, the OOM killer) is isolated and reported.

    It runs in a fresh interpreter: the patched decoder reaches the workers only by fork, and
    the pool forks only from a single-threaded process, which this test process (with the
    suite's earlier threads) may not be."""
    src = tmp_path / "src"
    for i in range(20):
        _save(src / f"p{i:02d}.png", _photo(i))
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, "-c", _CRASHING_WORKER, str(src)], capture_output=True,
                          text=True, timeout=120, env=env, cwd=root)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["start_method"] == "fork"
    assert [g[0] for g in result["got"]] == result["expected"]          # all there, in order
    bad = [(rel, reason) for rel, ok, reason in result["got"] if not ok]
    assert bad == [("p07.png", "crashed the image decoder (or ran out of memory)")]


def test_tfrecord_roundtrip_and_corruption_is_detected(tmp_path: Path) -> None:
    from core.datasets.tfrecord import encode_example, frame
    ex = {"b": b"\x00\xffbytes", "s": "text", "i": [0, 1, -5, 2 ** 40], "f": [0.5, -1.25]}
    path = tmp_path / "x.tfrecord"
    path.write_bytes(frame(encode_example(ex)) * 3)
    got = [decode_example(r) for r in read_records(path)]
    assert len(got) == 3
    assert got[0] == {"b": [b"\x00\xffbytes"], "s": [b"text"], "i": [0, 1, -5, 2 ** 40], "f": [0.5, -1.25]}
    data = bytearray(path.read_bytes())
    data[20] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        list(read_records(path))

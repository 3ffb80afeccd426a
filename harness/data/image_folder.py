"""The `folder:DIR` source: DIR/train/<class>/*.png|jpg (and optionally DIR/test/...), decoded
once to uint8 arrays cached under ~/.cache/harness and memory-mapped on later loads. Every
file is checked as it is listed and decoded: a dangling or looping link, a file that is not
an image, a decompression bomb, an image of another size is one line naming the file."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

from harness.data.splits import TEST_FRACTION, TEST_SEED, Split, stratified_split
from harness.errors import HarnessError
from harness.paths import cache_dir

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
MAX_PIXELS = 4096 * 4096  # per image: a CNN harness has no use for larger, a bomb is much larger


def folder_state(root: Path) -> str:
    """The folder as it is now: its class names and the content key of its images (names,
    labels, sizes, times); bad folders raise the HarnessError that loading them would."""
    class_names, _, key = _listing(root)
    return f"{key} {'/'.join(class_names)}"


def _listing(root: Path) -> tuple[list[str], dict[str, list[tuple[str, int, int, int]]], str]:
    """(class names, the images of train/ and test/, their content key), the folder checked."""
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise HarnessError(f"folder:{root}: no train/ folder (expected {root}/train/<class>/*.png|jpg)")
    class_names = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if len(class_names) < 2:
        raise HarnessError(f"folder:{root}: train/ needs at least two class folders")
    files = {part: _image_files(root / part, class_names) for part in ("train", "test")}
    if not files["train"]:
        raise HarnessError(f"folder:{root}: no images under train/<class>/")
    return class_names, files, _content_key(files)


def load_folder(root: Path) -> tuple[Split, Split, list[str]]:
    """(training pool, test split, class names) of an image folder, decoded once and cached."""
    class_names, files, key = _listing(root)
    cached = cache_dir() / f"folder-{key}-u8"
    if not cached.is_dir():
        pool = _decode(files["train"], root)
        if files["test"]:
            test = _decode(files["test"], root, shape=pool.x.shape[1:])
        else:
            what = f"folder:{root}: the {TEST_FRACTION:.0%} test split (no test/ folder)"
            x_pool, x_test, y_pool, y_test = stratified_split(pool.x, pool.y, TEST_FRACTION, TEST_SEED, what)
            pool, test = Split(x_pool, y_pool), Split(x_test, y_test)
        if not _write_cache(cached, {"x_train": pool.x, "y_train": pool.y, "x_test": test.x, "y_test": test.y}):
            return pool, test, class_names  # a cache that cannot be written: decoded again next time
    arrays = {
        name: np.load(cached / f"{name}.npy", mmap_mode="r") for name in ("x_train", "y_train", "x_test", "y_test")
    }
    y_train, y_test = np.asarray(arrays["y_train"]), np.asarray(arrays["y_test"])
    return Split(arrays["x_train"], y_train), Split(arrays["x_test"], y_test), class_names


def _write_cache(folder: Path, arrays: dict[str, np.ndarray]) -> bool:
    """One .npy per array (memory-mapped on load), written beside `folder` and renamed into
    place: a concurrent reader never sees half a cache. False where the cache folder cannot
    be written (read-only, full): the arrays are then used as decoded."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f"{folder.name}.", suffix=".tmp", dir=folder.parent))
    except OSError:
        return False
    try:
        for name, array in arrays.items():
            np.save(partial / f"{name}.npy", array)
        os.replace(partial, folder)
    except OSError:  # a full disk, or another process put the same cache in place first
        shutil.rmtree(partial, ignore_errors=True)
        return folder.is_dir()
    return True


def _image_files(folder: Path, class_names: list[str]) -> list[tuple[str, int, int, int]]:
    """(path, label, size, mtime_ns) of every image under folder/<class>/, sorted by name:
    one scandir per class, plain strings (50,000 Path objects alone cost 0.4 s)."""
    found = []
    for label, name in enumerate(class_names):
        class_dir = os.path.join(folder, name)
        if os.path.isdir(class_dir):
            with os.scandir(class_dir) as entries:
                images = sorted((e for e in entries if e.name.lower().endswith(IMAGE_SUFFIXES)), key=lambda e: e.name)
            for entry in images:
                try:
                    stat = entry.stat()  # follows symlinks: a dangling or looping one fails here
                except OSError as exc:
                    raise HarnessError(
                        f"folder:{folder.parent}: cannot read {entry.path}: {exc.strerror or exc}"
                    ) from None
                found.append((entry.path, label, stat.st_size, stat.st_mtime_ns))
    return found


def _content_key(files: dict[str, list[tuple[str, int, int, int]]]) -> str:
    """Names, labels, sizes and modification times of every image: a file added, removed,
    moved or rewritten gives a new key, without reading 50,000 files on every load."""
    lines = [
        f"{part}/{label}/{os.path.basename(path)}/{size}/{mtime_ns}\n"
        for part, items in files.items()
        for path, label, size, mtime_ns in items
    ]
    return hashlib.sha256("".join(lines).encode()).hexdigest()[:16]


def _decode(items: list[tuple[str, int, int, int]], root: Path, shape: Optional[tuple] = None) -> Split:
    """Decode every image to uint8 RGB; all must have one size (`shape`, when given: the
    training images' size, for the test split)."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    images = []
    for path, *_ in items:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    if image.width * image.height > MAX_PIXELS:
                        raise HarnessError(
                            f"folder:{root}: {path} is {image.width}x{image.height} pixels, more than an "
                            f"image of this harness may have ({MAX_PIXELS:,}); a decompression bomb?"
                        )
                    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise HarnessError(f"folder:{root}: {path} refused: {exc}") from None
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
            raise HarnessError(f"folder:{root}: cannot decode {path}: {exc}") from None
        if shape is None:
            shape = array.shape
        elif array.shape != shape:
            raise HarnessError(
                f"folder:{root}: {path} is {array.shape[1]}x{array.shape[0]}, "
                f"the training images are {shape[1]}x{shape[0]}"
            )
        images.append(array)
    y = np.array([label for _, label, *_ in items], dtype=np.int64)
    return Split(np.stack(images), y)  # uint8: the cache stays 4x smaller than float32

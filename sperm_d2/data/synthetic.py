"""Synthetic microscope scenes: stained background, noise, blur, tails, debris and sperm heads.

Good heads are smooth ovals with a pale acrosome cap over the front; bad heads are tapered
(thin cigar), pyriform (pear, narrow towards the tail) or amorphous (irregular outline), without a
clear cap. Round pale cells and dark debris are distractors and are not annotated. Heads are
~25-45 px long at 192 px and scale down with smaller images.

``render_scene`` draws one scene in memory; ``render_video_frames`` draws a sequence with heads
drifting and turning smoothly; :mod:`sperm_d2.data.synthetic_io` writes labelme datasets.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator

import cv2
import numpy as np

GOOD_KINDS = ("normal",)
BAD_KINDS = ("tapered", "pyriform", "amorphous")
KIND_CLASS = {"normal": "good", "tapered": "bad", "pyriform": "bad", "amorphous": "bad"}
_SHIFT = 4  # sub-pixel bits for cv2 drawing
_N_OUTLINE = 48


@dataclass(frozen=True)
class HeadSpec:
    """One head: ``outline`` in head coordinates (front = +x, tail leaves at -x), then placed."""

    kind: str
    outline: np.ndarray  # (N, 2) float, head frame
    cx: float
    cy: float
    angle: float  # degrees, counter-clockwise in image coordinates
    nucleus: tuple  # BGR
    tail_len: float
    tail_phase: float
    vx: float = 0.0
    vy: float = 0.0
    spin: float = 0.0

    @property
    def radius(self) -> float:
        return float(np.abs(self.outline).max())

    def polygon(self) -> np.ndarray:
        """Outline in image coordinates, (N, 2) float."""
        t = np.deg2rad(self.angle)
        rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        return self.outline @ rot.T + [self.cx, self.cy]


def _outline(rng: np.random.Generator, kind: str, scale: float) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, _N_OUTLINE, endpoint=False)
    a = rng.uniform(13, 21) * scale
    if kind == "normal":
        b = a * rng.uniform(0.62, 0.74)
        x, y = a * np.cos(t), b * np.sin(t)
    elif kind == "tapered":
        b = a * rng.uniform(0.30, 0.42)
        x, y = a * np.cos(t), b * np.sin(t) * (1 - 0.25 * np.cos(t) ** 2)
    elif kind == "pyriform":
        b = a * rng.uniform(0.55, 0.68)
        x, y = a * np.cos(t), b * np.sin(t) * (1 + 0.5 * np.cos(t)) / 1.25
    elif kind == "amorphous":
        r = np.ones_like(t)
        for k in range(2, 6):
            r += rng.uniform(0.06, 0.16) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
        b = a * rng.uniform(0.6, 0.9)
        x, y = a * r * np.cos(t), b * r * np.sin(t)
    else:
        raise ValueError(f"unknown head kind {kind!r}")
    return np.stack([x, y], axis=1)


def _random_head(rng, kind: str, scale: float, h: int, w: int, placed: list) -> HeadSpec | None:
    outline = _outline(rng, kind, scale)
    r = float(np.abs(outline).max())
    for _ in range(60):
        cx, cy = rng.uniform(r + 2, w - r - 2), rng.uniform(r + 2, h - r - 2)
        if all(np.hypot(cx - p.cx, cy - p.cy) > 1.15 * (r + p.radius) for p in placed):
            break
    else:
        return None
    nucleus = tuple(float(v) for v in np.array([150, 70, 120]) + rng.normal(0, 12, 3))
    speed, heading = rng.uniform(0.4, 1.4) * scale, rng.uniform(0, 2 * np.pi)
    return HeadSpec(
        kind,
        outline,
        cx,
        cy,
        float(rng.uniform(0, 360)),
        nucleus,
        tail_len=float(rng.uniform(2.0, 3.5) * r),
        tail_phase=float(rng.uniform(0, 2 * np.pi)),
        vx=speed * np.cos(heading),
        vy=speed * np.sin(heading),
        spin=float(rng.uniform(-2, 2)),
    )


def _fill(img: np.ndarray, poly: np.ndarray, colour) -> None:
    pts = np.round(poly * (1 << _SHIFT)).astype(np.int32)
    cv2.fillPoly(img, [pts], colour, lineType=cv2.LINE_AA, shift=_SHIFT)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = np.array([215, 195, 222]) + rng.normal(0, 8, 3)
    low = cv2.resize(rng.normal(0, 9, (4, 4, 3)).astype(np.float32), (w, h), cv2.INTER_CUBIC)
    return (base + low).astype(np.float32)


def _draw_tail(img: np.ndarray, head: HeadSpec) -> None:
    t = np.deg2rad(head.angle)
    ax, ay = np.cos(t), np.sin(t)  # head axis (front direction)
    back = np.min(head.outline[:, 0])
    # Tail: a thin wavy curve leaving the back of the head.
    s = np.linspace(0, head.tail_len, 40)
    wob = 3.0 * np.sin(s / 7.0 + head.tail_phase) * np.minimum(1, s / 10)
    tx, ty = back - s, wob
    pts = np.stack([head.cx + tx * ax - ty * ay, head.cy + tx * ay + ty * ax], axis=1)
    tail_col = tuple(0.5 * np.array(head.nucleus) + 0.5 * np.array([205, 170, 200]))
    cv2.polylines(
        img,
        [np.round(pts * (1 << _SHIFT)).astype(np.int32)],
        False,
        tail_col,
        thickness=2,
        lineType=cv2.LINE_AA,
        shift=_SHIFT,
    )


def _draw_head(img: np.ndarray, head: HeadSpec, rng: np.random.Generator) -> None:
    t = np.deg2rad(head.angle)
    ax, ay = np.cos(t), np.sin(t)
    _fill(img, head.polygon(), head.nucleus)
    # Pale acrosome cap: every good head has one over its front ~45 %; some tapered/pyriform
    # heads carry a smaller one too, so the class must also be read from the outline.
    cap_from = None
    if head.kind == "normal":
        cap_from = 0.1
    elif head.kind in ("tapered", "pyriform") and rng.random() < 0.35:
        cap_from = 0.45
    if cap_from is not None:
        x_max = head.outline[:, 0].max()
        cap = head.outline.copy()
        cap[cap[:, 0] < cap_from * x_max, 0] = cap_from * x_max
        rot = np.array([[ax, -ay], [ay, ax]])
        colour = tuple(float(v) for v in np.array([198, 145, 192]) + rng.normal(0, 8, 3))
        _fill(img, (cap * 0.9) @ rot.T + [head.cx, head.cy], colour)
    if head.kind == "amorphous" and rng.random() < 0.6:  # a vacuole
        c = (head.cx + rng.normal(0, 2), head.cy + rng.normal(0, 2))
        cv2.circle(img, tuple(int(v) for v in c), max(1, int(head.radius / 5)), (190, 150, 185), -1)


def _draw_distractors(img: np.ndarray, rng: np.random.Generator, scale: float, n: int) -> None:
    h, w = img.shape[:2]
    for _ in range(n):
        c = (float(rng.uniform(0, w)), float(rng.uniform(0, h)))
        if rng.random() < 0.35:  # round pale cell, no acrosome: not a sperm head
            r = rng.uniform(8, 12) * scale
            poly = np.stack(
                [
                    c[0] + r * np.cos(np.linspace(0, 6.28, 32)),
                    c[1] + r * np.sin(np.linspace(0, 6.28, 32)),
                ],
                1,
            )
            _fill(img, poly, tuple(float(v) for v in [185, 150, 180] + rng.normal(0, 8, 3)))
        else:  # small dark debris
            r = rng.uniform(1.5, 4.5) * scale
            ang = np.linspace(0, 6.28, 10)
            rr = r * rng.uniform(0.6, 1.3, 10)
            poly = np.stack([c[0] + rr * np.cos(ang), c[1] + rr * np.sin(ang)], 1)
            _fill(img, poly, tuple(float(v) for v in [120, 70, 110] + rng.normal(0, 15, 3)))


def _finish(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, 1.1)))
    img = img + rng.normal(0, rng.uniform(2.5, 6.0), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class SceneSpec:
    """Everything a scene needs except the per-frame noise: lets a video reuse it."""

    height: int
    width: int
    heads: tuple
    background: np.ndarray
    distractor_seed: int
    num_distractors: int
    scale: float


def sample_scene(
    rng: np.random.Generator,
    height: int,
    width: int,
    num_heads: int | None = None,
    good_fraction: float = 0.5,
) -> SceneSpec:
    """Sample the layout of a scene (heads, kinds, colours, background)."""
    scale = min(1.0, min(height, width) / 160.0)
    n = int(rng.integers(2, 6)) if num_heads is None else int(num_heads)
    heads: list[HeadSpec] = []
    for _ in range(n):
        kind = "normal" if rng.random() < good_fraction else str(rng.choice(BAD_KINDS))
        head = _random_head(rng, kind, scale, height, width, heads)
        if head is not None:
            heads.append(head)
    return SceneSpec(
        height,
        width,
        tuple(heads),
        _background(rng, height, width),
        int(rng.integers(2**31)),
        int(rng.integers(2, 9)),
        scale,
    )


def draw_scene(spec: SceneSpec, rng: np.random.Generator) -> np.ndarray:
    """Render a sampled scene to a BGR uint8 image (noise and blur drawn from ``rng``)."""
    img = spec.background.copy()
    _draw_distractors(
        img, np.random.default_rng(spec.distractor_seed), spec.scale, spec.num_distractors
    )
    for head in spec.heads:  # all tails first: a tail never crosses a head's (labelled) mask
        _draw_tail(img, head)
    for head in spec.heads:
        _draw_head(img, head, rng)
    return _finish(img, rng)


def _annotations(spec: SceneSpec) -> list[tuple[str, str, np.ndarray]]:
    h, w = spec.height, spec.width
    out = []
    for head in spec.heads:
        poly = head.polygon()
        poly[:, 0] = poly[:, 0].clip(0, w)
        poly[:, 1] = poly[:, 1].clip(0, h)
        out.append((head.kind, KIND_CLASS[head.kind], poly))
    return out


def render_scene_detailed(
    rng: np.random.Generator | int,
    height: int = 192,
    width: int = 192,
    num_heads: int | None = None,
) -> tuple[np.ndarray, list[tuple[str, str, np.ndarray]]]:
    """Like :func:`render_scene` but each head is ``(kind, class_name, polygon)``."""
    rng = np.random.default_rng(rng)
    spec = sample_scene(rng, height, width, num_heads)
    return draw_scene(spec, rng), _annotations(spec)


def render_scene(
    rng: np.random.Generator | int,
    height: int = 192,
    width: int = 192,
    num_heads: int | None = None,
) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """Draw one scene: ``(image_bgr uint8 HxWx3, [(class_name, polygon (N, 2) float), ...])``.

    ``num_heads`` None draws 2-5 heads; heads that do not fit without overlap are left out.
    """
    img, heads = render_scene_detailed(rng, height, width, num_heads)
    return img, [(cls, poly) for _, cls, poly in heads]


def _step(head: HeadSpec, h: int, w: int) -> HeadSpec:
    r = head.radius
    cx, cy, vx, vy = head.cx + head.vx, head.cy + head.vy, head.vx, head.vy
    if not r < cx < w - r:  # bounce off the border so heads stay fully visible
        vx, cx = -vx, float(np.clip(cx, r, w - r))
    if not r < cy < h - r:
        vy, cy = -vy, float(np.clip(cy, r, h - r))
    return replace(
        head,
        cx=cx,
        cy=cy,
        vx=vx,
        vy=vy,
        angle=head.angle + head.spin,
        tail_phase=head.tail_phase + 0.6,
    )


def iter_video_scenes(
    rng: np.random.Generator | int,
    height: int,
    width: int,
    num_frames: int,
    num_heads: int | None = None,
) -> Iterator[tuple[np.ndarray, list[tuple[str, np.ndarray]]]]:
    """Yield ``(frame_bgr, [(class_name, polygon), ...])`` with heads drifting smoothly."""
    rng = np.random.default_rng(rng)
    spec = sample_scene(rng, height, width, num_heads)
    for _ in range(num_frames):
        yield draw_scene(spec, rng), [(c, p) for _, c, p in _annotations(spec)]
        spec = replace(spec, heads=tuple(_step(hd, height, width) for hd in spec.heads))


def render_video_frames(
    rng: np.random.Generator | int,
    height: int = 192,
    width: int = 192,
    num_frames: int = 60,
    num_heads: int | None = None,
) -> Iterator[np.ndarray]:
    """Yield ``num_frames`` BGR uint8 frames (for ``cv2.VideoWriter``) of one drifting scene."""
    for frame, _ in iter_video_scenes(rng, height, width, num_frames, num_heads):
        yield frame

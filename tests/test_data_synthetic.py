"""Synthetic scenes and videos: valid polygons, determinism, both classes, smooth motion."""

import numpy as np

from sperm_d2.data.synthetic import iter_video_scenes, render_scene, render_video_frames


def test_render_scene_outputs() -> None:
    classes = set()
    for seed in range(10):
        img, heads = render_scene(np.random.default_rng(seed), 160, 200)
        assert img.shape == (160, 200, 3) and img.dtype == np.uint8
        assert 1 <= len(heads) <= 5
        for cls, poly in heads:
            classes.add(cls)
            assert poly.ndim == 2 and poly.shape[1] == 2 and len(poly) >= 16
            assert poly[:, 0].min() >= 0 and poly[:, 0].max() <= 200
            assert poly[:, 1].min() >= 0 and poly[:, 1].max() <= 160
            length = np.ptp(poly, axis=0).max()
            assert 20 <= length <= 50  # heads ~25-45 px at this size
    assert classes == {"good", "bad"}


def test_render_scene_is_deterministic() -> None:
    a, ha = render_scene(3, 96, 96, num_heads=3)
    b, hb = render_scene(3, 96, 96, num_heads=3)
    c, _ = render_scene(4, 96, 96, num_heads=3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert [h[0] for h in ha] == [h[0] for h in hb] and len(ha) == 3


def test_video_heads_drift_smoothly() -> None:
    frames = list(render_video_frames(0, 128, 128, num_frames=12, num_heads=3))
    assert len(frames) == 12 and all(f.shape == (128, 128, 3) for f in frames)
    scenes = list(iter_video_scenes(0, 128, 128, 12, 3))
    assert np.array_equal(scenes[0][0], frames[0])
    centres = np.array([[p.mean(axis=0) for _, p in heads] for _, heads in scenes])
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=2)
    assert steps.max() < 3 and steps.sum() > 3  # heads move, but a little per frame
    assert [c for c, _ in scenes[0][1]] == [c for c, _ in scenes[-1][1]]

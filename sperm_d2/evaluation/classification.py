"""Image-level grading on class folders of single-cell crops (SMIDS/HuSHeM style).

An image is graded by its highest-scoring head; an image where no head reaches the threshold is
"no head found", which counts as wrong for accuracy, sensitivity and specificity and is reported
separately. ``bad`` is the positive class: sensitivity = bad images graded bad / bad images,
specificity = good images graded good / good images. Pure numpy: no torch, no detectron2.

Class-prior calibration: Mask R-CNN scores every class of a head separately (one detection per
class above the score floor), so an image carries its best score per class. A ``bias`` added to
the positive class's score before the arg-max moves the good/bad boundary; chosen on val by
balanced accuracy (:func:`choose_bias`), it corrects a model that leans to the majority class of
an imbalanced training set (HuSHeM is 75 % bad) without retraining. ``bias=0`` is the plain
top-head rule.
"""

import dataclasses

import numpy as np

NO_HEAD = "no head"


@dataclasses.dataclass(frozen=True)
class GradedImage:
    """One crop: its true class, the class and score of its highest-scoring head (or
    ``None``/0.0 when the model found none at its own score threshold), and the best score of
    every class detected in it (``()``: only the top head is known)."""

    path: str
    true: str
    top_class: str | None
    top_score: float
    class_scores: tuple[tuple[str, float], ...] = ()

    def detected(self) -> dict[str, float]:
        """``{class: best score}`` of the classes detected in the image."""
        best = dict(self.class_scores)
        if self.top_class is not None:
            best.setdefault(self.top_class, self.top_score)
        return best

    def predicted(
        self, threshold: float = 0.0, bias: float = 0.0, positive: str = "bad"
    ) -> str | None:
        """The grade at ``threshold``: ``None`` (no head found) when no head reaches it, else the
        detected class with the best score after adding ``bias`` to ``positive``'s (``bias=0``:
        the top head's class). Only detected classes compete: a class the model gave no score
        above its floor is never chosen, whatever the bias."""
        if self.top_class is None or self.top_score < threshold:
            return None
        if bias == 0.0:
            return self.top_class
        best = self.detected()
        return max(sorted(best), key=lambda c: best[c] + (bias if c == positive else 0.0))

    def flip_bias(self, positive: str = "bad") -> float | None:
        """The bias at which the grade switches to or from ``positive`` (best other detected
        score minus ``positive``'s); ``None`` when only one of them was detected."""
        best = self.detected()
        others = [s for c, s in best.items() if c != positive]
        if positive not in best or not others:
            return None
        return max(others) - best[positive]


def confusion_matrix(
    true: list[str], predicted: list[str | None], classes: tuple[str, ...]
) -> np.ndarray:
    """Counts ``[len(classes), len(classes) + 1]``: rows true class, columns predicted class and
    a last "no head" column (``predicted`` is ``None``)."""
    index = {c: i for i, c in enumerate(classes)}
    cm = np.zeros((len(classes), len(classes) + 1), np.int64)
    for t, p in zip(true, predicted, strict=True):
        if t not in index:
            raise ValueError(f"true class {t!r} is not one of {list(classes)}")
        if p is not None and p not in index:
            raise ValueError(f"predicted class {p!r} is not one of {list(classes)}")
        cm[index[t], len(classes) if p is None else index[p]] += 1
    return cm


def metrics_from_confusion(
    cm: np.ndarray, classes: tuple[str, ...], positive: str = "bad"
) -> dict[str, float | int]:
    """Accuracy, sensitivity/specificity/precision/F1 for ``positive`` (vs every other class),
    and the no-head count, from a :func:`confusion_matrix`. Undefined ratios are NaN."""
    n = int(cm.sum())
    k = len(classes)
    pos = classes.index(positive)
    correct = int(np.trace(cm[:, :k]))
    tp = int(cm[pos, pos])
    positives = int(cm[pos].sum())  # includes bad images with no head found (false negatives)
    negatives = n - positives
    # true negatives: non-positive images graded as some non-positive class... of their own class
    tn = int(sum(cm[i, i] for i in range(k) if i != pos))
    predicted_pos = int(cm[:, pos].sum())

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    sens, prec = ratio(tp, positives), ratio(tp, predicted_pos)
    f1 = 2 * prec * sens / (prec + sens) if prec + sens > 0 else float("nan")
    spec = ratio(tn, negatives)
    return {
        "images": n,
        "accuracy": ratio(correct, n),
        # the mean of the two recalls: what "call everything bad" cannot game on HuSHeM (75 % bad)
        "balanced_accuracy": (sens + spec) / 2,
        f"sensitivity_{positive}": sens,
        f"specificity_{positive}": spec,
        f"precision_{positive}": prec,
        f"f1_{positive}": f1,
        "no_head": int(cm[:, k].sum()),
        "no_head_rate": ratio(int(cm[:, k].sum()), n),
    }


def grade_metrics(
    graded: list[GradedImage],
    classes: tuple[str, ...],
    threshold: float = 0.0,
    *,
    positive: str = "bad",
    bias: float = 0.0,
) -> tuple[dict, np.ndarray]:
    """``(metrics, confusion matrix)`` of graded images at a score ``threshold`` and a ``bias``
    on the ``positive`` class's score."""
    cm = confusion_matrix(
        [g.true for g in graded],
        [g.predicted(threshold, bias, positive) for g in graded],
        classes,
    )
    metrics = metrics_from_confusion(cm, classes, positive)
    metrics["threshold"] = float(threshold)
    metrics["bias"] = float(bias)
    return metrics, cm


def choose_threshold(graded: list[GradedImage], classes: tuple[str, ...]) -> float:
    """The score threshold with the best image-level accuracy on ``graded`` (use the val split;
    report on test). Candidates are 0 and every top score; ties go to the lowest threshold."""
    candidates = sorted({0.0, *(g.top_score for g in graded if g.top_class is not None)})
    best, best_acc = 0.0, -1.0
    for t in candidates:
        acc = grade_metrics(graded, classes, t)[0]["accuracy"]
        if acc > best_acc + 1e-12:
            best, best_acc = t, acc
    return best


def choose_bias(
    graded: list[GradedImage],
    classes: tuple[str, ...],
    threshold: float = 0.0,
    positive: str = "bad",
) -> float:
    """The bias on ``positive``'s score with the best balanced accuracy on ``graded`` (use the
    val split; report on test), at a fixed score ``threshold``. Candidates are 0 and a hair
    either side of every image's :meth:`GradedImage.flip_bias`; ties go to the smallest |bias|.
    Falls back to 0 when ``graded`` lacks one of the classes (balanced accuracy undefined)."""
    eps = 1e-6
    flips = {
        f
        for g in graded
        if g.predicted(threshold) is not None and (f := g.flip_bias(positive)) is not None
    }
    candidates = sorted({0.0, *(f + d for f in flips for d in (-eps, eps))}, key=abs)
    best, best_score = 0.0, -1.0
    for b in candidates:
        score = grade_metrics(graded, classes, threshold, positive=positive, bias=b)[0][
            "balanced_accuracy"
        ]
        if np.isfinite(score) and score > best_score + 1e-12:
            best, best_score = b, score
    return float(best)


def per_group_good(
    graded: list[GradedImage], group_of, threshold: float = 0.0, bias: float = 0.0
) -> dict:
    """Per sample (``group_of(path)``): images, % graded good among graded images, no-head count."""
    groups: dict[str, list[GradedImage]] = {}
    for g in graded:
        groups.setdefault(group_of(g.path), []).append(g)
    out = {}
    for name, items in sorted(groups.items()):
        grades = [g.predicted(threshold, bias) for g in items]
        found = [p for p in grades if p is not None]
        out[name] = {
            "images": len(items),
            "pct_good": (
                round(100 * sum(p == "good" for p in found) / len(found), 2) if found else None
            ),
            "no_head": len(items) - len(found),
        }
    return out

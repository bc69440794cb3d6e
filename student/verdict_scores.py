"""Scored self-evaluation: the student's verdict as probabilities, calibrated on held-out data.

The student judges a chain of thought by generating ``correct``, ``wrong`` or ``uncertain``.
Argmax decoding keeps only the most likely word and throws away how sure the student was; on
the demo student the first verdict token was "correct" 99% of the time although its scores
ranked right above wrong reasonings well. So every reader of a verdict uses the scores:

* the **log-probabilities** of the three verdict words' first tokens at the first decoder step
  (log-softmax over the whole vocabulary: every backend computes exactly this, and parity
  compares it);
* the **probabilities** over the three verdicts: those scores renormalized among themselves;
* the **margin** ``log P(correct) - log P(wrong)``, what ranks reasonings (uncertain is left
  out: it says nothing about which way the student leans);
* the **score**, a calibrated probability that the reasoning is right,
  ``sigmoid(slope * margin + intercept)`` (Platt scaling), with slope and intercept fitted at
  distill time on held-out reasonings of known truth and recorded in the bundle manifest;
* the **calibrated verdict**: ``correct`` when the score reaches the manifest's threshold (the
  one that maximized balanced accuracy on the same held-out data), else ``wrong``.

An uncalibrated bundle (older, or distilled without held-out data) uses slope 1, intercept 0,
threshold 0.5: the score is then ``P(correct) / (P(correct) + P(wrong))``.

No torch here: the service, the export check and the benches share these rules.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from mindmirror.student.errors import MindmirrorError
from mindmirror.student.formats import Verdict
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "VERDICT_ORDER",
    "VerdictCalibration",
    "VerdictScore",
    "VerdictTokenError",
    "auroc",
    "balanced_accuracy",
    "expected_calibration_error",
    "fit_calibration",
    "score_verdict",
    "verdict_token_ids",
]

#: the order of the scored verdicts everywhere (token ids, log-probabilities, probabilities)
VERDICT_ORDER: tuple[Verdict, Verdict, Verdict] = (
    Verdict.CORRECT,
    Verdict.WRONG,
    Verdict.UNCERTAIN,
)


class VerdictTokenError(MindmirrorError, ValueError):
    """The tokenizer cannot tell the three verdict words apart by their first token."""


def verdict_token_ids(encode: Callable[[str], Sequence[int]]) -> tuple[int, int, int]:
    """The first token id of each verdict word (in :data:`VERDICT_ORDER`) as the student writes
    it as a whole target (``encode`` tokenizes one text, special tokens included or not).

    The first tokens must differ: that is what the first decoder step chooses between."""
    firsts = []
    for verdict in VERDICT_ORDER:
        ids = list(encode(verdict.value))
        if not ids:
            raise VerdictTokenError(f"the tokenizer encodes {verdict.value!r} as no token")
        firsts.append(int(ids[0]))
    if len(set(firsts)) != len(firsts):
        raise VerdictTokenError(
            "the verdict words share a first token "
            f"({dict(zip((v.value for v in VERDICT_ORDER), firsts, strict=True))}), so their "
            "scores cannot be told apart; retrain the tokenizer with the verdict words in its "
            "training text"
        )
    return firsts[0], firsts[1], firsts[2]


class VerdictCalibration(BaseModel):
    """How margins become scores and verdicts (recorded in the manifest by ``distill``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    slope: float = 1.0
    intercept: float = 0.0
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    #: what the held-out truth was: "gold labels" (the reasoning's answer against the human
    #: label) or "teacher verdicts"; None for the uncalibrated default
    fitted_on: str | None = None
    #: held-out reasonings the fit used (right, wrong)
    examples: tuple[int, int] = (0, 0)
    #: on those held-out reasonings: AUROC of the margin, balanced accuracy of the verdict
    auroc: float | None = None
    balanced_accuracy: float | None = None

    def score(self, margin: float) -> float:
        return _sigmoid(self.slope * margin + self.intercept)

    def verdict(self, score: float) -> Verdict:
        return Verdict.CORRECT if score >= self.threshold else Verdict.WRONG


UNCALIBRATED = VerdictCalibration()


@dataclass(frozen=True)
class VerdictScore:
    """One scored verdict."""

    logprobs: tuple[float, float, float]  # first-token log-probabilities, VERDICT_ORDER
    probabilities: dict[str, float]  # renormalized over the three verdicts
    margin: float  # log P(correct) - log P(wrong)
    score: float  # calibrated probability that the reasoning is right
    verdict: Verdict  # the calibrated verdict: correct or wrong


def score_verdict(
    logprobs: Sequence[float], calibration: VerdictCalibration | None = None
) -> VerdictScore:
    """Read one row of verdict log-probabilities (:data:`VERDICT_ORDER`)."""
    calibration = calibration or UNCALIBRATED
    values = np.asarray(logprobs, dtype=np.float64)
    if values.shape != (3,) or not np.all(np.isfinite(values)):
        raise ValueError(f"expected three finite verdict log-probabilities, got {list(logprobs)}")
    shares = np.exp(values - values.max())
    shares /= shares.sum()
    margin = float(values[0] - values[1])
    score = calibration.score(margin)
    return VerdictScore(
        logprobs=(float(values[0]), float(values[1]), float(values[2])),
        probabilities={v.value: float(p) for v, p in zip(VERDICT_ORDER, shares, strict=True)},
        margin=margin,
        score=score,
        verdict=calibration.verdict(score),
    )


# ----- fitting and metrics ------------------------------------------------------------------
def _sigmoid(x: float) -> float:
    # Both branches stay finite for any float margin (an exp never overflows).
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def auroc(scores: Sequence[float], truths: Sequence[bool]) -> float | None:
    """Area under the ROC curve of ``scores`` for telling true from false (ties count half);
    ``None`` when one class is missing."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(truths, dtype=bool)
    positives, negatives = int(t.sum()), int((~t).sum())
    if positives == 0 or negatives == 0:
        return None
    # Mann-Whitney U with average ranks for ties.
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    start = 0
    while start < len(s):
        end = start
        while end + 1 < len(s) and sorted_s[end + 1] == sorted_s[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    u = ranks[t].sum() - positives * (positives + 1) / 2
    return float(u / (positives * negatives))


def balanced_accuracy(predicted: Sequence[bool], truths: Sequence[bool]) -> float | None:
    """Mean of the true-positive and true-negative rates; ``None`` when a class is missing."""
    p = np.asarray(predicted, dtype=bool)
    t = np.asarray(truths, dtype=bool)
    if t.all() or not t.any():
        return None
    return float(((p & t).sum() / t.sum() + (~p & ~t).sum() / (~t).sum()) / 2)


def expected_calibration_error(
    scores: Sequence[float], truths: Sequence[bool], bins: int = 10
) -> float | None:
    """Expected calibration error of probabilities ``scores`` (equal-width bins)."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(truths, dtype=np.float64)
    if len(s) == 0:
        return None
    index = np.minimum((s * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            error += members.sum() / len(s) * abs(s[members].mean() - t[members].mean())
    return float(error)


def fit_calibration(
    margins: Sequence[float], truths: Sequence[bool], *, fitted_on: str
) -> VerdictCalibration:
    """Platt scaling of the margins on held-out reasonings of known truth, then the threshold
    on the calibrated score that maximizes balanced accuracy there.

    Needs both right and wrong reasonings; with one class only, the uncalibrated default is
    returned (with the counts, so the manifest says why). A small L2 penalty keeps the fit
    finite when the margins separate the classes perfectly."""
    m = np.asarray(margins, dtype=np.float64)
    t = np.asarray(truths, dtype=bool)
    counts = (int(t.sum()), int((~t).sum()))
    if counts[0] == 0 or counts[1] == 0:
        return VerdictCalibration(fitted_on=fitted_on, examples=counts)
    slope, intercept = _logistic_fit(m, t.astype(np.float64))
    calibrated = VerdictCalibration(slope=slope, intercept=intercept)
    scores = np.array([calibrated.score(x) for x in m])
    threshold, best = _best_threshold(scores, t)
    return VerdictCalibration(
        slope=slope,
        intercept=intercept,
        threshold=threshold,
        fitted_on=fitted_on,
        examples=counts,
        auroc=auroc(m.tolist(), t.tolist()),
        balanced_accuracy=best,
    )


def _logistic_fit(x: np.ndarray, y: np.ndarray, l2: float = 1e-2) -> tuple[float, float]:
    """P(y=1) = sigmoid(a x + b) by Newton's method with step halving, on standardized
    margins (so a start at the base rate is never far off), with an L2 penalty on the slope."""
    center, spread = float(x.mean()), float(x.std()) or 1.0
    z = (x - center) / spread
    rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    w = np.array([0.0, math.log(rate / (1 - rate))])  # slope, intercept on z

    def loss(w: np.ndarray) -> float:
        t = w[0] * z + w[1]
        return float((np.logaddexp(0, t) - y * t).sum() + l2 * w[0] ** 2 / 2)

    current = loss(w)
    for _ in range(100):
        p = 1 / (1 + np.exp(-(w[0] * z + w[1])))
        v = p * (1 - p) + 1e-12
        grad = np.array([((p - y) * z).sum() + l2 * w[0], (p - y).sum()])
        hessian = np.array([[(v * z * z).sum() + l2, (v * z).sum()], [(v * z).sum(), v.sum()]])
        step = np.linalg.solve(hessian, grad)
        scale = 1.0
        while scale > 1e-6 and loss(w - scale * step) > current:
            scale /= 2
        w = w - scale * step
        previous, current = current, loss(w)
        if previous - current < 1e-10:
            break
    slope = w[0] / spread
    return float(slope), float(w[1] - slope * center)


def _best_threshold(scores: np.ndarray, truths: np.ndarray) -> tuple[float, float]:
    """The threshold maximizing balanced accuracy: midway between neighbouring distinct scores
    (ties broken towards 0.5), so a new score equal to a held-out one is judged the same."""
    distinct = np.unique(scores)
    candidates = np.concatenate(
        [[distinct[0] - 1e-9], (distinct[:-1] + distinct[1:]) / 2, [distinct[-1] + 1e-9]]
    )
    best_threshold, best_value = 0.5, -1.0
    for threshold in np.clip(candidates, 0.0, 1.0):
        value = balanced_accuracy((scores >= threshold).tolist(), truths.tolist()) or 0.0
        if value > best_value + 1e-12 or (
            abs(value - best_value) <= 1e-12 and abs(threshold - 0.5) < abs(best_threshold - 0.5)
        ):
            best_threshold, best_value = float(threshold), value
    return best_threshold, best_value

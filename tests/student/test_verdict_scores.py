"""Scored verdicts: reading log-probabilities, calibrating them, and the metrics reported."""

from __future__ import annotations

import math

import numpy as np
import pytest
from mindmirror.student.bundle import Manifest
from mindmirror.student.formats import Verdict
from mindmirror.student.verdict_scores import (
    UNCALIBRATED,
    VerdictCalibration,
    VerdictTokenError,
    auroc,
    balanced_accuracy,
    expected_calibration_error,
    fit_calibration,
    score_verdict,
    verdict_token_ids,
)


def test_an_uncalibrated_score_is_the_share_of_correct_against_wrong() -> None:
    scored = score_verdict([math.log(0.6), math.log(0.2), math.log(0.2)])
    assert scored.score == pytest.approx(0.75)
    assert scored.margin == pytest.approx(math.log(3))
    assert scored.verdict is Verdict.CORRECT
    assert scored.probabilities == pytest.approx({"correct": 0.6, "wrong": 0.2, "uncertain": 0.2})
    # Log-probabilities of first tokens need not sum to one over the three words: the
    # probabilities are renormalized among them, the score ignores "uncertain".
    low = score_verdict([math.log(0.01), math.log(0.03), math.log(0.5)])
    assert low.probabilities["uncertain"] == pytest.approx(0.5 / 0.54)
    assert (low.score, low.verdict) == (pytest.approx(0.25), Verdict.WRONG)


@pytest.mark.parametrize("bad", [[0.0, 0.0], [0.0, float("nan"), 0.0], [float("-inf"), 0, 0]])
def test_malformed_scores_are_refused(bad: list[float]) -> None:
    with pytest.raises(ValueError, match="three finite"):
        score_verdict(bad)


def test_extreme_margins_stay_finite() -> None:
    calibration = VerdictCalibration(slope=50.0, intercept=0.0)
    assert calibration.score(1e6) == 1.0
    assert calibration.score(-1e6) == 0.0


def test_auroc_counts_ties_half_and_needs_both_classes() -> None:
    assert auroc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75
    assert auroc([0.5, 0.5], [True, False]) == 0.5
    assert auroc([0.2, 0.3], [True, True]) is None
    # Matches the pairwise definition on random data.
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, 60).astype(float)
    truths = rng.random(60) < 0.5
    pairs = [
        1.0 if p > n else 0.5 if p == n else 0.0 for p in scores[truths] for n in scores[~truths]
    ]
    assert auroc(scores, truths) == pytest.approx(sum(pairs) / len(pairs))


def test_balanced_accuracy_and_calibration_error() -> None:
    truths = [True, True, True, False]
    assert balanced_accuracy([True, True, True, True], truths) == 0.5
    assert balanced_accuracy([True, True, False, False], truths) == pytest.approx((2 / 3 + 1) / 2)
    assert balanced_accuracy([True], [True]) is None
    assert expected_calibration_error([0.9, 0.9, 0.1, 0.1], [True, True, False, False]) == (
        pytest.approx(0.1)
    )
    assert expected_calibration_error([], []) is None


def test_fitting_calibrates_and_picks_the_balanced_threshold() -> None:
    # Right reasonings lean "correct" only a little more than wrong ones do: argmax would call
    # nearly all of them correct; the fitted threshold separates them.
    rng = np.random.default_rng(0)
    truths = rng.random(2000) < 0.75
    margins = np.where(truths, rng.normal(4.0, 1.0, 2000), rng.normal(2.5, 1.0, 2000))
    calibration = fit_calibration(margins, truths, fitted_on="gold labels")
    assert calibration.examples == (int(truths.sum()), int((~truths).sum()))
    assert calibration.auroc == pytest.approx(auroc(margins, truths))
    scores = [calibration.score(m) for m in margins]
    assert expected_calibration_error(scores, truths) < 0.05
    balanced = balanced_accuracy([s >= calibration.threshold for s in scores], truths)
    assert balanced == pytest.approx(calibration.balanced_accuracy)
    assert balanced > 0.72
    assert balanced_accuracy([m > 0 for m in margins], truths) == pytest.approx(0.5, abs=0.02)


def test_one_class_gives_the_uncalibrated_default_with_its_counts() -> None:
    calibration = fit_calibration([1.0, 2.0], [True, True], fitted_on="gold labels")
    assert (calibration.slope, calibration.intercept, calibration.threshold) == (1.0, 0.0, 0.5)
    assert calibration.examples == (2, 0)
    assert calibration.auroc is None


def test_separable_data_fits_finitely() -> None:
    calibration = fit_calibration([-3.0, -2.0, 2.0, 3.0], [False, False, True, True], fitted_on="x")
    assert math.isfinite(calibration.slope)
    assert calibration.slope > 0
    assert calibration.balanced_accuracy == 1.0


def test_verdict_tokens_must_differ() -> None:
    vocabulary = {"correct": [5, 1], "wrong": [6, 9, 1], "uncertain": [7, 8, 1]}
    assert verdict_token_ids(lambda text: vocabulary[text]) == (5, 6, 7)
    with pytest.raises(VerdictTokenError, match="share a first token"):
        verdict_token_ids(lambda text: {"wrong": [5, 1]}.get(text, [5, 2]))
    with pytest.raises(VerdictTokenError, match="no token"):
        verdict_token_ids(lambda text: [])


def test_the_manifest_carries_the_calibration_and_old_manifests_read() -> None:
    calibration = VerdictCalibration(slope=2.0, intercept=-0.5, threshold=0.61, fitted_on="x")
    manifest = Manifest(task="arith", self_evaluation=True, verdict_calibration=calibration)
    again = Manifest.model_validate_json(manifest.model_dump_json())
    assert again.verdict_calibration == calibration
    assert Manifest.model_validate({"task": "arith"}).verdict_calibration is None
    assert UNCALIBRATED.threshold == 0.5

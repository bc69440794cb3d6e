"""Request and response bodies. Every field has explicit limits.

Limits that depend on the deployment (how many inputs per request, the explain token cap, the
number of samples, the input length in tokens) are settings; the inference layer and the model
check them (:mod:`mindmirror.service.rejections`) and they are reported as 422 naming the
field, like the static limits below.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mindmirror.student.formats import Verdict
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

__all__ = [
    "MAX_TEXT_CHARS",
    "ErrorBody",
    "EvaluateRequest",
    "EvaluateResponse",
    "ExplainRequest",
    "ExplainResponse",
    "PredictRequest",
    "PredictResponse",
    "Prediction",
    "RationaleCheckBody",
    "Sample",
]

#: A hard ceiling on characters per text, far above any token limit a T5 student has; the
#: token limit (MINDMIRROR_MAX_INPUT_TOKENS) is the one that normally applies.
MAX_TEXT_CHARS = 32_768

Text = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT_CHARS)
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictRequest(_Strict):
    """One question (``input``) or several (``inputs``), never both."""

    input: Text | None = Field(None, description="One question.")
    inputs: list[Text] | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="Several questions, answered in order (at most MINDMIRROR_MAX_PREDICT_INPUTS).",
    )

    @model_validator(mode="after")
    def _one_of(self) -> PredictRequest:
        if (self.input is None) == (self.inputs is None):
            raise ValueError("give exactly one of `input` (a string) or `inputs` (a list)")
        return self

    def texts(self) -> tuple[list[str], list[str]]:
        """The questions and the field name of each (for error messages)."""
        if self.inputs is not None:
            return list(self.inputs), [f"inputs[{i}]" for i in range(len(self.inputs))]
        assert self.input is not None
        return [self.input], ["input"]


class Prediction(BaseModel):
    label: str = Field(description="The label the student generated.")
    answer: Any = Field(
        description="The task's answer for that label (SVAMP: the equation's value); null when "
        "the label cannot be read."
    )
    valid: bool = Field(description="Whether the label parses as an answer of the task.")


class PredictResponse(BaseModel):
    predictions: list[Prediction]
    request_id: str


class ExplainRequest(_Strict):
    input: Text = Field(description="The question.")
    max_new_tokens: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="Rationale length cap; default and maximum: MINDMIRROR_MAX_NEW_TOKENS_EXPLAIN.",
    )
    num_samples: int = Field(
        1,
        ge=1,
        le=64,
        description="1 = greedy label and rationale. >1 = self-consistency judged by the "
        "student's self-evaluation (see docs/service.md); at most MINDMIRROR_MAX_SAMPLES.",
    )
    temperature: float = Field(
        0.7, gt=0, le=2.0, description="Sampling temperature (samples 1..K-1)."
    )
    top_k: int = Field(
        50, ge=0, le=1000, description="Sample among the k likeliest tokens; 0 = all."
    )
    aggregate: Literal["vote", "best"] = Field(
        "vote", description="`vote`: verdict-weighted majority; `best`: best-judged sample."
    )
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="Makes sampling repeatable.")
    return_samples: bool = Field(False, description="Include every sample in the response.")


class RationaleCheckBody(BaseModel):
    """How the task checked that the rationale supports the label (docs/service.md)."""

    steps: int = Field(description='Computation steps ("a op b = c") the rationale states.')
    steps_right: int = Field(description="Of those, the ones whose result is right.")
    stated: str | None = Field(
        description="What the rationale itself concludes (its last step's result, its choice); "
        "null when it states nothing the task reads."
    )
    reason: str = Field(
        description="Why the rationale does not support the label, or why nothing was checked "
        '("task has no check"); empty when it does.'
    )


_CONSISTENT = (
    "Whether the rationale supports the label by the task's check: true, false, or null when "
    "no check applies (the task has none, or the rationale gives it nothing to check)."
)


class Sample(BaseModel):
    label: str
    answer: Any
    valid: bool
    rationale: str
    verdict: Verdict | None = Field(
        description="The student's calibrated verdict on this sample's reasoning."
    )
    score: float | None = Field(
        None, description="The student's calibrated probability that this sample is right."
    )
    consistent: bool | None = Field(description=_CONSISTENT)
    check: RationaleCheckBody


class ExplainResponse(BaseModel):
    label: str
    answer: Any
    valid: bool
    rationale: str
    consistent: bool | None = Field(description=_CONSISTENT)
    check: RationaleCheckBody
    num_samples: int
    confidence: float | None = Field(
        None,
        description="Only with num_samples > 1: the verdict-weighted share of samples that "
        "support the answer, in [0, 1].",
    )
    support: int | None = Field(None, description="Samples that gave the returned answer.")
    samples: list[Sample] | None = None
    request_id: str


class EvaluateRequest(_Strict):
    question: Text = Field(description="The question that was asked.")
    reasoning: Text = Field(description="The candidate chain of thought to judge.")
    answer: Text | None = Field(
        None,
        description="The candidate's answer; appended as the task's answer sentence "
        '("The answer is (...)."). Leave out when the reasoning already ends with it.',
    )
    include_rationale: bool = Field(True, description="Also generate the evaluation rationale.")
    max_new_tokens: int | None = Field(
        None, ge=1, le=4096, description="Rationale length cap (as for /v1/explain)."
    )


class VerdictProbabilities(BaseModel):
    correct: float
    wrong: float
    uncertain: float


class EvaluateResponse(BaseModel):
    verdict: Verdict = Field(
        description="The calibrated verdict: `correct` when `score` reaches `threshold`, else "
        "`wrong`."
    )
    score: float = Field(
        description="The student's calibrated probability that the reasoning is right, from "
        "its verdict tokens' scores (Platt scaling fitted at distill time)."
    )
    threshold: float = Field(
        description="The decision threshold on `score`, chosen on held-out data at distill "
        "time (0.5 for an uncalibrated bundle)."
    )
    probabilities: VerdictProbabilities = Field(
        description="The student's first-token probabilities of the three verdict words, "
        "renormalized over them (uncalibrated)."
    )
    generated_verdict: Verdict | None = Field(
        description="The verdict greedy decoding writes (argmax); null if unreadable."
    )
    verdict_text: str = Field(description="What the student generated for the verdict.")
    rationale: str | None
    request_id: str


class ErrorDetail(BaseModel):
    type: str
    message: str
    request_id: str | None
    fields: list[dict[str, str]] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail

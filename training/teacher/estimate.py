"""The dry run (``mindmirror teach run --dry-run``): what a run would still cost, calling nothing.

It walks the same plan as the runner (the store's keys say what is already done) but only
counts: samples, requests with and without ``n``, and upper bounds on tokens and cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mindmirror.student.tasks import Example
from mindmirror.training.teacher.limits import Prices, TokenEstimator
from mindmirror.training.teacher.prompts import Planner
from mindmirror.training.teacher.store import Store

__all__ = ["PlanEstimate", "estimate_plan"]


@dataclass
class PlanEstimate:
    examples: int
    cot_slots: int
    cot_stored: int
    eval_slots_max: int
    eval_stored: int
    requests_n1: int
    requests_n: int
    prompt_tokens_max: int
    completion_tokens_max: int
    completion_tokens_expected: int | None
    cost_max: float
    cost_expected: float | None
    ratio_calibrated: bool

    def summary(self, prices: Prices, batch: bool) -> str:
        lines = [
            f"dry run over {self.examples} examples (nothing is sent):",
            f"  chain-of-thought samples: {self.cot_slots} ({self.cot_stored} stored, "
            f"{self.cot_slots - self.cot_stored} to make)",
            f"  self-evaluation samples:  at most {self.eval_slots_max} "
            f"({self.eval_stored} stored; CoTs without a parseable answer get none)",
            f"  requests: at most {self.requests_n1} with one sample each, or {self.requests_n} "
            "if the endpoint honours n",
            f"  prompt tokens ≤ {self.prompt_tokens_max} "
            + (
                "(calibrated from stored calls)"
                if self.ratio_calibrated
                else "(estimated at 0.5 tokens/character, an upper bound)"
            ),
            f"  completion tokens ≤ {self.completion_tokens_max} (max tokens × samples)"
            + (
                f", ≈ {self.completion_tokens_expected} at the mean length seen so far"
                if self.completion_tokens_expected is not None
                else ""
            ),
        ]
        if prices.free:
            lines.append("  cost: no prices set (--input-price/--output-price), counted as $0")
        else:
            lines.append(
                f"  cost ≤ ${self.cost_max:.4f} at ${prices.input_per_million:g} / "
                f"${prices.output_per_million:g} per 1M input / output tokens"
                + (f" (batch price ×{prices.batch_discount:g})" if batch else "")
                + (
                    f"; ≈ ${self.cost_expected:.4f} expected"
                    if self.cost_expected is not None
                    else ""
                )
            )
        return "\n".join(lines)


def estimate_plan(
    store: Store,
    planner: Planner,
    examples: Sequence[Example],
    prices: Prices,
    batch: bool = False,
) -> PlanEstimate:
    """Count the calls a run would make and bound its tokens and cost, calling nothing.

    Upper bounds assume one request per sample (each pays for its prompt), every missing CoT
    is parseable (so it gets its M self-evaluations) and every sample runs to max tokens;
    a CoT not made yet is assumed ``max_tokens`` long inside its self-evaluation prompt.
    """
    ratio, mean_completion = store.usage_stats(planner.model)
    estimator = TokenEstimator(ratio)
    cot_slots = cot_stored = eval_max = eval_stored = 0
    requests_n1 = requests_n = prompt_max = 0
    missing_samples = 0
    m = planner.n_evals
    for example in examples:
        slots = planner.cot_slots(example)
        done = store.get_results([slot.key for slot in slots])
        cot_slots += len(slots)
        cot_stored += len(done)
        missing = len(slots) - len(done)
        cot_prompt = estimator.prompt_tokens(planner.cot_messages(example))
        if missing:
            requests_n1 += missing
            requests_n += 1
            prompt_max += missing * cot_prompt
            missing_samples += missing
        if m == 0:
            continue
        empty_eval_prompt = estimator.prompt_tokens(planner.eval_messages(example, ""))
        for slot in slots:
            if slot.key in done:
                text = done[slot.key]["text"]
                if not planner.wants_evaluation(example, text):
                    continue
                eval_slot_list = planner.eval_slots(example, slot.index, text)
                stored = len(store.get_results([s.key for s in eval_slot_list]))
                eval_max += m
                eval_stored += stored
                if stored < m:
                    prompt = estimator.prompt_tokens(planner.eval_messages(example, text))
                    requests_n1 += m - stored
                    requests_n += 1
                    prompt_max += (m - stored) * prompt
                    missing_samples += m - stored
            else:
                eval_max += m
                requests_n1 += m
                requests_n += 1
                prompt_max += m * (empty_eval_prompt + planner.cot_params.max_tokens)
                missing_samples += m
    cot_missing = cot_slots - cot_stored
    eval_missing = eval_max - eval_stored
    completion_max = (
        cot_missing * planner.cot_params.max_tokens + eval_missing * planner.eval_params.max_tokens
    )
    expected = None if mean_completion is None else round(mean_completion * missing_samples)
    return PlanEstimate(
        examples=len(examples),
        cot_slots=cot_slots,
        cot_stored=cot_stored,
        eval_slots_max=eval_max,
        eval_stored=eval_stored,
        requests_n1=requests_n1,
        requests_n=requests_n,
        prompt_tokens_max=prompt_max,
        completion_tokens_max=completion_max,
        completion_tokens_expected=expected,
        cost_max=prices.cost(prompt_max, completion_max, batch),
        cost_expected=None if expected is None else prices.cost(prompt_max, expected, batch),
        ratio_calibrated=estimator.calibrated,
    )

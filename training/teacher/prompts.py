"""Few-shot prompts, sampling parameters and the store keys derived from them.

Every teacher call is planned before it is made. A *slot* is one sample the distillation set
needs: CoT number ``k`` of an example, or self-evaluation number ``j`` of one CoT. Its key is
the sha256 of (teacher model, messages, sampling parameters, sample index), so the same slot
always has the same key: a rerun finds what is already stored, and a changed prompt, model or
temperature makes new slots instead of silently reusing answers to a different question.

The prompts follow Mind's Mirror: a few-shot chain-of-thought prompt built from the task's
exemplars, and a few-shot self-evaluation prompt whose answers end with
"Evaluation result: the given answer is correct|wrong|uncertain.". They are chat messages, so
any chat endpoint or a local chat model can answer them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from mindmirror.student.errors import MindmirrorError
from mindmirror.student.tasks import Example, Task

__all__ = [
    "SELF_EVAL_INSTRUCTION",
    "Kind",
    "Message",
    "Planner",
    "SamplingParams",
    "Slot",
    "cot_messages",
    "self_eval_messages",
    "slot_key",
]

Message = dict[str, str]
Kind = Literal["cot", "self_eval"]

SELF_EVAL_INSTRUCTION = (
    "You check answers to questions. Read the question and the given answer, explain whether "
    "the reasoning and the final answer are right, then end with exactly one of these lines:\n"
    "Evaluation result: the given answer is correct.\n"
    "Evaluation result: the given answer is wrong.\n"
    "Evaluation result: the given answer is uncertain."
)


@dataclass(frozen=True)
class SamplingParams:
    """What is sent with each request besides the messages; part of every store key."""

    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 256
    #: base seed; request seed = seed + first sample index, so n=1 requests differ per slot
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.temperature <= 2:
            raise MindmirrorError(f"temperature must be in [0, 2], got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise MindmirrorError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise MindmirrorError(f"max tokens must be at least 1, got {self.max_tokens}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def request_seed(self, first_index: int) -> int | None:
        return None if self.seed is None else self.seed + first_index


@dataclass(frozen=True)
class Slot:
    """One sample the distillation set needs."""

    key: str
    index: int


def _question_turn(question: str) -> str:
    return f"Q: {question.strip()}"


def _evaluation_turn(question: str, reasoning: str) -> str:
    return (
        f"Question: {question.strip()}\n"
        f"Given answer: {reasoning.strip()}\n"
        "Evaluate the given answer."
    )


def cot_messages(task: Task, example: Example, shots: int | None = None) -> list[Message]:
    """The few-shot chain-of-thought prompt for one example (``shots`` caps the exemplars)."""
    exemplars = task.cot_exemplars if shots is None else task.cot_exemplars[:shots]
    messages: list[Message] = [{"role": "system", "content": task.teacher_instruction}]
    for exemplar in exemplars:
        messages.append({"role": "user", "content": _question_turn(exemplar.question)})
        messages.append({"role": "assistant", "content": exemplar.answer.strip()})
    messages.append({"role": "user", "content": _question_turn(example.question)})
    return messages


def self_eval_messages(
    task: Task, example: Example, reasoning: str, shots: int | None = None
) -> list[Message]:
    """The few-shot self-evaluation prompt for one chain of thought of one example."""
    exemplars = task.self_eval_exemplars if shots is None else task.self_eval_exemplars[:shots]
    messages: list[Message] = [{"role": "system", "content": SELF_EVAL_INSTRUCTION}]
    for exemplar in exemplars:
        messages.append(
            {"role": "user", "content": _evaluation_turn(exemplar.question, exemplar.reasoning)}
        )
        messages.append({"role": "assistant", "content": exemplar.evaluation.strip()})
    messages.append({"role": "user", "content": _evaluation_turn(example.question, reasoning)})
    return messages


def _digest(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def slot_key(model: str, messages: Sequence[Message], params: SamplingParams, index: int) -> str:
    """The store key of sample ``index`` of (model, messages, params)."""
    return _digest(
        {"model": model, "messages": list(messages), "params": params.as_dict(), "index": index}
    )


class Planner:
    """Derives every slot of a run: the same inputs always give the same keys.

    The runner uses it to find what is missing, export uses it to read the set back in order,
    and import uses it to file existing teacher outputs under the keys a run would use.
    """

    def __init__(
        self,
        task: Task,
        model: str,
        n_cots: int,
        n_evals: int,
        cot_params: SamplingParams,
        eval_params: SamplingParams,
        shots: int | None = None,
        evaluate_unparsed: bool = False,
    ) -> None:
        if n_cots < 1:
            raise MindmirrorError(f"--cots must be at least 1, got {n_cots}")
        if n_evals < 0:
            raise MindmirrorError(f"--evals must be 0 or more, got {n_evals}")
        self.task = task
        self.model = model
        self.n_cots = n_cots
        self.n_evals = n_evals
        self.cot_params = cot_params
        self.eval_params = eval_params
        self.shots = shots
        self.evaluate_unparsed = evaluate_unparsed

    def cot_messages(self, example: Example) -> list[Message]:
        return cot_messages(self.task, example, self.shots)

    def judged_reasoning(self, cot_text: str) -> str:
        """The chain of thought as a self-evaluation prompt shows it: as the student will see
        it, cut where the completion ran on into a next few-shot item."""
        return self.task.trim_completion(cot_text)

    def eval_messages(self, example: Example, cot_text: str) -> list[Message]:
        return self_eval_messages(self.task, example, self.judged_reasoning(cot_text), self.shots)

    def cot_slots(self, example: Example) -> list[Slot]:
        messages = self.cot_messages(example)
        return [
            Slot(slot_key(self.model, messages, self.cot_params, k), k) for k in range(self.n_cots)
        ]

    def wants_evaluation(self, example: Example, cot_text: str) -> bool:
        """Self-evaluate this CoT? Not when it has no parseable answer, unless asked to: the
        student never trains on such a CoT, so evaluating it would only cost money."""
        if self.n_evals == 0:
            return False
        if self.evaluate_unparsed:
            return True
        return self.task.split_cot(cot_text, example)[1] is not None

    def eval_slots(self, example: Example, cot_index: int, cot_text: str) -> list[Slot]:
        """Self-evaluation slots of CoT number ``cot_index``: sample indices
        ``cot_index * M .. cot_index * M + M - 1``, so two CoTs that happen to have the same
        text still get their own M evaluations, as in the paper."""
        messages = self.eval_messages(example, cot_text)
        first = cot_index * self.n_evals
        return [
            Slot(slot_key(self.model, messages, self.eval_params, first + j), first + j)
            for j in range(self.n_evals)
        ]

    def config(self) -> dict[str, Any]:
        """What identifies the run (recorded in the store; its hash is the run id)."""
        return {
            "task": self.task.name,
            "teacher": self.model,
            "n_cots": self.n_cots,
            "n_evals": self.n_evals,
            "cot_params": self.cot_params.as_dict(),
            "eval_params": self.eval_params.as_dict(),
            "shots": self.shots,
            "evaluate_unparsed": self.evaluate_unparsed,
        }

"""``mindmirror experiment``: the paper's Table 1 comparison on your data.

For every seed, the same code trains

- ``standard``: standard distillation, labels only (one teacher label per question, λ = 0);
- ``cot-1``: CoT distillation with one chain of thought per question;
- ``cot-N``: CoT distillation with all N chains of thought;
- ``ours``: N chains of thought after the self-evaluation stage (Mind's Mirror);

and, beyond the paper, N chains of thought on data the teacher's own outputs cleaned
(:mod:`~mindmirror.training.student.cleaning`):

- ``cot-N-majority``: every CoT labelled with its question's majority answer;
- ``cot-N-weighted``: the same vote, each CoT weighed by its share of ``correct`` verdicts;
- ``cot-N-drop``: CoTs the teacher's self-evaluations judge wrong left out (own labels);
- ``cot-N-agree``: verdict-weighted majority labels, and only the CoTs that agree with them;

evaluates each on the test data and reports accuracy as mean ± standard deviation over seeds
(sample standard deviation, n-1; 0 for a single seed), plus the self-evaluation verdict
agreement for variants that have it when the test data carries teacher self-evaluations.

Every run's bundle is kept under ``<output>/<variant>/seed-<k>``; rerunning the command skips
finished runs (and resumes an interrupted one), and ``results.json`` is rewritten after each.
From-scratch students share one tokenizer trained on all the training text, so the variants
differ only in what they are trained on.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mindmirror.student.bundle import BundleError, load_manifest
from mindmirror.student.distillation import load_distillation_data
from mindmirror.student.errors import MindmirrorError
from mindmirror.student.files import atomic_write_text
from mindmirror.student.tasks import get_task
from mindmirror.training.student.distill import DistillConfig, distill

__all__ = [
    "DEFAULT_SEEDS",
    "DEFAULT_VARIANTS",
    "VARIANTS",
    "ExperimentRow",
    "ExperimentTable",
    "Variant",
    "run_experiment",
]

logger = logging.getLogger(__name__)

DEFAULT_SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    overrides: Callable[[DistillConfig], dict[str, Any]]


def _standard(config: DistillConfig) -> dict[str, Any]:
    no_rationale = {"alpha": 1.0} if config.alpha is not None else {"rationale_weight": 0.0}
    return {"num_cots": 1, "self_evaluation": False, **no_rationale}


VARIANTS: dict[str, Variant] = {
    variant.name: variant
    for variant in (
        Variant("standard", "standard distillation (labels only)", _standard),
        Variant(
            "cot-1", "CoT distillation, 1 CoT", lambda c: {"num_cots": 1, "self_evaluation": False}
        ),
        Variant(
            "cot-N",
            "CoT distillation, N CoTs",
            lambda c: {"num_cots": c.num_cots, "self_evaluation": False},
        ),
        Variant(
            "ours",
            "N CoTs + self-evaluation (Mind's Mirror)",
            lambda c: {"num_cots": c.num_cots, "self_evaluation": True},
        ),
        # The cleaning rows set the rules they are about and nothing else, so each differs from
        # cot-N only by them; the base's other settings (label source included, where the row
        # does not set it) apply as they do to every row.
        Variant(
            "cot-N-majority",
            "N CoTs, majority labels",
            lambda c: {
                "num_cots": c.num_cots,
                "self_evaluation": False,
                "label_source": "majority",
            },
        ),
        Variant(
            "cot-N-weighted",
            "N CoTs, verdict-weighted majority labels",
            lambda c: {
                "num_cots": c.num_cots,
                "self_evaluation": False,
                "label_source": "weighted-majority",
            },
        ),
        Variant(
            "cot-N-drop",
            "N CoTs + drop judged-wrong",
            lambda c: {"num_cots": c.num_cots, "self_evaluation": False, "drop_judged_wrong": True},
        ),
        Variant(
            "cot-N-agree",
            "N CoTs, weighted majority + agreement filter",
            lambda c: {
                "num_cots": c.num_cots,
                "self_evaluation": False,
                "label_source": "weighted-majority",
                "drop_disagreeing": True,
            },
        ),
    )
}
#: What runs when no variant is named: the paper's four rows and two cleaning rows, one per
#: kind of rule (a verdict filter; a vote with the filter that makes rationale and label agree).
#: The other rows run when named (``--variants``): each adds a full set of runs.
DEFAULT_VARIANTS = ("standard", "cot-1", "cot-N", "ours", "cot-N-drop", "cot-N-agree")


def _summary(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else 0.0


@dataclass
class ExperimentRow:
    variant: str
    description: str
    accuracy: dict[int, float] = field(default_factory=dict)  # seed -> test accuracy
    verdict_accuracy: dict[int, float] = field(default_factory=dict)

    @property
    def mean(self) -> float | None:
        return _summary(list(self.accuracy.values()))[0]

    @property
    def std(self) -> float | None:
        return _summary(list(self.accuracy.values()))[1]

    def to_dict(self) -> dict[str, Any]:
        verdict_mean, verdict_std = _summary(list(self.verdict_accuracy.values()))
        return {
            "variant": self.variant,
            "description": self.description,
            "accuracy": {str(seed): value for seed, value in sorted(self.accuracy.items())},
            "mean": self.mean,
            "std": self.std,
            "verdict_accuracy": {
                str(seed): value for seed, value in sorted(self.verdict_accuracy.items())
            },
            "verdict_mean": verdict_mean,
            "verdict_std": verdict_std,
        }


@dataclass
class ExperimentTable:
    task: str
    data: str
    test: str
    seeds: list[int]
    rows: list[ExperimentRow]
    num_cots: int | None = None

    def row(self, variant: str) -> ExperimentRow:
        for row in self.rows:
            if row.variant == variant:
                return row
        raise KeyError(variant)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "data": self.data,
            "test": self.test,
            "seeds": self.seeds,
            "num_cots": self.num_cots,
            "rows": [row.to_dict() for row in self.rows],
        }

    def render(self) -> Any:
        from rich.table import Table

        table = Table(
            title=f"{self.task}: test accuracy over seeds {', '.join(map(str, self.seeds))} "
            f"(N = {self.num_cots})",
            title_justify="left",
        )
        table.add_column("method")
        table.add_column("accuracy (mean ± std)", justify="right")
        table.add_column("per seed", justify="right")
        table.add_column("verdict agreement", justify="right")
        for row in self.rows:
            verdict_mean, verdict_std = _summary(list(row.verdict_accuracy.values()))
            table.add_row(
                row.description,
                "-" if row.mean is None else f"{100 * row.mean:.2f} ± {100 * (row.std or 0):.2f}",
                " ".join(f"{100 * v:.1f}" for _, v in sorted(row.accuracy.items())),
                "-"
                if verdict_mean is None
                else f"{100 * verdict_mean:.2f} ± {100 * (verdict_std or 0):.2f}",
            )
        return table


def _shared_tokenizer(base: DistillConfig, output: Path) -> Path:
    """One tokenizer for every from-scratch run, trained on all the training text."""
    from mindmirror.training.student.tokenizer import write_tokenizer

    path = output / "tokenizer"
    if not (path / "tokenizer.json").is_file():
        task = get_task(base.task)
        records = load_distillation_data(base.data, base.split, task)
        write_tokenizer(records, task, path, vocab_size=base.vocab_size)
    return path


def run_experiment(
    base: DistillConfig,
    test_data: str | Path,
    *,
    output: str | Path,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    variants: Sequence[str] = DEFAULT_VARIANTS,
    test_split: str = "test",
    eval_batch_size: int = 64,
) -> ExperimentTable:
    """Train and evaluate every variant for every seed; return (and save) the table.

    ``base`` carries the shared settings (data, task, student, steps, lengths...); its
    ``output``, ``seed``, ``num_cots``/``self_evaluation``, loss weights and, for the cleaning
    rows, label source and cleaning rules are set per run (:data:`VARIANTS`).
    """
    from mindmirror.training.student.evaluate import evaluate_bundle

    unknown = [name for name in variants if name not in VARIANTS]
    if unknown:
        raise MindmirrorError(
            f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}"
        )
    if not seeds:
        raise MindmirrorError("give at least one seed")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    task = get_task(base.task)
    records = load_distillation_data(base.data, base.split, task)
    max_cots = max(len(record.cots) for record in records)
    tokenizer = base.tokenizer
    if base.student.startswith("scratch:") and tokenizer is None:
        tokenizer = _shared_tokenizer(base, output)
    table = ExperimentTable(
        task=task.name,
        data=str(base.data),
        test=str(test_data),
        seeds=list(seeds),
        rows=[ExperimentRow(name, VARIANTS[name].description) for name in variants],
        num_cots=min(base.num_cots or max_cots, max_cots),
    )
    for row in table.rows:
        for seed in seeds:
            bundle = output / row.variant / f"seed-{seed}"
            try:
                load_manifest(bundle)
                logger.info("%s seed %d: bundle exists, not retraining", row.variant, seed)
            except BundleError:
                # Built, not copied, so that the config validators see the row's settings
                # (a row's rule that the base's other settings refuse fails here, clearly).
                config = DistillConfig(
                    **{
                        **dict(base),
                        **VARIANTS[row.variant].overrides(base),
                        "output": bundle,
                        "seed": seed,
                        "tokenizer": tokenizer,
                        "work_dir": None,
                        "force": bundle.exists(),
                    }
                )
                logger.info("%s seed %d: training", row.variant, seed)
                distill(config)
            report = evaluate_bundle(
                bundle,
                test_data,
                split=test_split,
                batch_size=eval_batch_size,
                progress=base.progress,
            )
            row.accuracy[seed] = report.task_result.accuracy
            if report.verdict_result is not None:
                row.verdict_accuracy[seed] = report.verdict_result.accuracy
            atomic_write_text(output / "results.json", json.dumps(table.to_dict(), indent=2) + "\n")
    return table

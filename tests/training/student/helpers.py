"""Shared settings for the small end-to-end runs in tests/training/student."""

from pathlib import Path

from mindmirror.training.student.distill import DistillConfig

STEPS = 16


def small_config(tmp: Path, data: Path, **overrides) -> DistillConfig:
    """A micro T5 from scratch, a few steps per stage: seconds on one CPU thread."""
    settings = {
        "data": data,
        "task": "arith",
        "output": tmp / "bundle",
        "student": "scratch:micro",
        "vocab_size": 400,
        "dropout": 0.0,
        "max_steps": STEPS,
        "batch_size": 8,
        "eval_batch_size": 64,
        "max_input_length": 160,
        "max_label_length": 10,
        "max_rationale_length": 40,
        "val_fraction": 0.15,
        "evaluations_per_stage": 2,
        "learning_rate": 3e-3,
        "progress": False,
        **overrides,
    }
    return DistillConfig(**settings)

"""What a run keeps in its work directory besides the stages: the run record and the tokenizer.

``run.json`` holds the settings that shape training and the data's fingerprint. It is written
when a run starts; a later run in the same directory resumes it only with the same record and
is refused otherwise, so two runs' checkpoints never mix. ``tokenizer/`` is the tokenizer a
scratch student trains on the training text, written once (by rank 0 under DDP) and read back
by every rank and every resume.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mindmirror.student.distillation import DistillationRecord
from mindmirror.student.errors import MindmirrorError
from mindmirror.student.files import atomic_write_text
from mindmirror.student.tasks import Task
from mindmirror.training.student.model import StudentSource

if TYPE_CHECKING:
    from mindmirror.training.student.distill import DistillConfig
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "RUN_RECORD",
    "TOKENIZER_DIR",
    "RunMismatchError",
    "check_run_record",
    "prepare_tokenizer",
]

logger = logging.getLogger(__name__)

RUN_RECORD = "run.json"
TOKENIZER_DIR = "tokenizer"


class RunMismatchError(MindmirrorError, ValueError):
    """The work directory holds a run made with other settings or other data."""


def check_run_record(work: Path, settings: dict[str, Any], data_fingerprint: str) -> None:
    """Start the run record in ``work``, or check that the one there is this run's."""
    expected = {"settings": settings, "data_fingerprint": data_fingerprint}
    path = work / RUN_RECORD
    if path.is_file():
        found = json.loads(path.read_text(encoding="utf-8"))
        if found != expected:
            differences = [
                f"{key}: {found.get('settings', {}).get(key)!r} then, {value!r} now"
                for key, value in expected["settings"].items()
                if found.get("settings", {}).get(key) != value
            ]
            if found.get("data_fingerprint") != data_fingerprint:
                differences.append("the training data changed")
            raise RunMismatchError(
                f"{work} holds a run with other settings ({'; '.join(differences) or 'unknown'}); "
                "rerun with the same options to resume it, or pass another --work-dir "
                "(or delete that folder) to start over"
            )
        return
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(expected, indent=2))


def prepare_tokenizer(
    config: DistillConfig,
    source: StudentSource,
    records: Sequence[DistillationRecord],
    task: Task,
    work: Path,
) -> PreTrainedTokenizerBase:
    """The student's tokenizer: the pretrained model's, the one ``--tokenizer`` names, or for a
    scratch student one trained on ``records`` and kept in the work directory."""
    from accelerate import PartialState
    from mindmirror.training.student.model import load_pretrained_tokenizer
    from transformers import AutoTokenizer

    if not source.scratch:
        return load_pretrained_tokenizer(source, config.student_revision)
    if config.tokenizer is not None:
        if not config.tokenizer.is_dir():
            raise MindmirrorError(f"tokenizer directory not found: {config.tokenizer}")
        return AutoTokenizer.from_pretrained(config.tokenizer)
    saved = work / TOKENIZER_DIR
    # Rank 0 trains and saves it; the other ranks then load the same one.
    with PartialState(cpu=config.cpu).main_process_first():
        if not (saved / "tokenizer.json").is_file():
            from mindmirror.training.student.tokenizer import write_tokenizer

            logger.info("training a %d-piece tokenizer on the training text", config.vocab_size)
            write_tokenizer(records, task, saved, vocab_size=config.vocab_size)
        return AutoTokenizer.from_pretrained(saved)

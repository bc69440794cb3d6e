"""The teacher stage: sample chains of thought and self-evaluations from an LLM.

``mindmirror teach run`` plans every teacher call from the task data (N CoTs per example, M
self-evaluations per CoT), makes only the calls its SQLite store does not already hold, and
``mindmirror teach export`` turns the store into the distillation JSONL that ``distill`` reads.

Modules: :mod:`.prompts` (few-shot messages, sampling parameters, store keys),
:mod:`.store` (the SQLite store), :mod:`.backends` (one class per kind of teacher),
:mod:`.limits` (rate limits, retries, cost budget), :mod:`.runner` (the async loop),
:mod:`.estimate` (the dry run's count), :mod:`.batch` (OpenAI Batch API mode), :mod:`.records`
(export and import), :mod:`.teach` (``teach(config)``: the run wired end to end, the library
entry point) and :mod:`.cli`; :mod:`.simulated` (with :mod:`.simulated_reasoning` and
:mod:`.simulated_grading`) is the offline demo's stand-in for an LLM.
"""

from pathlib import Path

#: the store a teacher run, export, import or status uses when none is named
DEFAULT_STORE = Path("teacher.sqlite")

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mindmirror.student.distillation import DistillationRecord, write_distillation_set
from mindmirror.student.tasks.arith import generate_splits
from mindmirror.training.teacher.simulated import SimulatedTeacherConfig, simulated_distillation_set


def arith_distillation_set(
    split: str, *, train: int = 60, test: int = 20, n_cots: int = 2, n_evals: int = 2
) -> list[DistillationRecord]:
    """The simulated teacher's distillation set for one split of one-step ``arith`` problems
    (a task a micro T5 picks up in a few steps), with a few unparseable chains of thought and
    verdicts, as a real teacher gives."""
    problems = generate_splits(0, train, 0, test, two_step_fraction=0.0)[split]
    config = SimulatedTeacherConfig(unparseable_rate=0.05)
    return simulated_distillation_set([p.example() for p in problems], n_cots, n_evals, config)


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """Micro models on a shared 2-core machine run several times faster on one thread (two
    threads per process oversubscribe the cores). Module-scoped, so a session fixture such as
    ``tiny_bundle`` is built before it takes effect."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="package")
def train_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated teacher's distillation set: 60 questions, N = 2 CoTs, M = 2 evaluations."""
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    write_distillation_set(path, arith_distillation_set("train"))
    return path


@pytest.fixture(scope="package")
def test_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Held-out questions of the same kind, with human labels and teacher self-evaluations."""
    path = tmp_path_factory.mktemp("data") / "test.jsonl"
    write_distillation_set(path, arith_distillation_set("test"))
    return path


@pytest.fixture(scope="package")
def trained(tmp_path_factory: pytest.TempPathFactory, train_data: Path):
    """The result of one full two-stage run (read-only: copy the bundle before changing it)."""
    from mindmirror.training.student.distill import distill

    from tests.training.student.helpers import small_config

    # Package-scoped fixtures are set up before the module-scoped thread setting.
    with torch_threads(1):
        return distill(small_config(tmp_path_factory.mktemp("run"), train_data))

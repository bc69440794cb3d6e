from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from student.distillation import write_distillation_set
from training.student.synthetic import synthetic_distillation_set


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
    write_distillation_set(
        path, synthetic_distillation_set(60, num_cots=2, num_self_evaluations=2, seed=0)
    )
    return path


@pytest.fixture(scope="package")
def test_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Held-out questions of the same kind, with human labels and teacher self-evaluations."""
    path = tmp_path_factory.mktemp("data") / "test.jsonl"
    records = synthetic_distillation_set(
        20, num_cots=2, num_self_evaluations=2, seed=99, id_prefix="test"
    )
    write_distillation_set(path, records)
    return path


@pytest.fixture(scope="package")
def trained(tmp_path_factory: pytest.TempPathFactory, train_data: Path):
    """The result of one full two-stage run (read-only: copy the bundle before changing it)."""
    from tests.training.helpers import small_config
    from training.student.distill import distill

    # Package-scoped fixtures are set up before the module-scoped thread setting.
    with torch_threads(1):
        return distill(small_config(tmp_path_factory.mktemp("run"), train_data))

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="package")
def _one_torch_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine run several times faster on one thread (two
    threads per process oversubscribe the cores); restored after each test."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

from __future__ import annotations

from dataclasses import replace

import pytest

from mindmirror.demo.pipeline import run_demo
from mindmirror.demo.served import service_available
from tests.mindmirror.demo.tiny import TINY


@pytest.fixture(scope="package")
def first_run(tmp_path_factory: pytest.TempPathFactory):
    """One tiny demo run for the whole package. Read-only: copy its work directory
    (``shutil.copytree``) before changing anything in it."""
    work = tmp_path_factory.mktemp("demo") / "run"
    settings = replace(TINY, work_dir=work, serve=service_available())
    return settings, run_demo(settings)

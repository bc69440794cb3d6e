"""The served demo: copy-pasteable curl lines, and a signal that stops the demo and its
service together."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mindmirror.demo.served import curl_line


def test_curl_line_is_copy_pasteable() -> None:
    line = curl_line("http://127.0.0.1:8000", "/v1/predict", {"input": "Tom's 3 apples.\nHow?"})
    # The body is one shell word, quotes and newline escapes included.
    assert line.startswith("curl -s http://127.0.0.1:8000/v1/predict -H ")
    import shlex

    words = shlex.split(line)
    assert json.loads(words[-1]) == {"input": "Tom's 3 apples.\nHow?"}


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_demo_and_the_service_it_started(
    first_run, tmp_path, signal_name: str
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    import httpx

    settings, _ = first_run
    if not settings.serve:
        pytest.skip("the service package is not in this checkout")
    work = tmp_path / "copy"
    shutil.copytree(settings.work_dir, work)
    root = Path(__file__).resolve().parents[3]
    script = textwrap.dedent(
        f"""
        from dataclasses import replace
        from pathlib import Path

        from mindmirror.demo.pipeline import run_demo
        from tests.mindmirror.demo.tiny import TINY

        settings = replace(TINY, work_dir=Path({str(work)!r}), keep_serving=True, port=18437)
        run_demo(settings, on_ready=lambda result: print("READY", result.url, flush=True))
        print("RETURNED", flush=True)
        """
    )
    demo = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        # A shell's background jobs ignore SIGINT; a terminal's Ctrl-C does not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        line = demo.stdout.readline()
        assert line.startswith("READY "), line
        url = line.split()[1]
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        os.kill(demo.pid, getattr(signal, signal_name))
        assert demo.wait(timeout=60) == 0
        assert demo.stdout.read().strip() == "RETURNED"  # run_demo finished its cleanup
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/healthz", timeout=5)  # the service is gone too
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()

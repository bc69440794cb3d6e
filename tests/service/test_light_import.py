"""The serving image has no torch, transformers, optimum, training or export: prove the service
imports and answers HTTP requests without them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BLOCKER = """
import importlib.abc, sys
BLOCKED = ("torch", "transformers", "optimum", "sentencepiece", "mindmirror.training",
           "mindmirror.export")
def blocked(name):
    return any(name == b or name.startswith(b + ".") for b in BLOCKED)
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if blocked(name):
            raise ImportError(f"{name} is not installed in the serving image")
        return None
sys.meta_path.insert(0, Block())
"""

SERVE = """
import json, socket, threading, time, urllib.request
from pathlib import Path
import mindmirror.service, mindmirror.service.app, mindmirror.service.server
import mindmirror.service.cli, mindmirror.service.__main__
from mindmirror.service.runtime import StudentModel
from mindmirror.service.server import build_server
from mindmirror.service.settings import Settings
with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
settings = Settings(bundle=Path(sys.argv[1]), port=port)
model = StudentModel.open(settings)
server = build_server(settings, model)
thread = threading.Thread(target=server.run, daemon=True); thread.start()
deadline = time.monotonic() + 60
while not server.state.ready:
    assert time.monotonic() < deadline, server.state.phase
    time.sleep(0.02)
request = urllib.request.Request(
    f"http://127.0.0.1:{port}/v1/predict", data=json.dumps({"input": "Tom has 3 coins."}).encode(),
    headers={"content-type": "application/json"})
body = json.loads(urllib.request.urlopen(request, timeout=30).read())
server.should_exit = True; thread.join(30)
heavy = sorted(m for m in sys.modules if blocked(m))
report = {"backend": model.backend.name, "predictions": body["predictions"], "heavy": heavy}
print(json.dumps(report))
"""


def run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )


def test_service_imports_nothing_heavy() -> None:
    code = (
        "import mindmirror.service.app, mindmirror.service.server, mindmirror.service.cli\n"
        "import mindmirror.service.batching, mindmirror.service.backends\n"
        "import mindmirror.service.backends.onnx, mindmirror.service.backends.pytorch\n"
        "import mindmirror.service.backends.ctranslate2\n"
        "import mindmirror.engine, mindmirror.engine.ids, mindmirror.engine.decoding\n"
        "import mindmirror.engine.onnx, mindmirror.engine.vocabulary\n"
        "heavy = [m for m in sys.modules if blocked(m)]\n"
        "print(heavy); sys.exit(1 if heavy else 0)\n"
    )
    result = run(code)
    assert result.returncode == 0, result.stdout + result.stderr


def test_service_serves_without_torch(onnx_bundle: Path) -> None:
    import json

    result = run(SERVE, str(onnx_bundle))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == "onnx"
    assert report["heavy"] == []
    assert report["predictions"][0]["label"]


def test_without_torch_or_export_the_error_says_what_to_do(tiny_bundle: Path) -> None:
    code = (
        "from pathlib import Path\n"
        "from mindmirror.service.runtime import StudentModel\n"
        "from mindmirror.service.settings import Settings\n"
        "from mindmirror.student.errors import MindmirrorError\n"
        "try:\n"
        "    StudentModel.open(Settings(bundle=Path(sys.argv[1])))\n"
        "except MindmirrorError as error:\n"
        "    print(error); sys.exit(0)\n"
        "sys.exit(1)\n"
    )
    result = run(code, str(tiny_bundle))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no backend can serve" in result.stdout
    assert "mindmirror export" in result.stdout
    assert "torch/transformers are not installed" in result.stdout

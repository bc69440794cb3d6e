"""The baseline of ``bench/serve_load.py``: FastAPI + ``model.generate``, one request at a
time (a lock around ``generate``; explain = label + rationale, two calls), what users write
themselves. Started by the load benchmark as a subprocess:

    python bench/naive_server.py BUNDLE PORT THREADS
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# As in the service (service/backends/pytorch.py): idle OpenMP threads sleep, so the ratios
# measure batching and runtimes, not OpenMP's spin policy.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def run(bundle: Path, port: int, threads: int) -> None:
    """FastAPI + model.generate, one request at a time: the baseline users write themselves."""
    import torch
    import uvicorn
    from fastapi import FastAPI
    from mindmirror.training.student.bundle_io import load_student

    if threads:
        torch.set_num_threads(threads)
    model, tokenizer, manifest = load_student(bundle)
    lock = threading.Lock()
    app = FastAPI()
    predict_tokens = manifest.generation.max_new_tokens_predict
    explain_tokens = manifest.generation.max_new_tokens_explain

    def generate(text: str, max_new_tokens: int) -> str:
        with lock, torch.inference_mode():
            inputs = tokenizer(text, return_tensors="pt")
            output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        return tokenizer.decode(output[0], skip_special_tokens=True)

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/v1/predict")
    def predict(body: dict[str, Any]) -> dict[str, Any]:
        text = manifest.prefixes.cot_input(body["input"], "predict")
        return {"predictions": [{"label": generate(text, predict_tokens)}]}

    @app.post("/v1/explain")
    def explain(body: dict[str, Any]) -> dict[str, Any]:
        label = generate(manifest.prefixes.cot_input(body["input"], "predict"), predict_tokens)
        rationale = generate(manifest.prefixes.cot_input(body["input"], "explain"), explain_tokens)
        return {"label": label, "rationale": rationale}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    bundle, port, threads = sys.argv[1:]
    run(Path(bundle), int(port), int(threads))

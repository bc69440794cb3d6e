"""Open-loop HTTP load against the batched service vs the naive server, as ratios in one run.

The model is t5-small-shaped (d_model 512, 6+6 layers, 8 heads, d_ff 2048, vocabulary 32128)
with random weights: nothing is downloaded, and speed does not depend on what the weights
know. The language-model rows of the end-of-sequence and padding tokens are zeroed so greedy
decoding never stops early: every predict generates exactly ``--predict-tokens`` tokens and
every rationale ``--explain-tokens``, in every server alike. Inputs are SVAMP-shaped questions
(tokenized by a SentencePiece model trained on them).

Servers, each started alone as a subprocess on 127.0.0.1 and measured in turn:

* ``naive``: what users write themselves: FastAPI + ``model.generate`` on PyTorch, one request
  at a time (a lock around ``generate``; explain = label + rationale, two calls); the server is
  ``bench/naive_server.py``.
* ``ours-onnx``: ``python -m mindmirror.service`` with its default settings on the bundle's fp32
ONNX export (what ``MINDMIRROR_BACKEND=auto`` picks).
* ``ours-pytorch``: the same service on the PyTorch backend: same runtime as ``naive``, so the
  ratio is the batching alone.

Per server and endpoint (``predict``, ``explain``):

1. a short closed-loop probe (many concurrent clients) estimates its capacity;
2. **low load**: open-loop Poisson arrivals at 20 % of one direct ONNX call's rate (the same
   rate for every server, a fixed number of requests); its p50 (timed from when the client
   sends, so the load generator's own lateness is not counted) is compared with one **direct
   backend call** of the server's runtime (the service's own tokenize + generate + decode,
   in-process, no HTTP, no queue), measured just before the phase (a shared host's speed
   drifts) and paced at the same rate (a call after an idle gap is slower than back-to-back);
3. **saturation**: open-loop at 1.5 × the server's own probed capacity, for several batch
   cycles (the probe's mean latency); throughput counts answers (200s) completed in the window
   after the first cycle, latency is measured from each request's *scheduled* send time (no
   coordinated omission). Requests still waiting at the end are abandoned; the service drops
   their queued work, the naive server cannot, so the next phase waits until it is idle.

Goals (issue 5): predict throughput at saturation ≥ 2.5 × naive; p50 at low load within 10 %
of one direct backend call.

    .venv/bin/python bench/serve_load.py --quick      # short phases, 24-token rationales
    .venv/bin/python bench/serve_load.py              # full phases
    .venv/bin/python bench/serve_load.py --json /tmp/serve_load.json
    .venv/bin/python bench/serve_load.py --quick --threads 1   # on a shared, busy host

Figures compare servers within one run on one machine; a loaded or shared CPU moves them all.
The load generator runs on the same machine and takes some of its CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The service makes torch's OpenMP threads sleep when idle (service/backends/pytorch.py); every
# process here (the naive server and the direct calls inherit it) does the same, so ratios
# measure batching and runtimes, not OpenMP's spin policy on a shared host.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

LOW_LOAD = 0.2  # utilisation of the low-load phase

T5_SMALL = {
    "d_model": 512,
    "d_ff": 2048,
    "d_kv": 64,
    "num_layers": 6,
    "num_decoder_layers": 6,
    "num_heads": 8,
    "feed_forward_proj": "relu",
    "vocab_size": 32128,
}


# ----- the bundle --------------------------------------------------------------------------------
def build_bundle(target: Path, predict_tokens: int, explain_tokens: int) -> Path:
    """A t5-small-shaped random bundle with an fp32 ONNX export, cached at ``target``."""
    marker = target / f".bench-{predict_tokens}-{explain_tokens}"
    if marker.is_file():
        return target
    import torch
    from mindmirror.student.bundle import GenerationDefaults, Manifest, Provenance
    from mindmirror.training.student.bundle_io import save_bundle
    from mindmirror.training.student.tokenizer import train_tokenizer
    from transformers import T5Config, T5ForConditionalGeneration

    from tests.service.exports import add_onnx_export
    from tests.tiny_student import make_problems, training_pairs

    shutil.rmtree(target, ignore_errors=True)
    print(f"building a t5-small-shaped bundle in {target} ...", flush=True)
    torch.manual_seed(0)
    pairs = training_pairs(make_problems(400, seed=0))
    tokenizer = train_tokenizer([t for pair in pairs for t in pair], vocab_size=1000)
    config = T5Config(
        **T5_SMALL,
        decoder_start_token_id=tokenizer.pad_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
        dropout_rate=0.0,
    )
    model = T5ForConditionalGeneration(config).eval()
    with torch.no_grad():
        # Never predict EOS, padding, or ids the tokenizer does not have: fixed-length outputs.
        head = model.lm_head.weight
        head[len(tokenizer) :] = 0
        head[[tokenizer.eos_token_id, tokenizer.pad_token_id]] = 0
    manifest = Manifest(
        task="svamp",
        self_evaluation=True,
        max_input_length=256,
        generation=GenerationDefaults(
            max_new_tokens_predict=predict_tokens, max_new_tokens_explain=explain_tokens
        ),
        provenance=Provenance(base_model="t5-small shape, random init (bench/serve_load.py)"),
    )
    save_bundle(model, tokenizer, manifest, target, force=True)
    add_onnx_export(target)
    marker.write_text("ok\n")
    return target


def questions(count: int = 200) -> list[str]:
    from tests.tiny_student import make_problems

    return [p.question for p in make_problems(count, seed=123)]


# ----- direct backend calls ------------------------------------------------------------------
class DirectModel:
    """The service's own model code in-process: one request's work without HTTP or queue."""

    def __init__(self, bundle: Path, backend: str, threads: int) -> None:
        from mindmirror.service.runtime import StudentModel
        from mindmirror.service.settings import Settings

        self.model = StudentModel.open(
            Settings(bundle=bundle, backend=backend, num_threads=threads)
        )
        self.model.setup()
        self.model.warmup(1)

    def latency(self, texts: list[str], endpoint: str, repeats: int, rate: float = 0.0) -> float:
        """Median seconds of tokenize + generate (label, and rationale for explain) + decode.

        With ``rate`` the calls are paced like the low-load phase (exponential gaps at that
        rate): on a shared host a call after an idle gap is slower than a back-to-back one
        (caches, scheduling), and the comparison should not credit the direct call for that."""
        from mindmirror.engine.decoding import Row

        model = self.model
        prefixes, limits = model.manifest.prefixes, model.limits
        pace = random.Random(7)
        times = []
        for i in range(repeats):
            if rate > 0:
                time.sleep(pace.expovariate(rate))
            q = texts[i % len(texts)]
            started = time.perf_counter()
            label_ids = model.codec.encode([prefixes.cot_input(q, "predict")])[0]
            out = [model.generate([Row(label_ids, limits.max_new_tokens_predict)])[0]]
            if endpoint == "explain":
                ids = model.codec.encode([prefixes.cot_input(q, "explain")])[0]
                out.append(model.generate([Row(ids, limits.max_new_tokens_explain)])[0])
            model.decode(out)
            times.append(time.perf_counter() - started)
        return statistics.median(times)


# ----- load generation -----------------------------------------------------------------------
@dataclass
class Phase:
    name: str
    offered_rps: float
    seconds: float
    #: answers completed before this many seconds are not counted (the pipeline fills up)
    warmup: float = 0.0
    sent: int = 0
    ok: int = 0
    refused: int = 0  # 429/503
    failed: int = 0
    latencies: list[float] = field(default_factory=list)  # from the scheduled send time
    #: from when the client actually started the request (the load generator's own lateness
    #: excluded): the low-load comparison with a direct call uses these
    sent_latencies: list[float] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.ok / (self.seconds - self.warmup)

    def percentile(self, q: float, sent: bool = False) -> float:
        values = self.sent_latencies if sent else self.latencies
        if not values:
            return float("nan")
        data = sorted(values)
        return data[min(len(data) - 1, int(q * len(data)))]

    def summary(self) -> dict[str, Any]:
        return {
            "offered_rps": round(self.offered_rps, 2),
            "seconds": round(self.seconds, 2),
            "warmup_s": round(self.warmup, 2),
            "sent": self.sent,
            "ok": self.ok,
            "refused": self.refused,
            "failed": self.failed,
            "throughput_rps": round(self.throughput, 2),
            "p50_ms": round(self.percentile(0.50) * 1000, 2),
            "p95_ms": round(self.percentile(0.95) * 1000, 2),
            "p99_ms": round(self.percentile(0.99) * 1000, 2),
            "p50_from_send_ms": round(self.percentile(0.50, sent=True) * 1000, 2),
        }


async def open_loop(url: str, endpoint: str, texts: list[str], phase: Phase, seed: int) -> Phase:
    """Poisson arrivals at ``phase.offered_rps`` for ``phase.seconds``; answers that complete
    after the window are not counted (their latency is, when they arrive within a grace)."""
    import httpx

    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        loop = asyncio.get_running_loop()
        start = loop.time()
        end = start + phase.seconds
        tasks = []

        async def one(scheduled: float, text: str) -> None:
            sent = loop.time()
            try:
                response = await client.post(f"/v1/{endpoint}", json={"input": text})
            except httpx.HTTPError:
                phase.failed += 1
                return
            done = loop.time()
            if response.status_code == 200:
                phase.latencies.append(done - scheduled)
                phase.sent_latencies.append(done - sent)
                if start + phase.warmup <= done <= end:
                    phase.ok += 1
            elif response.status_code in (429, 503):
                phase.refused += 1
            else:
                phase.failed += 1

        at = start
        while True:
            at += rng.expovariate(phase.offered_rps)
            if at >= end:
                break
            delay = at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(at, rng.choice(texts))))
            phase.sent += 1
        grace = max(5.0, phase.seconds)
        _, pending = await asyncio.wait(tasks, timeout=grace) if tasks else (set(), set())
        for task in pending:
            task.cancel()
    return phase


async def closed_loop_capacity(
    url: str, endpoint: str, texts: list[str], clients: int, seconds: float
) -> tuple[float, float]:
    """(answers per second, mean latency) with ``clients`` requests always outstanding.

    Runs at least ``seconds`` and at least three rounds of ``clients`` answers, so that a server
    answering in batches completes several batches; the rate is taken over the later two thirds
    of the answers (the pipeline is full by then)."""
    import httpx

    limits = httpx.Limits(max_connections=clients + 4)
    finished: list[float] = []
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        loop = asyncio.get_running_loop()
        start = loop.time()
        hard_stop = start + max(20 * seconds, 600)

        def more() -> bool:
            now = loop.time()
            enough = now - start >= seconds and len(finished) >= 3 * clients
            return not enough and now < hard_stop

        async def worker(index: int) -> None:
            i = index
            while more():
                sent = loop.time()
                response = await client.post(
                    f"/v1/{endpoint}", json={"input": texts[i % len(texts)]}
                )
                if response.status_code == 200:
                    finished.append(loop.time())
                    latencies.append(loop.time() - sent)
                i += clients

        await asyncio.gather(*(worker(i) for i in range(clients)))
    finished.sort()
    skip = len(finished) // 3
    span = finished[-1] - finished[skip]
    rate = (len(finished) - 1 - skip) / span if span > 0 else len(finished) / seconds
    return rate, statistics.fmean(latencies)


def wait_idle(url: str, timeout: float = 300) -> None:
    """Wait until the server answers a predict as fast as when idle (abandoned requests of a
    saturation phase may still be running in the naive server, which cannot cancel them)."""
    import httpx

    def one() -> float:
        started = time.perf_counter()
        httpx.post(f"{url}/v1/predict", json={"input": "Tom has 3 coins."}, timeout=timeout)
        return time.perf_counter() - started

    deadline = time.monotonic() + timeout
    baseline = None
    while time.monotonic() < deadline:
        elapsed = one()
        if baseline is not None and elapsed < 1.5 * baseline:
            return
        baseline = elapsed if baseline is None else min(baseline, elapsed)


# ----- server processes ----------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(kind: str, bundle: Path, port: int, threads: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if kind == "naive":
        script = Path(__file__).with_name("naive_server.py")
        command = [sys.executable, str(script), str(bundle), str(port), str(threads)]
    else:
        command = [sys.executable, "-m", "mindmirror.service"]
        env.update(
            {
                "MINDMIRROR_BUNDLE": str(bundle),
                "MINDMIRROR_PORT": str(port),
                "MINDMIRROR_BACKEND": kind.removeprefix("ours-"),
                "MINDMIRROR_LOG_LEVEL": "warning",
                "MINDMIRROR_NUM_THREADS": str(threads),
            }
        )
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    import httpx

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{kind} server exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{kind} server did not become ready")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ----- main ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short phases, shorter rationales")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mindmirror-serve-bench"))
    parser.add_argument("--predict-tokens", type=int, default=8)
    parser.add_argument(
        "--explain-tokens", type=int, help="rationale length (default 64; 24 with --quick)"
    )
    parser.add_argument(
        "--servers", default="naive,ours-onnx,ours-pytorch", help="comma-separated subset"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="intra-op threads for every runtime and server alike (0 = library default); "
        "on a shared, oversubscribed host use 1: spinning thread pools make timings meaningless",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    if args.quick:
        seconds = {"probe": 3.0, "saturation": 5.0}
        low_requests = {"predict": 20, "explain": 8}
        repeats = 8
        cycles = 5
    else:
        seconds = {"probe": 5.0, "saturation": 20.0}
        low_requests = {"predict": 60, "explain": 30}
        repeats = 30
        cycles = 10
    explain_tokens = args.explain_tokens or (24 if args.quick else 64)
    bundle = build_bundle(
        args.workdir / f"bundle-{args.predict_tokens}-{explain_tokens}",
        args.predict_tokens,
        explain_tokens,
    )
    texts = questions()
    print("direct backend calls ...", flush=True)
    models = {name: DirectModel(bundle, name, args.threads) for name in ("onnx", "pytorch")}
    # The low-load rate is fixed once (the same for every server) from ONNX's direct call.
    rate_basis = {e: models["onnx"].latency(texts, e, repeats) for e in ("predict", "explain")}
    results: dict[str, Any] = {
        "direct_rate_basis_s": rate_basis,
        "servers": {},
        "seconds": seconds,
        "low_load_utilisation": LOW_LOAD,
        "predict_tokens": args.predict_tokens,
        "explain_tokens": explain_tokens,
        "threads": args.threads,
    }
    for kind in args.servers.split(","):
        port = free_port()
        print(f"{kind}: starting ...", flush=True)
        process = start_server(kind, bundle, port, args.threads)
        url = f"http://127.0.0.1:{port}"
        per_endpoint: dict[str, Any] = {}
        try:
            for endpoint in ("predict", "explain"):
                # The naive server saturates with two clients; ours needs more than a batch.
                clients = 4 if kind == "naive" else 48
                capacity, cycle = asyncio.run(
                    closed_loop_capacity(url, endpoint, texts, clients, seconds["probe"])
                )
                wait_idle(url)
                # One direct call of the same runtime, measured now (a shared host's speed
                # drifts over minutes), then low load: 20 % utilisation of one direct ONNX
                # call, the same rate for every server.
                runtime = "onnx" if kind == "ours-onnx" else "pytorch"
                low_rate = LOW_LOAD / rate_basis[endpoint]
                direct = models[runtime].latency(texts, endpoint, repeats, low_rate)
                low = asyncio.run(
                    open_loop(
                        url,
                        endpoint,
                        texts,
                        Phase("low", low_rate, low_requests[endpoint] / low_rate),
                        1,
                    )
                )
                # Saturation: 1.5 x capacity, long enough for several batch cycles; the first
                # cycle (pipeline filling) is not counted.
                window = max(seconds["saturation"], cycles * cycle)
                saturation = asyncio.run(
                    open_loop(
                        url,
                        endpoint,
                        texts,
                        Phase("saturation", 1.5 * capacity, window, warmup=cycle),
                        2,
                    )
                )
                wait_idle(url)
                per_endpoint[endpoint] = {
                    "direct_runtime": runtime,
                    "direct_ms": round(direct * 1000, 2),
                    "probed_capacity_rps": round(capacity, 2),
                    "low": low.summary(),
                    "saturation": saturation.summary(),
                }
                p50, p95, p99 = (saturation.percentile(q) * 1000 for q in (0.5, 0.95, 0.99))
                print(
                    f"  {endpoint:8s} capacity {capacity:7.1f}/s  "
                    f"low p50 {low.percentile(0.5, sent=True) * 1000:7.1f} ms "
                    f"(direct {direct * 1000:.1f})  "
                    f"saturation {saturation.throughput:7.1f}/s "
                    f"p50/p95/p99 {p50:.0f}/{p95:.0f}/{p99:.0f} ms",
                    flush=True,
                )
        finally:
            stop_server(process)
        results["servers"][kind] = per_endpoint

    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def report(results: dict[str, Any]) -> None:
    servers = results["servers"]
    print(
        "\n| server | endpoint | direct call ms | low-load p50 ms | saturation req/s "
        "| p50 / p95 / p99 ms at saturation |"
    )
    print("|---|---|---|---|---|---|")
    for kind, endpoints in servers.items():
        for endpoint, r in endpoints.items():
            s = r["saturation"]
            print(
                f"| {kind} | {endpoint} | {r['direct_ms']:.1f} ({r['direct_runtime']}) | "
                f"{r['low']['p50_from_send_ms']:.1f} | {s['throughput_rps']:.1f} | "
                f"{s['p50_ms']:.0f} / {s['p95_ms']:.0f} / {s['p99_ms']:.0f} |"
            )
    print("\nRatios (same run, same machine):")
    naive = servers.get("naive")
    for kind in ("ours-onnx", "ours-pytorch", "naive"):
        if kind not in servers:
            continue
        for endpoint in ("predict", "explain"):
            r = servers[kind][endpoint]
            if naive and kind != "naive":
                ratio = r["saturation"]["throughput_rps"] / max(
                    naive[endpoint]["saturation"]["throughput_rps"], 1e-9
                )
                goal = "  (goal >= 2.5)" if endpoint == "predict" else ""
                print(
                    f"  {kind} / naive  {endpoint:8s} throughput at saturation: {ratio:5.2f}x{goal}"
                )
            p50 = r["low"]["p50_from_send_ms"]
            goal = "  (goal <= 1.10)" if kind != "naive" else ""
            print(
                f"  {kind} {endpoint:8s} low-load p50 / one direct {r['direct_runtime']} call: "
                f"{p50 / r['direct_ms']:5.2f}{goal}"
            )


if __name__ == "__main__":
    sys.exit(main())

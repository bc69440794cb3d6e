"""GPU decoding speed *and* parity, in one run: the Python part of ``bench/gpu_runtimes.sh``.

Runtimes (all on one CUDA device):

- ``pt-fp32`` PyTorch eager fp32 (the reference for parity and speed), ``pt-bf16`` the same
  model in bfloat16;
- ``ort-fp32`` and ``ort-fp16mix``: the export's ONNX fp32 and fp16-mixed variants on ONNX
  Runtime's CUDA provider, through the engine's decoding loop with its device (IO binding)
  strategy, as the service serves them (encoder output and KV cache stay on the GPU); TF32 off
  for fp32, so it is compared like for like;
- ``ct2-fp32``, ``ct2-bf16``, ``ct2-int8bf16``: CTranslate2 on CUDA.

For each runtime the script measures parity against ``pt-fp32`` on the GPU (greedy token
agreement and the largest logit difference while both decode the same tokens, with the export's
own parity code) and the time of ``predict`` (4 new tokens) and ``explain`` (64 new tokens) at
batch 1, 8 and 32, every runtime forced to produce exactly N tokens. It prints a short table
last. ``--bundle`` uses a real exported student instead of a random-init t5-v1_1-base shape.

``--dry-run`` runs the same code on the CPU with a tiny model: it exists to catch bugs in this
script where no GPU is available, and its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TASKS = {"predict": 4, "explain": 64}
TINY_SHAPE = {
    "d_model": 64,
    "d_ff": 128,
    "d_kv": 16,
    "num_layers": 2,
    "num_decoder_layers": 2,
    "num_heads": 4,
    "feed_forward_proj": "gated-gelu",
    "tie_word_embeddings": False,
}

Runner = Callable[..., list[list[int]]]


def fail(message: str) -> None:
    print(f"gpu_runtimes: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def check_gpu(dry_run: bool) -> None:
    import ctranslate2
    import onnxruntime as ort
    import torch

    if dry_run:
        return
    if not torch.cuda.is_available():
        fail("torch sees no CUDA device (a CPU-only torch wheel, or no driver)")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        fail(
            f"onnxruntime {ort.__version__} has no CUDA provider "
            f"({ort.get_available_providers()}): the CPU wheel shadows onnxruntime-gpu"
        )
    if ctranslate2.get_cuda_device_count() < 1:
        fail("CTranslate2 sees no CUDA device")
    print(
        f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}, onnxruntime "
        f"{ort.__version__}, ctranslate2 {ctranslate2.__version__}",
        flush=True,
    )


def prepare(args: argparse.Namespace, work: Path) -> tuple[Path, dict[str, Path]]:
    """The model directory, and the ONNX / CTranslate2 directories to benchmark."""
    from mindmirror.export.convert import build_variant, export_with_optimum
    from mindmirror.export.ct2 import convert_ctranslate2
    from transformers import T5ForConditionalGeneration

    if args.bundle:
        bundle = args.bundle.resolve()
        from mindmirror.student.bundle import load_manifest

        manifest = load_manifest(bundle)
        variants = manifest.exports.get("onnx", {}).get("variants", {})
        for needed in ("fp32", "fp16-mixed"):
            if needed not in variants:
                fail(f"{bundle} has no ONNX {needed} variant: run `mindmirror export` first")
        model_dir = bundle
        paths = {"ort-fp32": bundle / "onnx/fp32", "ort-fp16mix": bundle / "onnx/fp16-mixed"}
    else:
        import runtimes  # bench/runtimes.py: the same random-init shapes as the CPU bench

        if args.dry_run:
            runtimes.SHAPES["tiny"] = TINY_SHAPE
        shape = "tiny" if args.dry_run else args.shape
        model_dir = runtimes.build_model_dir(shape, work / shape / "model")
        optimum_dir = work / shape / "optimum"
        print(f"exporting {shape} with optimum-onnx ...", flush=True)
        model = T5ForConditionalGeneration.from_pretrained(model_dir).eval()
        export_with_optimum(model, optimum_dir)
        del model
        paths = {}
        for name, key in (("fp32", "ort-fp32"), ("fp16-mixed", "ort-fp16mix")):
            print(f"building ONNX {name} ...", flush=True)
            paths[key] = work / shape / "onnx" / name
            build_variant(name, optimum_dir, paths[key], work / shape / "scratch")
    ct2_dir = model_dir / "ctranslate2" / "fp32"
    if not (ct2_dir / "model.bin").is_file():
        ct2_dir = work / "ctranslate2" / model_dir.parent.name
        print("converting to CTranslate2 ...", flush=True)
        convert_ctranslate2(model_dir, ct2_dir, "fp32")
    paths["ct2"] = ct2_dir
    return model_dir, paths


def make_runners(model_dir: Path, paths: dict[str, Path], dry_run: bool) -> dict[str, Runner]:
    """name -> run(ids, mask, n, on_step=None, on_row_logits=None) -> rows of exactly n ids.

    ``on_step(step, rows, logits)`` receives the rows' logits per step (PyTorch, ONNX; the
    engine's step observer); ``on_row_logits(row, logits)`` steps x vocab per row (CTranslate2).
    """
    import numpy as np
    import onnxruntime as ort
    import torch
    from mindmirror.engine.decoding import rows_from_arrays
    from mindmirror.engine.ids import read_model_ids
    from mindmirror.engine.onnx import OnnxSeq2Seq
    from mindmirror.export.ct2 import Ct2Seq2Seq
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    device = "cpu" if dry_run else "cuda"
    model_ids = read_model_ids(model_dir)
    fp32 = T5ForConditionalGeneration.from_pretrained(model_dir, use_safetensors=True)
    fp32 = fp32.eval().to(device)
    bf16 = T5ForConditionalGeneration.from_pretrained(model_dir, use_safetensors=True)
    bf16 = bf16.eval().to(device=device, dtype=torch.bfloat16)

    def torch_runner(model: Any) -> Runner:
        def run(ids: Any, mask: Any, n: int, on_step: Any = None, **_: Any) -> list[list[int]]:
            config = model_ids.greedy_config(n, exact=True)
            with torch.inference_mode():
                out = model.generate(
                    input_ids=torch.from_numpy(ids).to(device),
                    attention_mask=torch.from_numpy(mask).to(device),
                    generation_config=config,
                    use_model_defaults=False,
                    return_dict_in_generate=True,
                    output_logits=on_step is not None,
                )
            if device == "cuda":
                torch.cuda.synchronize()
            if on_step is not None:
                every_row = np.arange(len(ids))
                for step, logits in enumerate(out.logits):
                    on_step(step, every_row, logits.float().cpu().numpy())
            return out.sequences[:, 1:].cpu().tolist()

        return run

    runners: dict[str, Runner] = {"pt-fp32": torch_runner(fp32), "pt-bf16": torch_runner(bf16)}

    if not dry_run and hasattr(ort, "preload_dlls"):
        ort.preload_dlls()  # use the CUDA/cuDNN libraries torch brought
    # TF32 would round fp32 matmuls to 10-bit mantissas: fp32 must be compared as fp32.
    cuda_options = {"ort-fp32": {"use_tf32": "0"}, "ort-fp16mix": {}}
    for name in ("ort-fp32", "ort-fp16mix"):
        # The device strategy, as served on CUDA (the dry run exercises it on the CPU device).
        runtime = OnnxSeq2Seq.load(
            paths[name], model_ids, device=device, io_binding=True, cuda_options=cuda_options[name]
        )
        if runtime.device != device:
            fail(f"{name}: ONNX Runtime fell back to {runtime.decoder.get_providers()}")

        def run_ort(
            ids: Any, mask: Any, n: int, on_step: Any = None, runtime: Any = runtime, **_: Any
        ) -> list[list[int]]:
            rows = rows_from_arrays(ids, mask, n, min_new_tokens=n)
            return [g.tokens for g in runtime.generate(rows, observer=on_step)]

        runners[name] = run_ort

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    compute_types = (
        {"ct2-fp32": "float32", "ct2-int8": "int8"}
        if dry_run
        else {"ct2-fp32": "float32", "ct2-bf16": "bfloat16", "ct2-int8bf16": "int8_bfloat16"}
    )
    for name, compute_type in compute_types.items():
        ct2 = Ct2Seq2Seq(
            paths["ct2"], tokenizer, model_ids, device=device, compute_type=compute_type
        )

        def run_ct2(
            ids: Any,
            mask: Any,
            n: int,
            on_row_logits: Any = None,
            ct2: Any = ct2,
            **_: Any,
        ) -> list[list[int]]:
            return ct2.generate(ids, mask, n, min_new_tokens=n, on_row_logits=on_row_logits)

        runners[name] = run_ct2
    return runners


def measure_parity(runners: dict[str, Runner], batch: int, new_tokens: int) -> dict[str, Any]:
    """Every runtime against pt-fp32 on the same random inputs, with the export's parity code."""
    import numpy as np
    from mindmirror.export.parity import ParityInput, VariantParity, row_diffs, step_diff_recorder

    rng = np.random.default_rng(1)
    ids, mask = random_inputs(rng, batch)
    steps: list[np.ndarray] = []
    reference = runners["pt-fp32"](ids, mask, new_tokens, on_step=lambda s, r, lg: steps.append(lg))
    reference_logits = np.stack(steps, axis=1)  # batch x steps x vocab
    item = ParityInput("explain", "random ids", new_tokens)
    results = {}
    for name, run in runners.items():
        if name == "pt-fp32":
            continue
        parity = VariantParity(name)
        if name.startswith("ct2"):
            per_row: list[list[float]] = [[] for _ in range(batch)]

            def keep(row: int, logits: Any, per_row: list = per_row) -> None:
                per_row[row] = row_diffs(reference_logits[row], logits)

            rows = run(ids, mask, new_tokens, on_row_logits=keep)
        else:
            record, diffs = step_diff_recorder(reference_logits, new_tokens)
            rows = run(ids, mask, new_tokens, on_step=record)
            per_row = [diffs[r].tolist() for r in range(batch)]
        for r in range(batch):
            parity.add(r, item, reference[r], rows[r], reference_logits[r], per_row[r], None)
        summary = parity.summary()
        results[name] = {
            "token_agreement": summary["token_agreement"],
            "exact_match": summary["exact_match"],
            "max_abs_logit_diff": summary["max_abs_logit_diff"],
        }
    return results


def random_inputs(rng: Any, batch: int, length: int = 64) -> tuple[Any, Any]:
    import numpy as np

    ids = rng.integers(3, 32000, size=(batch, length), dtype=np.int64)
    ids[:, -1] = 1
    return ids, np.ones_like(ids)


def time_runtime(run: Runner, ids: Any, mask: Any, n: int, repeats: int) -> float:
    rows = run(ids, mask, n)  # warm-up: CUDA graphs/kernels, allocator, lazy init
    if {len(r) for r in rows} != {n}:
        fail(f"a runtime produced {sorted({len(r) for r in rows})} tokens, not {n}")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(ids, mask, n)  # every runner returns host-side ids, so the GPU work is done
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def print_table(
    parity: dict[str, Any], timings: dict[str, dict[str, float]], cells: list[str], skipped: list
) -> None:
    names = ["pt-fp32", *parity]
    print("\n=== GPU runtimes: parity vs pt-fp32, and speed-up over pt-fp32 (x) ===")
    header = f"{'runtime':<13}{'tokens':>7}{'max|dlogit|':>12}" + "".join(
        f"{cell:>11}" for cell in cells
    )
    print(header)
    for name in names:
        entry = parity.get(name)
        agreement = "ref" if entry is None else f"{entry['token_agreement']:.3f}"
        diff = "-" if entry is None else f"{entry['max_abs_logit_diff']:.3g}"
        row = f"{name:<13}{agreement:>7}{diff:>12}"
        for cell in cells:
            seconds = timings.get(cell, {}).get(name)
            base = timings.get(cell, {}).get("pt-fp32")
            if seconds is None or base is None:
                row += f"{'-':>11}"
            elif name == "pt-fp32":
                row += f"{seconds * 1000:>9.1f}ms"
            else:
                row += f"{base / seconds:>10.2f}x"
        print(row)
    if skipped:
        print(f"skipped (time budget): {', '.join(skipped)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny model: test the script")
    parser.add_argument(
        "--shape", default="t5-v1_1-base", help="random-init shape (bench/runtimes.py)"
    )
    parser.add_argument("--bundle", type=Path, help="an exported student bundle instead")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--budget-s",
        type=float,
        default=240.0,
        help="stop timing new cells after this many seconds",
    )
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    batches = [int(b) for b in args.batches.split(",")]

    check_gpu(args.dry_run)
    with tempfile.TemporaryDirectory(prefix="mindmirror-gpu-") as scratch:
        work = args.workdir or Path(scratch)
        model_dir, paths = prepare(args, work)
        runners = make_runners(model_dir, paths, args.dry_run)
        print("parity (batch 8, 64 forced tokens) ...", flush=True)
        parity = measure_parity(runners, batch=8, new_tokens=TASKS["explain"])

        import numpy as np

        rng = np.random.default_rng(0)
        timings: dict[str, dict[str, float]] = {}
        cells, skipped = [], []
        for task, n in TASKS.items():
            for batch in batches:
                cell = f"{task[:3]} b{batch}"
                cells.append(cell)
                if time.monotonic() - started > args.budget_s:
                    skipped.append(cell)
                    continue
                ids, mask = random_inputs(rng, batch)
                timings[cell] = {}
                for name, run in runners.items():
                    timings[cell][name] = time_runtime(run, ids, mask, n, args.repeats)
                print(
                    f"  {cell}: "
                    + ", ".join(f"{k} {v * 1000:.1f}ms" for k, v in timings[cell].items()),
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps({"parity": parity, "timings": timings}, indent=2) + "\n")
    print(f"(total {time.monotonic() - started:.0f}s{'; DRY RUN on CPU' if args.dry_run else ''})")
    print_table(parity, timings, cells, skipped)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""CPU decoding speed of the export's runtimes, as ratios to PyTorch measured in one run.

For a t5-small-shaped and a t5-v1_1-base-shaped model (random weights from a ``T5Config``: no
download, and timing does not depend on the weights), times greedy decoding of

- ``predict``: 4 new tokens (a label), and
- ``explain``: 64 new tokens (a rationale),

at batch 1, 8 and 32 with: PyTorch eager (transformers ``generate``), ONNX Runtime fp32 and
int8 (the export's variants, through the engine's decoding loop and session options: what the
service serves with) and CTranslate2 int8 (and fp32). Random-init models stop early (they often
emit the end token at once), so every runtime is forced to produce exactly N tokens (end token
suppressed until N), and the script checks it did. Inputs are random token ids (64 source
tokens): no tokenizer is involved in the timing.

    .venv/bin/python bench/runtimes.py            # full: batches 1, 8, 32, 3 timed repeats
    .venv/bin/python bench/runtimes.py --quick    # batches 1 and 32, 1 timed repeat

Prints one table per model, time per call and speed-up over PyTorch (higher is faster). The
figures are only comparable within one run on one machine.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHAPES: dict[str, dict[str, Any]] = {
    # google-t5/t5-small
    "t5-small": {
        "d_model": 512,
        "d_ff": 2048,
        "d_kv": 64,
        "num_layers": 6,
        "num_decoder_layers": 6,
        "num_heads": 8,
        "feed_forward_proj": "relu",
        "tie_word_embeddings": True,
    },
    # google/t5-v1_1-base (the Mind's Mirror student)
    "t5-v1_1-base": {
        "d_model": 768,
        "d_ff": 2048,
        "d_kv": 64,
        "num_layers": 12,
        "num_decoder_layers": 12,
        "num_heads": 12,
        "feed_forward_proj": "gated-gelu",
        "tie_word_embeddings": False,
    },
}
VOCAB_SIZE = 32128
TASKS = {"predict": 4, "explain": 64}


def build_model_dir(shape: str, directory: Path, seed: int = 0) -> Path:
    """A random-init T5 of ``shape`` saved with a plain word-level tokenizer (CTranslate2's
    converter reads the vocabulary from a tokenizer; one id per token string)."""
    import torch
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    if (directory / "model.safetensors").is_file():
        return directory
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=VOCAB_SIZE,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        dropout_rate=0.0,
        **SHAPES[shape],
    )
    model = T5ForConditionalGeneration(config).eval()
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{f"t{i}": i for i in range(3, VOCAB_SIZE)}}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="<unk>")),  # noqa: S106
        pad_token="<pad>",  # noqa: S106 -- tokenizer tokens, not passwords
        eos_token="</s>",  # noqa: S106
        unk_token="<unk>",  # noqa: S106
    )
    tokenizer.save_pretrained(directory)
    return directory


def export_runtimes(model_dir: Path, work: Path, ct2_variants: list[str]) -> dict[str, Path]:
    """The export's own code paths: optimum fp32, the int8 variant, CTranslate2."""
    from mindmirror.export.convert import build_variant, export_with_optimum
    from mindmirror.export.ct2 import convert_ctranslate2
    from transformers import T5ForConditionalGeneration

    paths = {"onnx-fp32": work / "onnx" / "fp32", "onnx-int8": work / "onnx" / "int8"}
    if not (paths["onnx-int8"] / "decoder_model_merged.onnx").is_file():
        optimum_dir = work / "optimum"
        if not (optimum_dir / "decoder_model_merged.onnx").is_file():
            print(f"  exporting {model_dir.name} with optimum-onnx ...", flush=True)
            model = T5ForConditionalGeneration.from_pretrained(model_dir).eval()
            export_with_optimum(model, optimum_dir)
            del model
        for name in ("fp32", "int8"):
            print(f"  building ONNX {name} ...", flush=True)
            build_variant(name, optimum_dir, work / "onnx" / name, work / "scratch")
    for name in ct2_variants:
        path = work / "ctranslate2" / name
        if not (path / "model.bin").is_file():
            print(f"  converting to CTranslate2 {name} ...", flush=True)
            convert_ctranslate2(model_dir, path, name)
        paths[f"ct2-{name}"] = path
    return paths


def make_runners(
    model_dir: Path, paths: dict[str, Path], threads: int
) -> dict[str, Callable[[Any, Any, int], list[list[int]]]]:
    """name -> run(input_ids, attention_mask, new_tokens) returning the generated rows."""
    import torch
    from mindmirror.engine.decoding import rows_from_arrays
    from mindmirror.engine.ids import read_model_ids
    from mindmirror.engine.onnx import OnnxSeq2Seq
    from mindmirror.export.ct2 import Ct2Seq2Seq
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    torch.set_num_threads(threads)
    ids = read_model_ids(model_dir)
    model = T5ForConditionalGeneration.from_pretrained(model_dir).eval()

    def pytorch(input_ids: Any, attention_mask: Any, new_tokens: int) -> list[list[int]]:
        config = ids.greedy_config(new_tokens, exact=True)
        with torch.inference_mode():
            out = model.generate(
                input_ids=torch.from_numpy(input_ids),
                attention_mask=torch.from_numpy(attention_mask),
                generation_config=config,
                use_model_defaults=False,
            )
        return out[:, 1:].tolist()

    runners: dict[str, Callable[[Any, Any, int], list[list[int]]]] = {"pytorch": pytorch}
    for name in ("onnx-fp32", "onnx-int8"):
        runtime = OnnxSeq2Seq.load(paths[name], ids, threads=threads)

        def run(batch: Any, mask: Any, n: int, runtime: OnnxSeq2Seq = runtime) -> list[list[int]]:
            rows = rows_from_arrays(batch, mask, n, min_new_tokens=n)
            return [generation.tokens for generation in runtime.generate(rows)]

        runners[name] = run
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    for name, path in paths.items():
        if not name.startswith("ct2-"):
            continue
        ct2 = Ct2Seq2Seq(path, tokenizer, ids, threads=threads)

        def run_ct2(batch: Any, mask: Any, n: int, ct2: Ct2Seq2Seq = ct2) -> list[list[int]]:
            return ct2.generate(batch, mask, n, min_new_tokens=n)

        runners[name] = run_ct2
    return runners


def time_call(run: Callable[[], list[list[int]]], repeats: int) -> tuple[float, list[list[int]]]:
    rows = run()  # warm-up (allocations, ORT/CT2 lazy initialisation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        rows = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), rows


def bench_shape(
    shape: str, work: Path, batches: list[int], repeats: int, threads: int, ct2: list[str]
) -> list[dict[str, Any]]:
    import numpy as np

    print(f"\n== {shape} ==", flush=True)
    model_dir = build_model_dir(shape, work / shape / "model")
    paths = export_runtimes(model_dir, work / shape, ct2)
    runners = make_runners(model_dir, paths, threads)
    rng = np.random.default_rng(0)
    results = []
    for task, new_tokens in TASKS.items():
        for batch in batches:
            ids = rng.integers(3, VOCAB_SIZE - 100, size=(batch, 64), dtype=np.int64)
            ids[:, -1] = 1  # end of source
            mask = np.ones_like(ids)
            row: dict[str, Any] = {"model": shape, "task": task, "batch": batch, "seconds": {}}
            outputs = {}
            for name, run in runners.items():

                def call(
                    run: Callable = run, ids: Any = ids, mask: Any = mask, n: int = new_tokens
                ) -> list[list[int]]:
                    return run(ids, mask, n)

                seconds, rows = time_call(call, repeats)
                lengths = {len(r) for r in rows}
                if lengths != {new_tokens}:
                    raise SystemExit(
                        f"{name} produced {sorted(lengths)} tokens, not exactly {new_tokens}: "
                        "the comparison would not be fair"
                    )
                row["seconds"][name] = seconds
                outputs[name] = rows
                print(
                    f"  {task:<8} batch {batch:>2}  {name:<10} {seconds * 1000:9.1f} ms", flush=True
                )
            # Sanity: the fp32 runtimes compute the same thing as PyTorch.
            row["fp32_tokens_equal"] = {
                name: outputs[name] == outputs["pytorch"]
                for name in ("onnx-fp32", "ct2-fp32")
                if name in outputs
            }
            results.append(row)
    return results


def print_table(results: list[dict[str, Any]]) -> None:
    names = list(results[0]["seconds"])
    header = f"{'model':<14}{'task':<9}{'batch':>5}  {'pytorch ms':>10}" + "".join(
        f"{name:>11}" for name in names[1:]
    )
    print("\nspeed-up over PyTorch eager (x, higher is faster; same run, same threads)")
    print(header)
    for row in results:
        base = row["seconds"]["pytorch"]
        cells = "".join(f"{base / row['seconds'][name]:>10.2f}x" for name in names[1:])
        print(f"{row['model']:<14}{row['task']:<9}{row['batch']:>5}  {base * 1000:>10.1f}{cells}")
    mismatched = [
        (row["model"], row["task"], row["batch"], name)
        for row in results
        for name, same in row["fp32_tokens_equal"].items()
        if not same
    ]
    print(
        "fp32 runtimes produced PyTorch's tokens in every cell"
        if not mismatched
        else f"fp32 token mismatches (check before trusting the figures): {mismatched}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="batches 1 and 32, one repeat")
    parser.add_argument("--models", default=",".join(SHAPES), help="comma-separated shapes")
    parser.add_argument("--batches", help="comma-separated batch sizes (default 1,8,32)")
    parser.add_argument("--repeats", type=int, help="timed repeats per cell (median)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-ct2-fp32", action="store_true", help="skip CTranslate2 fp32")
    parser.add_argument("--workdir", type=Path, help="keep the models and exports here")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    batches = [int(b) for b in (args.batches or ("1,32" if args.quick else "1,8,32")).split(",")]
    repeats = args.repeats or (1 if args.quick else 3)
    ct2 = ["int8"] if args.no_ct2_fp32 else ["int8", "fp32"]
    shapes = [s.strip() for s in args.models.split(",")]
    for shape in shapes:
        if shape not in SHAPES:
            parser.error(f"unknown model shape {shape!r}; choose from {', '.join(SHAPES)}")
    sys.stdout.reconfigure(line_buffering=True)  # progress lines appear as they happen
    print(
        f"threads {args.threads}, batches {batches}, repeats {repeats} (median), "
        f"new tokens {TASKS}, source 64 tokens"
    )
    with tempfile.TemporaryDirectory(prefix="mindmirror-bench-") as scratch:
        work = args.workdir or Path(scratch)
        results = []
        for shape in shapes:
            results += bench_shape(shape, work, batches, repeats, args.threads, ct2)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Training throughput: mindmirror's MultiTaskTrainer vs a plain HF Seq2SeqTrainer.

Both train the same random-init T5 (t5-small's shape by default) on the same sequences: the
predict and explain examples of a synthetic distillation set. Ours batches B *pairs* per step
(one predict and one explain forward, each padded on its own); the plain trainer batches the
same 2B sequences mixed, as a user gluing distilling-step-by-step data into Seq2SeqTrainer
would. Throughput counts (input, target) sequences per second after a warm-up, measured in one
run on one machine, and the script prints the ratio ours / plain.

    .venv/bin/python bench/train_throughput.py            # t5-small shape, 30 timed steps
    .venv/bin/python bench/train_throughput.py --quick    # fewer, shorter steps (CI-sized)

On a shared or busy CPU the absolute figures mean little; the ratio is what to read.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch
from mindmirror.student.tasks import get_task
from mindmirror.student.tasks.arith import generate_problems
from mindmirror.training.student.examples import build_cot_pairs, build_self_evaluation_pairs
from mindmirror.training.student.tokenizer import train_tokenizer
from mindmirror.training.student.trainer import MultiTaskTrainer, PairCollator, PairDataset
from mindmirror.training.teacher.simulated import simulated_distillation_set
from transformers import (
    DataCollatorForSeq2Seq,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    T5Config,
    T5ForConditionalGeneration,
    TrainerCallback,
)

SHAPES = {
    "t5-small": {"d_model": 512, "d_kv": 64, "d_ff": 2048, "num_layers": 6, "num_heads": 8},
    "mini": {"d_model": 256, "d_kv": 32, "d_ff": 768, "num_layers": 4, "num_heads": 8},
}


class StepTimer(TrainerCallback):
    """Wall time of the steps after the warm-up ones."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start: float | None = None
        self.end: float | None = None

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.warmup and self.start is None:
            self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.end = time.perf_counter()


class SequenceDataset(torch.utils.data.Dataset):
    def __init__(self, rows: list[dict[str, list[int]]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.rows[index]


def _args(output: str, batch: int, steps: int, seed: int) -> Seq2SeqTrainingArguments:
    return Seq2SeqTrainingArguments(
        output_dir=output,
        per_device_train_batch_size=batch,
        max_steps=steps,
        learning_rate=1e-4,
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        report_to="none",
        remove_unused_columns=False,
        disable_tqdm=True,
        seed=seed,
        use_cpu=not torch.cuda.is_available(),
        dataloader_pin_memory=torch.cuda.is_available(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="mini shape, a few short steps")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="t5-small")
    parser.add_argument("--pairs-per-step", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.warmup, args.shape, args.pairs_per_step = 5, 1, "mini", 4
    shape = SHAPES[args.shape]
    if args.threads:
        torch.set_num_threads(args.threads)

    task = get_task("arith")
    examples = [problem.example() for problem in generate_problems(200, seed=0)]
    records = simulated_distillation_set(examples, 3, 2)
    pairs = build_cot_pairs(records, task).pairs + build_self_evaluation_pairs(records, task).pairs
    random.Random(0).shuffle(pairs)
    texts = [t for p in pairs for t in (p.predict_input, p.label, p.explain_input, p.rationale)]
    tokenizer = train_tokenizer(texts, vocab_size=2000)
    lengths = {"max_input_length": 256, "max_label_length": 16, "max_rationale_length": 96}
    paired = PairDataset(pairs, tokenizer, **lengths)
    flat = SequenceDataset(
        [
            {"input_ids": paired[i][f"{side}_input_ids"], "labels": paired[i][f"{side}_labels"]}
            for i in range(len(paired))
            for side in ("pred", "expl")
        ]
    )
    random.Random(1).shuffle(flat.rows)

    config = T5Config(
        vocab_size=len(tokenizer),
        **shape,
        num_decoder_layers=shape["num_layers"],
        dropout_rate=0.1,
        decoder_start_token_id=tokenizer.pad_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    total_steps = args.steps + args.warmup
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("plain", "ours"):
            torch.manual_seed(0)
            model = T5ForConditionalGeneration(config)
            timer = StepTimer(args.warmup)
            if name == "ours":
                trainer = MultiTaskTrainer(
                    model=model,
                    args=_args(tmp, args.pairs_per_step, total_steps, 0),
                    train_dataset=paired,
                    data_collator=PairCollator(tokenizer.pad_token_id),
                    processing_class=tokenizer,
                    callbacks=[timer],
                    rationale_weight=0.5,
                )
            else:
                trainer = Seq2SeqTrainer(
                    model=model,
                    args=_args(tmp, 2 * args.pairs_per_step, total_steps, 0),
                    train_dataset=flat,
                    data_collator=DataCollatorForSeq2Seq(tokenizer, model=model),
                    processing_class=tokenizer,
                    callbacks=[timer],
                )
            sequences_per_step = 2 * args.pairs_per_step  # the same sequences either way
            trainer.train()
            seconds = timer.end - timer.start
            results[name] = {
                "sequences_per_second": round(args.steps * sequences_per_step / seconds, 2),
                "seconds": round(seconds, 2),
                "timed_steps": args.steps,
            }
            print(
                f"{name:>5}: {results[name]['sequences_per_second']:8.2f} sequences/s "
                f"({args.steps} steps of {sequences_per_step} sequences in {seconds:.1f} s)"
            )
    ratio = results["ours"]["sequences_per_second"] / results["plain"]["sequences_per_second"]
    results["ratio_ours_over_plain"] = round(ratio, 3)
    results["model"] = {"shape": args.shape, **shape, "vocab_size": len(tokenizer)}
    results["device"] = "cuda" if torch.cuda.is_available() else f"cpu x{torch.get_num_threads()}"
    print(f"ratio ours / plain: {ratio:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

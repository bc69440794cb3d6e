"""Sizing experiment for the offline demo: how well a from-scratch T5 learns ``arith`` on a CPU.

Not a test and not the product's training code (that is ``mindmirror distill``): a minimal,
self-contained loop that answers one planning question for ``mindmirror demo`` — which model
size, data size, step count, batch size and learning rate get a student trained from scratch
on the synthetic task to a useful test accuracy within a few minutes on 2 CPU cores.

It generates the splits, has the simulated teacher write N chains of thought per training
problem (and, with ``--stage1-steps``, self-evaluations of them), trains a SentencePiece
tokenizer on that text, then trains a T5 multi-task as Mind's Mirror does:
``predict: q -> gold label`` plus ``lambda * (explain: q -> k-th CoT rationale)``, one CoT per
problem per batch row; stage 1 (optional) does the same on the self-evaluation pairs first.
It reports greedy test accuracy on the predict task and the wall and CPU time of each phase.

    .venv/bin/python bench/arith_sizing.py --quick
    .venv/bin/python bench/arith_sizing.py --train 3000 --steps 1500 --d-model 128 --layers 3

Times depend on the machine's load: CPU seconds (user + system, all threads) are printed beside
the wall time, since on a shared machine they say more about what a quiet one would take.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import time
from dataclasses import dataclass
from pathlib import Path

from mindmirror.student.formats import DEFAULT_PREFIXES
from mindmirror.student.tasks import get_task
from mindmirror.student.tasks.arith import equation_ops, generate_splits
from mindmirror.training.teacher.simulated import (
    SimulatedTeacher,
    SimulatedTeacherConfig,
)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Phase:
    name: str
    wall: float = 0.0
    cpu: float = 0.0


class Clock:
    def __init__(self) -> None:
        self.phases: list[Phase] = []

    def start(self, name: str) -> None:
        self._name, self._wall, self._cpu = name, time.perf_counter(), cpu_seconds()

    def stop(self) -> Phase:
        phase = Phase(self._name, time.perf_counter() - self._wall, cpu_seconds() - self._cpu)
        self.phases.append(phase)
        return phase


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run that shows it works")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=12000, help="training problems")
    parser.add_argument("--test", type=int, default=500, help="test problems")
    parser.add_argument("--cots", type=int, default=2, help="simulated CoTs per problem")
    parser.add_argument("--evals", type=int, default=1, help="self-evaluations per CoT (stage 1)")
    parser.add_argument("--error-rate", type=float, default=0.25)
    parser.add_argument("--vocab", type=int, default=800)
    parser.add_argument("--tokenizer", choices=("bpe", "unigram"), default="bpe")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--layers", type=int, default=3, help="encoder and decoder layers each")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--d-ff", type=int, default=256)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--steps", type=int, default=800, help="stage-2 steps")
    parser.add_argument("--stage1-steps", type=int, default=0, help="self-evaluation steps first")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--warmup", type=float, default=0.05, help="fraction of steps")
    parser.add_argument("--lambda", dest="lam", type=float, default=0.5, help="rationale weight")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--eval-every", type=int, default=0, help="test accuracy on 200 problems every N steps"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.train, args.test, args.cots, args.steps = 300, 60, 2, 60
        args.d_model, args.layers, args.d_ff, args.vocab = 64, 2, 128, 300
        args.stage1_steps = min(args.stage1_steps, 20)
    return args


def build_pairs(args: argparse.Namespace):
    task = get_task("arith")
    splits = generate_splits(args.seed, args.train, 0, args.test)
    teacher = SimulatedTeacher(SimulatedTeacherConfig(error_rate=args.error_rate, seed=args.seed))
    p = DEFAULT_PREFIXES
    stage2: list[tuple[str, str, list[str]]] = []  # (question, gold label, rationales)
    stage1: list[tuple[str, str, str, str]] = []  # (question, CoT, verdict, eval rationale)
    for problem in splits["train"]:
        example = task.example_from_record(problem.record(), 0)
        rationales = []
        for cot in teacher.cots(example, args.cots):
            rationale, _ = task.split_cot(cot.text, example)
            rationales.append(rationale)
            if args.stage1_steps:
                for evaluation in teacher.self_evaluations(example, cot.text, args.evals):
                    body = evaluation.text.split("\n\nEvaluation result")[0]
                    body = body.removeprefix("Evaluation:\n")
                    stage1.append((example.question, cot.text, evaluation.verdict.value, body))
        stage2.append((example.question, example.label, rationales))
    texts = [p.cot_input(q, "predict") for q, _, _ in stage2]
    texts += [label for _, label, _ in stage2]
    texts += [r for _, _, rs in stage2 for r in rs]
    texts += [body for _, _, _, body in stage1]
    return task, splits, stage2, stage1, texts


def encode(tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
    return tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]


def pad(rows: list[list[int]], value: int):
    import torch

    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows])


def forward_loss(model, inputs: list[list[int]], targets: list[list[int]], pad_id: int):
    input_ids = pad(inputs, pad_id)
    labels = pad(targets, -100)
    return model(input_ids=input_ids, attention_mask=input_ids != pad_id, labels=labels).loss


def run_stage(
    model, tokenizer, items, steps: int, args, rng: random.Random, checkpoint=None
) -> float:
    """items: (input ids predict, input ids explain, label ids, list of rationale ids).

    ``checkpoint(step)`` runs every ``--eval-every`` steps (its time is the caller's to count).
    """
    import torch
    from transformers import get_linear_schedule_with_warmup

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, max(1, int(args.warmup * steps)), steps)
    pad_id = tokenizer.pad_token_id
    model.train()
    loss_value = float("nan")
    started = time.perf_counter()
    for step in range(steps):
        batch = rng.sample(items, min(args.batch, len(items)))
        # Predict and explain rows go through separate forwards: padded together, the short
        # labels would be padded to the rationales' length and the decoder would run on that
        # padding (about a third more work per step). Loss = CE(label) + lambda * CE(rationale),
        # each a per-token mean.
        label_loss = forward_loss(model, [b[0] for b in batch], [b[2] for b in batch], pad_id)
        rationale_loss = forward_loss(
            model, [b[1] for b in batch], [rng.choice(b[3]) for b in batch], pad_id
        )
        loss = label_loss + args.lam * rationale_loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = float(loss.detach())
        if checkpoint is not None and args.eval_every and (step + 1) % args.eval_every == 0:
            checkpoint(step + 1)
            model.train()
        if (step + 1) % max(1, steps // 10) == 0 or step + 1 == steps:
            rate = (step + 1) / (time.perf_counter() - started)
            print(
                f"  step {step + 1}/{steps} loss {loss_value:.3f} "
                f"(label {label_loss.item():.3f}, rationale {rationale_loss.item():.3f}) "
                f"{rate:.1f} steps/s",
                flush=True,
            )
    return loss_value


def greedy(model, tokenizer, texts: list[str], max_new_tokens: int, batch: int = 64) -> list[str]:
    import torch

    model.eval()
    out: list[str] = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch):
            enc = tokenizer(texts[start : start + batch], return_tensors="pt", padding=True)
            generated = model.generate(
                **enc, max_new_tokens=max_new_tokens, num_beams=1, do_sample=False
            )
            out += tokenizer.batch_decode(generated, skip_special_tokens=True)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    clock = Clock()

    clock.start("data (splits + simulated teacher)")
    task, splits, stage2, stage1, texts = build_pairs(args)
    clock.stop()

    clock.start("import torch/transformers + tokenizer")
    import torch
    from mindmirror.training.student.tokenizer import train_tokenizer
    from transformers import T5Config, T5ForConditionalGeneration

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    tokenizer = train_tokenizer(texts, vocab_size=args.vocab, model_type=args.tokenizer)
    clock.stop()

    p = DEFAULT_PREFIXES
    questions = [q for q, _, _ in stage2]
    items2 = list(
        zip(
            encode(tokenizer, [p.cot_input(q, "predict") for q in questions], 128),
            encode(tokenizer, [p.cot_input(q, "explain") for q in questions], 128),
            encode(tokenizer, [label for _, label, _ in stage2], 32),
            [encode(tokenizer, rs, 96) for _, _, rs in stage2],
            strict=True,
        )
    )
    lengths = {
        "input": sum(len(i[0]) for i in items2) / len(items2),
        "label": sum(len(i[2]) for i in items2) / len(items2),
        "rationale": sum(len(r) for i in items2 for r in i[3]) / sum(len(i[3]) for i in items2),
    }
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=args.d_model,
        d_kv=args.d_model // args.heads,
        d_ff=args.d_ff,
        num_layers=args.layers,
        num_decoder_layers=args.layers,
        num_heads=args.heads,
        dropout_rate=args.dropout,
        feed_forward_proj="gated-gelu",
        decoder_start_token_id=tokenizer.pad_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    model = T5ForConditionalGeneration(config)
    parameters = sum(t.numel() for t in model.parameters())
    print(
        f"model: d_model {args.d_model}, layers {args.layers}+{args.layers}, heads {args.heads}, "
        f"d_ff {args.d_ff}, vocab {len(tokenizer)}, {parameters / 1e6:.2f}M parameters; "
        f"mean tokens: input {lengths['input']:.0f}, label {lengths['label']:.1f}, "
        f"rationale {lengths['rationale']:.0f}",
        flush=True,
    )
    rng = random.Random(args.seed)

    final_stage1 = None
    if args.stage1_steps:
        clock.start("train stage 1 (self-evaluation)")
        items1 = list(
            zip(
                encode(
                    tokenizer, [p.self_eval_input(q, r, "predict") for q, r, _, _ in stage1], 192
                ),
                encode(
                    tokenizer, [p.self_eval_input(q, r, "explain") for q, r, _, _ in stage1], 192
                ),
                encode(tokenizer, [v for _, _, v, _ in stage1], 8),
                [[ids] for ids in encode(tokenizer, [b for _, _, _, b in stage1], 96)],
                strict=True,
            )
        )
        final_stage1 = run_stage(model, tokenizer, items1, args.stage1_steps, args, rng)
        clock.stop()

    curve: list[tuple[int, float]] = []
    checkpoint_seconds = [0.0, 0.0]

    def checkpoint(step: int) -> None:
        wall, cpu = time.perf_counter(), cpu_seconds()
        probe = splits["test"][:200]
        answers = greedy(model, tokenizer, [p.cot_input(t.question, "predict") for t in probe], 24)
        correct = sum(
            task.is_correct(task.read_label(a), t.label)
            for a, t in zip(answers, probe, strict=True)
        )
        curve.append((step, correct / len(probe)))
        print(f"  checkpoint step {step}: accuracy {correct / len(probe):.3f} on 200", flush=True)
        checkpoint_seconds[0] += time.perf_counter() - wall
        checkpoint_seconds[1] += cpu_seconds() - cpu

    clock.start("train stage 2 (CoT)")
    final_loss = run_stage(model, tokenizer, items2, args.steps, args, rng, checkpoint)
    phase = clock.stop()
    phase.wall -= checkpoint_seconds[0]  # the probes are not training time
    phase.cpu -= checkpoint_seconds[1]

    clock.start("evaluate (greedy, test split)")
    test = splits["test"]
    predictions = greedy(model, tokenizer, [p.cot_input(t.question, "predict") for t in test], 24)
    right = [
        task.is_correct(task.read_label(pred), t.label)
        for pred, t in zip(predictions, test, strict=True)
    ]
    accuracy = sum(right) / len(test)
    by_steps = {1: [], 2: []}
    for ok, problem in zip(right, test, strict=True):
        by_steps[len(equation_ops(problem.equation))].append(ok)
    sample_explain = greedy(
        model, tokenizer, [p.cot_input(t.question, "explain") for t in test[:3]], 64
    )
    clock.stop()

    total_wall = sum(phase.wall for phase in clock.phases)
    total_cpu = sum(phase.cpu for phase in clock.phases)
    print("\nexamples:")
    for problem, pred, explanation in zip(test[:3], predictions, sample_explain, strict=False):
        print(f"  Q: {problem.question!r}\n     gold {problem.label} | predict {pred!r}")
        print(f"     explain {explanation!r}")
    print("\nphases (wall s / CPU s):")
    for phase in clock.phases:
        print(f"  {phase.name:40s} {phase.wall:7.1f} / {phase.cpu:7.1f}")
    print(f"  {'total':40s} {total_wall:7.1f} / {total_cpu:7.1f}")
    one = sum(by_steps[1]) / max(1, len(by_steps[1]))
    two = sum(by_steps[2]) / max(1, len(by_steps[2]))
    half_width = 1.96 * math.sqrt(max(accuracy * (1 - accuracy), 1e-9) / len(test))
    print(
        f"\ntest accuracy {accuracy:.3f} ± {half_width:.3f} (95%) on {len(test)} problems "
        f"(one-step {one:.3f}, two-step {two:.3f}); final loss {final_loss:.3f}"
    )
    result = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "vocab": len(tokenizer),
        "parameters": parameters,
        "mean_tokens": lengths,
        "accuracy": accuracy,
        "accuracy_one_step": one,
        "accuracy_two_step": two,
        "final_loss": final_loss,
        "final_stage1_loss": final_stage1,
        "curve": curve,
        "phases": [vars(phase) for phase in clock.phases],
        "total_wall_s": total_wall,
        "total_cpu_s": total_cpu,
        "load_average": os.getloadavg(),
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

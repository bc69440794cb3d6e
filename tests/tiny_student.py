"""A tiny, really trained T5 student bundle for tests of every stage.

Random-init T5s tend to emit token 0 forever, which makes generation tests meaningless, so the
bundle is trained for a few hundred steps on a templated arithmetic task until greedy decoding
produces the task's shapes (labels like ``12 + 7``, rationales, verdicts). It is built once per
test session (see ``tests/conftest.py``); building takes well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from mindmirror.student.bundle import GenerationDefaults, Manifest, Provenance
from mindmirror.student.formats import DEFAULT_PREFIXES

NAMES = ("Tom", "Ana", "Li", "Sam", "Eva", "Raj")
THINGS = ("apples", "books", "coins", "cards", "shells")


@dataclass(frozen=True)
class TinyProblem:
    question: str
    label: str  # canonical SVAMP equation
    rationale: str
    wrong_rationale: str  # a plausible wrong chain of thought (other operation)
    wrong_label: str


def make_problems(count: int, seed: int = 0) -> list[TinyProblem]:
    rng = random.Random(seed)
    problems = []
    for _ in range(count):
        name, thing = rng.choice(NAMES), rng.choice(THINGS)
        a, b = rng.randint(10, 60), rng.randint(1, 9)
        if rng.random() < 0.5:
            question = f"{name} has {a} {thing}. {name} gets {b} more.\nHow many {thing} now?"
            label, wrong = f"{a} + {b}", f"{a} - {b}"
            rationale = f"{name} had {a} {thing} and got {b} more, so {a} + {b} = {a + b}."
            wrong_rationale = f"{name} had {a} {thing} and lost {b}, so {a} - {b} = {a - b}."
        else:
            question = f"{name} has {a} {thing}. {name} gives away {b}.\nHow many {thing} now?"
            label, wrong = f"{a} - {b}", f"{a} + {b}"
            rationale = f"{name} had {a} {thing} and gave {b} away, so {a} - {b} = {a - b}."
            wrong_rationale = f"{name} had {a} {thing} and got {b}, so {a} + {b} = {a + b}."
        problems.append(TinyProblem(question, label, rationale, wrong_rationale, wrong))
    return problems


def training_pairs(problems: list[TinyProblem]) -> list[tuple[str, str]]:
    """Stage-2 (predict/explain) and stage-1 (evaluate) pairs in the real input formats."""
    p = DEFAULT_PREFIXES
    pairs = []
    for problem in problems:
        right_cot = f"{problem.rationale} The answer is ({problem.label})."
        wrong_cot = f"{problem.wrong_rationale} The answer is ({problem.wrong_label})."
        pairs += [
            (p.cot_input(problem.question, "predict"), problem.label),
            (p.cot_input(problem.question, "explain"), problem.rationale),
            (p.self_eval_input(problem.question, right_cot, "predict"), "correct"),
            (p.self_eval_input(problem.question, wrong_cot, "predict"), "wrong"),
            (p.self_eval_input(problem.question, right_cot, "explain"), "The steps match."),
            (p.self_eval_input(problem.question, wrong_cot, "explain"), "The operation is wrong."),
        ]
    return pairs


def build_tiny_bundle(target: Path, steps: int = 400, seed: int = 0) -> Path:
    """Train a tiny T5 on :func:`make_problems` and save it as a bundle at ``target``."""
    import torch
    from mindmirror.training.student.bundle_io import save_bundle
    from mindmirror.training.student.tokenizer import train_tokenizer
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    problems = make_problems(300, seed)
    pairs = training_pairs(problems)
    tokenizer = train_tokenizer([text for pair in pairs for text in pair], vocab_size=400)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=64,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        dropout_rate=0.0,
        decoder_start_token_id=tokenizer.pad_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    model = T5ForConditionalGeneration(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = random.Random(seed)
    model.train()
    for _ in range(steps):
        batch = rng.sample(pairs, 32)
        inputs = tokenizer([x for x, _ in batch], return_tensors="pt", padding=True)
        labels = tokenizer([y for _, y in batch], return_tensors="pt", padding=True).input_ids
        labels[labels == tokenizer.pad_token_id] = -100
        loss = model(**inputs, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    manifest = Manifest(
        task="svamp",
        self_evaluation=True,
        max_input_length=128,
        max_label_length=16,
        max_rationale_length=48,
        generation=GenerationDefaults(max_new_tokens_predict=16, max_new_tokens_explain=48),
        provenance=Provenance(
            base_model="tiny-t5 (random init, tests/tiny_student.py)",
            teacher="templated test data",
            self_evaluation=True,
            seed=seed,
            training_steps={"tiny": steps},
            final_loss=round(float(loss.detach()), 4),
        ),
    )
    save_bundle(model, tokenizer, manifest, target)
    return target

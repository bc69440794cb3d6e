"""Train a small SentencePiece tokenizer on local text and wrap it as ``T5TokenizerFast``.

Used when a student is trained from scratch (the offline demo, tests): no pretrained T5 can be
downloaded there, and a vocabulary fitted to the task's text keeps sequences short. The result
saves ``tokenizer.json``, which the service reads with the light ``tokenizers`` library.
:func:`write_tokenizer` is the one way a run trains one on its data and saves it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import sentencepiece as spm
from mindmirror.student.bundle import atomic_directory
from mindmirror.student.distillation import DistillationRecord
from mindmirror.student.formats import DEFAULT_PREFIXES, Verdict
from mindmirror.student.tasks import Task
from mindmirror.training.student.examples import cot_reasoning_text
from transformers import T5TokenizerFast

__all__ = ["tokenizer_corpus", "train_tokenizer", "training_texts", "write_tokenizer"]

# T5's conventions: pad 0, eos 1, unk 2. Sentinel tokens are not needed for fine-tuning.
_SPECIALS = {"pad_id": 0, "eos_id": 1, "unk_id": 2, "bos_id": -1}


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 1000,
    extra_ids: int = 0,
    model_type: Literal["unigram", "bpe"] = "unigram",
) -> T5TokenizerFast:
    """Fit a SentencePiece model on ``texts`` and return it as a T5 fast tokenizer.

    Digits are split one per token so that numbers the model has never seen are still
    representable (arithmetic tasks depend on it). The vocabulary may come out smaller than
    ``vocab_size`` on tiny corpora: SentencePiece is told to treat the size as a ceiling.
    ``model_type="bpe"`` suits templated text (the synthetic ``arith`` task): there the unigram
    trainer stops at about 200 pieces and splits common words ("had" -> "ha", "d"), making
    sequences about 1.6 times longer than BPE's whole-word pieces.
    """
    texts = [text for text in texts if text.strip()]
    if not texts:
        raise ValueError("cannot train a tokenizer on no text")
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(t.replace("\n", " ") for t in texts), encoding="utf-8")
        prefix = Path(tmp) / "spiece"
        spm.SentencePieceTrainer.train(
            input=str(corpus),
            model_prefix=str(prefix),
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=1.0,
            split_digits=True,
            hard_vocab_limit=False,
            num_threads=1,
            minloglevel=2,
            **_SPECIALS,
        )
        tokenizer = T5TokenizerFast(
            vocab_file=str(prefix.with_suffix(".model")), extra_ids=extra_ids, legacy=False
        )
        # Materialize the fast tokenizer while the .model file still exists.
        tokenizer.backend_tokenizer  # noqa: B018
    return tokenizer


def training_texts(records: Sequence[DistillationRecord], task: Task) -> list[str]:
    """Every text a student is trained to read or write on ``records``: the prefixes, the
    verdicts, the questions, labels, chains of thought and evaluation rationales."""
    prefixes = DEFAULT_PREFIXES
    texts = [prefixes.predict, prefixes.explain, prefixes.evaluate, prefixes.reasoning]
    texts += [verdict.value for verdict in Verdict]
    for record in records:
        texts.append(record.question)
        if record.label:
            texts.append(record.label)
        example = record.example()
        for cot in record.cots:
            texts.append(cot_reasoning_text(task, cot, example))
            if cot.answer:
                texts.append(cot.answer)
            texts += [evaluation.rationale for evaluation in cot.self_evaluations]
    return texts


def tokenizer_corpus(texts: Iterable[str]) -> list[str]:
    """Deduplicated non-empty texts, in first-seen order (a question appears once per pair)."""
    seen: dict[str, None] = {}
    for text in texts:
        if text and text.strip():
            seen.setdefault(text, None)
    return list(seen)


def write_tokenizer(
    records: Sequence[DistillationRecord],
    task: Task,
    target: str | Path,
    *,
    vocab_size: int,
    model_type: Literal["unigram", "bpe"] = "unigram",
) -> None:
    """Train a tokenizer on the text of ``records`` and save it at ``target``, replacing any
    tokenizer there; written beside it and renamed, so a crash leaves no half-saved one."""
    corpus = tokenizer_corpus(training_texts(records, task))
    tokenizer = train_tokenizer(corpus, vocab_size=vocab_size, model_type=model_type)
    with atomic_directory(target, force=True) as tmp:
        tokenizer.save_pretrained(tmp)

"""The demo at a size CI can afford, shared by the demo's tests (and the subprocess one starts)."""

from __future__ import annotations

from mindmirror.demo.settings import DemoSettings

# Small enough for CI (a micro-sized run of every stage), big enough that each stage does
# real work: 240 problems x 2 CoTs x 1 self-evaluation, a few dozen optimizer steps.
TINY = DemoSettings(
    train=240,
    validation=30,
    test=40,
    steps=30,
    stage1_steps=10,
    batch_size=16,
    vocab_size=400,
    export_examples=12,
    trust_questions=12,
    threads=1,
    port=18431,
    keep_serving=False,
    progress=False,
)

"""Distil a T5 student from a distillation set (stage 1 self-evaluation, stage 2 CoT)."""

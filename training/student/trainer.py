"""The multi-task trainer: ``L = CE(label) + λ·CE(rationale)`` over paired batches.

A subclass of HF's :class:`~transformers.Seq2SeqTrainer`, in the manner of
distilling-step-by-step's ``TaskPrefixTrainer``: each batch holds B pairs, run as one
``predict:`` forward and one ``explain:`` forward, and the two mean token cross-entropies are
combined. Everything else (optimizer, schedule, gradient accumulation, bf16, DDP under
``torchrun``/``accelerate launch``, checkpoints, best-model selection) is the Trainer's own.

Checkpoints hold no pickles: weights are safetensors (``save_safetensors=True``), and the
optimizer, scheduler and RNG states that the Trainer would ``torch.save`` are written with
:mod:`mindmirror.training.student.state_io` instead. ``training_args.bin`` becomes
``training_args.json``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from mindmirror.student.errors import MindmirrorError
from mindmirror.training.student.examples import TrainingPair
from mindmirror.training.student.state_io import load_state, save_state, state_exists
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase, Seq2SeqTrainer, TrainerCallback

__all__ = [
    "EvaluateAtEnd",
    "LossForm",
    "MultiTaskTrainer",
    "PairCollator",
    "PairDataset",
    "combine_losses",
    "make_compute_metrics",
    "uses_rationale",
]

logger = logging.getLogger(__name__)

LossForm = Literal["lambda", "alpha"]
IGNORE_INDEX = -100


def combine_losses(
    label_loss: torch.Tensor,
    rationale_loss: torch.Tensor | None,
    weight: float,
    form: LossForm = "lambda",
) -> torch.Tensor:
    """``CE(label) + λ·CE(rationale)`` (paper), or ``α·CE(label) + (1-α)·CE(rationale)``
    (the authors' released code); ``weight`` is λ or α."""
    if form == "lambda":
        return label_loss if rationale_loss is None else label_loss + weight * rationale_loss
    if form == "alpha":
        if rationale_loss is None:
            return label_loss if weight == 1.0 else weight * label_loss
        return weight * label_loss + (1.0 - weight) * rationale_loss
    raise ValueError(f"loss form must be 'lambda' or 'alpha', not {form!r}")


def uses_rationale(weight: float, form: LossForm) -> bool:
    """False when the rationale term has weight 0: standard distillation, labels only."""
    return weight != 0.0 if form == "lambda" else weight != 1.0


class PairDataset(Dataset):
    """Pairs tokenized once up front (input and both targets, truncated to the max lengths)."""

    def __init__(
        self,
        pairs: Sequence[TrainingPair],
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_input_length: int,
        max_label_length: int,
        max_rationale_length: int,
        with_rationale: bool = True,
        with_index: bool = False,
    ) -> None:
        self.pairs = list(pairs)
        self.with_rationale = with_rationale
        self.with_index = with_index

        def encode(texts: list[str], limit: int) -> tuple[list[list[int]], int]:
            ids = tokenizer(texts, truncation=False, add_special_tokens=True)["input_ids"]
            truncated = sum(len(seq) > limit for seq in ids)
            # Keep the final </s> when cutting, so a truncated target still ends properly.
            eos = tokenizer.eos_token_id
            return [
                seq if len(seq) <= limit else [*seq[: limit - 1], eos] for seq in ids
            ], truncated

        self.pred_inputs, cut_in = encode([p.predict_input for p in self.pairs], max_input_length)
        self.labels, cut_label = encode([p.label for p in self.pairs], max_label_length)
        self.truncated = {"inputs": cut_in, "labels": cut_label, "rationales": 0}
        if with_rationale:
            self.expl_inputs, _ = encode([p.explain_input for p in self.pairs], max_input_length)
            self.rationales, cut_rationale = encode(
                [p.rationale for p in self.pairs], max_rationale_length
            )
            self.truncated["rationales"] = cut_rationale

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {
            "pred_input_ids": self.pred_inputs[index],
            "pred_labels": self.labels[index],
        }
        if self.with_rationale:
            item["expl_input_ids"] = self.expl_inputs[index]
            item["expl_labels"] = self.rationales[index]
        if self.with_index:
            item["index"] = index
        return item


@dataclass
class PairCollator:
    """Pad a list of :class:`PairDataset` items into ``{"pred": ..., "expl": ...}`` batches."""

    pad_token_id: int

    def _pad(self, rows: list[list[int]], value: int) -> torch.Tensor:
        width = max(len(row) for row in rows)
        return torch.tensor([row + [value] * (width - len(row)) for row in rows], dtype=torch.long)

    def _side(self, features: list[dict[str, Any]], prefix: str) -> dict[str, torch.Tensor]:
        input_ids = self._pad([f[f"{prefix}_input_ids"] for f in features], self.pad_token_id)
        return {
            "input_ids": input_ids,
            "attention_mask": (input_ids != self.pad_token_id).long()
            if self.pad_token_id is not None
            else torch.ones_like(input_ids),
            "labels": self._pad([f[f"{prefix}_labels"] for f in features], IGNORE_INDEX),
        }

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = {"pred": self._side(features, "pred")}
        if "expl_input_ids" in features[0]:
            batch["expl"] = self._side(features, "expl")
        if "index" in features[0]:
            batch["index"] = torch.tensor([[f["index"]] for f in features], dtype=torch.long)
        return batch


def make_compute_metrics(
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[TrainingPair],
    judge: Callable[[str, TrainingPair], tuple[bool, bool]],
) -> Callable[[Any], dict[str, float]]:
    """Validation metrics from generated label tokens: ``accuracy`` (judged correct) and
    ``valid`` (parsed as a label at all). Predictions arrive with the pair indices as
    "labels", so gold answers are read from the pairs, not round-tripped through tokens."""

    def compute(prediction: Any) -> dict[str, float]:
        generated = np.asarray(prediction.predictions)
        indices = np.asarray(prediction.label_ids).reshape(len(generated), -1)[:, 0]
        generated = np.where(generated < 0, tokenizer.pad_token_id, generated)
        texts = tokenizer.batch_decode(generated.tolist(), skip_special_tokens=True)
        valid = correct = 0
        for text, index in zip(texts, indices, strict=True):
            is_valid, is_correct = judge(text, pairs[int(index)])
            valid += is_valid
            correct += is_correct
        count = max(len(texts), 1)
        return {"accuracy": correct / count, "valid": valid / count}

    return compute


class EvaluateAtEnd(TrainerCallback):
    """Validate and checkpoint at the last step too, so that the steps after the last regular
    validation can still be selected (``max_steps`` is rarely a multiple of the interval)."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.global_step >= state.max_steps:
            if args.eval_strategy != "no":
                control.should_evaluate = True
            control.should_save = True
        return control


class MultiTaskTrainer(Seq2SeqTrainer):
    """Seq2SeqTrainer whose loss is the predict/explain combination over paired batches."""

    def __init__(
        self,
        *args: Any,
        rationale_weight: float = 0.5,
        loss_form: LossForm = "lambda",
        label_max_new_tokens: int = 32,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            raise MindmirrorError(
                "mindmirror's trainer supports one device or DDP (torchrun / accelerate launch); "
                "DeepSpeed and FSDP are not supported"
            )
        self.rationale_weight = rationale_weight
        self.loss_form = loss_form
        self.label_max_new_tokens = label_max_new_tokens
        # Our loss is a mean per micro-batch, so let the Trainer divide by the accumulation
        # steps (it skips that when it thinks the model normalizes by token counts itself).
        self.model_accepts_loss_kwargs = False
        # Running sums of (CE(label), CE(rationale)) since the last log, kept on the device so
        # that logging them costs no synchronization per step.
        self._component_sum: torch.Tensor | None = None
        self._component_count = 0

    # ----- loss ---------------------------------------------------------------------------
    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        pred_outputs = model(**inputs["pred"])
        expl_outputs = None
        if "expl" in inputs and uses_rationale(self.rationale_weight, self.loss_form):
            expl_outputs = model(**inputs["expl"])
        loss = combine_losses(
            pred_outputs.loss,
            None if expl_outputs is None else expl_outputs.loss,
            self.rationale_weight,
            self.loss_form,
        )
        if model.training:
            parts = [pred_outputs.loss.detach()]
            parts.append(expl_outputs.loss.detach() if expl_outputs is not None else parts[0] * 0)
            stacked = torch.stack(parts)
            self._component_sum = (
                stacked if self._component_sum is None else self._component_sum + stacked
            )
            self._component_count += 1
        if return_outputs:
            return loss, {"pred": pred_outputs, "expl": expl_outputs}
        return loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        # Show the two terms next to the combined loss (this process's view under DDP).
        if "loss" in logs and self._component_sum is not None:
            label_loss, rationale_loss = (self._component_sum / self._component_count).tolist()
            logs["label_loss"] = round(label_loss, 4)
            if uses_rationale(self.rationale_weight, self.loss_form):
                logs["rationale_loss"] = round(rationale_loss, 4)
            self._component_sum, self._component_count = None, 0
        super().log(logs, *args, **kwargs)

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        unwrapped = self.accelerator.unwrap_model(self.model)
        total = 0
        for side in ("pred", "expl"):
            if side in inputs:
                total += unwrapped.floating_point_ops(inputs[side])
        return total

    # ----- validation -----------------------------------------------------------------------
    def prediction_step(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
        **gen_kwargs: Any,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        inputs = self._prepare_inputs(inputs)
        index = inputs.pop("index", None)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs).detach()
        if prediction_loss_only or not self.args.predict_with_generate:
            return loss, None, None
        pred = inputs["pred"]
        with torch.no_grad():
            generated = self.model.generate(
                input_ids=pred["input_ids"],
                attention_mask=pred["attention_mask"],
                max_new_tokens=self.label_max_new_tokens,
                num_beams=1,
                do_sample=False,
            )
        return loss, generated, index

    def _issue_warnings_after_load(self, load_result: Any) -> None:
        # safetensors stores T5's shared embedding once, so the encoder/decoder copies are
        # "missing" from every checkpoint; they are tied to it, not lost. Warn about the rest.
        tied = set(getattr(self.model, "_tied_weights_keys", None) or [])
        missing = [key for key in load_result.missing_keys if key not in tied]
        if len(missing) != len(load_result.missing_keys):
            self.model.tie_weights()
        super()._issue_warnings_after_load(load_result._replace(missing_keys=missing))

    # ----- pickle-free checkpoints --------------------------------------------------------
    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        model.save_pretrained(output_dir, state_dict=state_dict, safe_serialization=True)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        Path(output_dir, "training_args.json").write_text(
            self.args.to_json_string(), encoding="utf-8"
        )

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        if self.args.should_save:
            save_state(self.optimizer.state_dict(), output_dir, "optimizer")
            save_state(self.lr_scheduler.state_dict(), output_dir, "scheduler")

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        if checkpoint is None:
            return
        if not (state_exists(checkpoint, "optimizer") and state_exists(checkpoint, "scheduler")):
            logger.warning("%s has no optimizer/scheduler state; they start fresh", checkpoint)
            return
        device = self.args.device if self.args.world_size > 1 else "cpu"
        self.optimizer.load_state_dict(load_state(checkpoint, "optimizer", device))
        self.lr_scheduler.load_state_dict(load_state(checkpoint, "scheduler"))

    def _rng_name(self) -> str:
        return f"rng_state_{self.args.process_index}" if self.args.world_size > 1 else "rng_state"

    def _save_rng_state(self, output_dir: str) -> None:
        import random

        states: dict[str, Any] = {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "cpu": torch.random.get_rng_state(),
        }
        if torch.cuda.is_available():
            states["cuda"] = torch.cuda.random.get_rng_state_all()
        save_state(states, output_dir, self._rng_name())

    def _load_rng_state(self, checkpoint: str | None) -> None:
        import random

        if checkpoint is None or not state_exists(checkpoint, self._rng_name()):
            return
        states = load_state(checkpoint, self._rng_name())
        random.setstate(states["python"])
        np.random.set_state(states["numpy"])
        torch.random.set_rng_state(states["cpu"])
        if torch.cuda.is_available() and "cuda" in states:
            cuda_states = states["cuda"]
            if len(cuda_states) == torch.cuda.device_count():
                torch.cuda.random.set_rng_state_all(cuda_states)


def read_trainer_state(checkpoint: str | Path) -> dict[str, Any]:
    return json.loads(Path(checkpoint, "trainer_state.json").read_text(encoding="utf-8"))

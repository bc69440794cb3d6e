import random
from pathlib import Path

import numpy as np
import pytest
import torch
from mindmirror.training.student.examples import TrainingPair
from mindmirror.training.student.state_io import load_state, save_state
from mindmirror.training.student.tokenizer import train_tokenizer
from mindmirror.training.student.trainer import (
    MultiTaskTrainer,
    PairCollator,
    PairDataset,
    combine_losses,
    uses_rationale,
)
from transformers import Seq2SeqTrainingArguments, T5Config, T5ForConditionalGeneration

PAIRS = [
    TrainingPair("a", "cot", "predict: Tom has 5 apples", "5 + 3", "explain: Tom has 5 apples",
                 "Tom had 5 and got 3, so 5 + 3 = 8."),
    TrainingPair("b", "cot", "predict: Ana has 9 pens and gives 4 away", "9 - 4",
                 "explain: Ana has 9 pens and gives 4 away", "9 - 4 = 5."),
    TrainingPair("c", "self_evaluation", "predict: evaluate: q\nreasoning: r", "wrong",
                 "explain: evaluate: q\nreasoning: r", "The operation is wrong here."),
]  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer():
    texts = [t for p in PAIRS for t in (p.predict_input, p.label, p.explain_input, p.rationale)]
    return train_tokenizer(texts * 3, vocab_size=120)


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=2,
        dropout_rate=0.0, decoder_start_token_id=tokenizer.pad_token_id,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    return T5ForConditionalGeneration(config).eval()


def _trainer(model, tokenizer, tmp_path: Path, **kwargs) -> MultiTaskTrainer:
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    return MultiTaskTrainer(model=model, args=args, processing_class=tokenizer, **kwargs)


def _batch(tokenizer, with_rationale=True):
    dataset = PairDataset(
        PAIRS, tokenizer, max_input_length=64, max_label_length=8, max_rationale_length=32,
        with_rationale=with_rationale,
    )  # fmt: skip
    return PairCollator(tokenizer.pad_token_id)([dataset[i] for i in range(len(dataset))])


def _hand_ce(model, side) -> torch.Tensor:
    """Token cross-entropy computed from scratch: teacher forcing with the labels shifted
    right behind the decoder start token, mean of -log p over the non-padding targets."""
    labels = side["labels"]
    start = torch.full((labels.shape[0], 1), model.config.decoder_start_token_id)
    decoder_input = torch.cat([start, labels[:, :-1]], dim=1)
    decoder_input = decoder_input.masked_fill(decoder_input == -100, model.config.pad_token_id)
    logits = model(
        input_ids=side["input_ids"],
        attention_mask=side["attention_mask"],
        decoder_input_ids=decoder_input,
    ).logits
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    total, count = 0.0, 0
    for row in range(labels.shape[0]):
        for position in range(labels.shape[1]):
            target = int(labels[row, position])
            if target != -100:
                total -= float(log_probs[row, position, target])
                count += 1
    return torch.tensor(total / count)


def test_collator_pads_inputs_and_masks_targets(tokenizer) -> None:
    batch = _batch(tokenizer)
    for side in ("pred", "expl"):
        ids, mask, labels = (batch[side][k] for k in ("input_ids", "attention_mask", "labels"))
        assert ids.shape[0] == labels.shape[0] == 3
        assert torch.equal(mask, (ids != tokenizer.pad_token_id).long())
        assert (labels == -100).any()  # shorter targets padded with the ignore index
        assert not (labels == tokenizer.pad_token_id).any()
    # every target ends with </s>
    for row in batch["pred"]["labels"]:
        assert int(row[row != -100][-1]) == tokenizer.eos_token_id


@pytest.mark.parametrize(("weight", "form"), [(0.5, "lambda"), (2.0, "lambda"), (0.3, "alpha")])
def test_loss_is_label_ce_plus_weighted_rationale_ce(model, tokenizer, tmp_path, weight, form):
    batch = _batch(tokenizer)
    trainer = _trainer(model, tokenizer, tmp_path, rationale_weight=weight, loss_form=form)
    with torch.no_grad():
        loss = trainer.compute_loss(model, batch)
        label_ce, rationale_ce = _hand_ce(model, batch["pred"]), _hand_ce(model, batch["expl"])
    if form == "lambda":
        expected = label_ce + weight * rationale_ce
    else:
        expected = weight * label_ce + (1 - weight) * rationale_ce
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert label_ce > 0
    assert rationale_ce > 0


def test_labels_only_skips_the_explain_forward(model, tokenizer, tmp_path) -> None:
    batch = _batch(tokenizer)
    trainer = _trainer(model, tokenizer, tmp_path, rationale_weight=0.0)
    calls = []
    handle = model.register_forward_hook(lambda *args: calls.append(1))
    try:
        with torch.no_grad():
            loss = trainer.compute_loss(model, batch)
    finally:
        handle.remove()
    assert len(calls) == 1
    with torch.no_grad():
        assert float(loss) == pytest.approx(float(_hand_ce(model, batch["pred"])), rel=1e-5)
    assert not uses_rationale(0.0, "lambda")
    assert not uses_rationale(1.0, "alpha")
    assert combine_losses(torch.tensor(2.0), None, 1.0, "alpha") == 2.0


def test_training_state_round_trips_without_pickle(tmp_path: Path) -> None:
    layer = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=0.01)
    layer(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    state = {
        "optimizer": optimizer.state_dict(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "cpu": torch.random.get_rng_state(),
    }
    save_state(state, tmp_path, "state")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "state.safetensors"]
    loaded = load_state(tmp_path, "state")
    assert loaded["python"] == state["python"]
    assert np.array_equal(loaded["numpy"][1], state["numpy"][1])
    assert torch.equal(loaded["cpu"], state["cpu"])
    restored = torch.optim.AdamW(layer.parameters(), lr=0.5)
    restored.load_state_dict(loaded["optimizer"])
    before, after = optimizer.state_dict(), restored.state_dict()
    assert after["param_groups"] == before["param_groups"]
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(after["state"][0][key], before["state"][0][key])

"""The one decoding loop, on a random tiny T5's ONNX export: both cache strategies, against
transformers' ``generate``, sampling, budgets, cancellation and the step observer."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from mindmirror.engine.decoding import Generation, Row, Sampler, cut_after_eos, pad_rows
from mindmirror.engine.ids import ModelIds, read_model_ids
from mindmirror.engine.onnx import OnnxSeq2Seq

from tests.engine.conftest import EOS, PAD

#: inputs of different lengths (padding differs per batch), each ending in the end token
INPUTS = [
    [12, 40, 7, 9, 3, EOS],
    [5, 88, 61, 23, 70, 14, 30, 2, 77, EOS],
    [44, 9, EOS],
    [19, 3, 52, 65, 8, 31, 90, 11, 47, 6, 28, 72, EOS],
]
#: temperature for sampling tests: this model's logits are steep (std ~70)
HOT = 30.0


@pytest.fixture(scope="module")
def ids(random_t5: Path) -> ModelIds:
    return read_model_ids(random_t5)


@pytest.fixture(scope="module")
def host(random_t5: Path, ids: ModelIds) -> OnnxSeq2Seq:
    return OnnxSeq2Seq.load(random_t5 / "onnx", ids)


@pytest.fixture(scope="module")
def device(random_t5: Path, ids: ModelIds) -> OnnxSeq2Seq:
    return OnnxSeq2Seq.load(random_t5 / "onnx", ids, io_binding=True)


def rows(budget: int = 12, **kwargs) -> list[Row]:
    return [Row(list(ids), budget, **kwargs) for ids in INPUTS]


def mid_row_token(model: OnnxSeq2Seq) -> tuple[int, int]:
    """A token row 1 first produces at step >= 2 (and the step): as end token it ends row 1
    there and leaves rows that never produce it running."""
    tokens = model.generate(rows())[1].tokens
    step = next(i for i in range(2, len(tokens)) if tokens[i] not in tokens[:i])
    return tokens[step], step


def with_end_token(model: OnnxSeq2Seq, eos: int) -> OnnxSeq2Seq:
    """The same sessions with another end token: lets a random model's rows end early."""
    ids = dataclasses.replace(model.ids, eos=eos)
    return OnnxSeq2Seq(model.encoder, model.decoder, ids, io_binding=model.io_binding)


def test_strategies_are_what_the_device_implies(host: OnnxSeq2Seq, device: OnnxSeq2Seq) -> None:
    assert (host.device, host.io_binding) == ("cpu", False)
    assert (device.device, device.io_binding) == ("cpu", True)


def test_host_and_device_strategies_give_identical_tokens(
    host: OnnxSeq2Seq, device: OnnxSeq2Seq
) -> None:
    greedy = host.generate(rows())
    assert device.generate(rows()) == greedy
    assert {g.finish for g in greedy} == {"length"}
    # Rows that end at different steps (the end token is one the model produces mid-row) and
    # sampled rows ride the same way in both.
    eos, _ = mid_row_token(host)
    ended_host = with_end_token(host, eos).generate(rows())
    assert ended_host == with_end_token(device, eos).generate(rows())
    assert "eos" in {g.finish for g in ended_host}
    sampled = rows(temperature=HOT, top_k=20, seed=4)
    assert host.generate(sampled) == device.generate(rows(temperature=HOT, top_k=20, seed=4))


@pytest.mark.parametrize("strategy", ["host", "device"])
def test_greedy_equals_transformers_generate(
    random_t5: Path, host: OnnxSeq2Seq, device: OnnxSeq2Seq, strategy: str
) -> None:
    import torch
    from transformers import T5ForConditionalGeneration

    model = T5ForConditionalGeneration.from_pretrained(random_t5).eval()
    engine = host if strategy == "host" else device
    # An end token the model emits in some rows but not others, so both stops are compared.
    eos, _ = mid_row_token(engine)
    engine = with_end_token(engine, eos)
    input_ids, attention_mask = pad_rows(rows(), PAD)
    with torch.inference_mode():
        sequences = model.generate(
            input_ids=torch.from_numpy(input_ids),
            attention_mask=torch.from_numpy(attention_mask),
            generation_config=engine.ids.greedy_config(12),
            use_model_defaults=False,
        )
    expected = [cut_after_eos(row, eos) for row in sequences[:, 1:].tolist()]
    produced = engine.generate(rows())
    assert [g.with_end(eos) for g in produced] == expected
    assert {g.finish for g in produced} == {"eos", "length"}


def test_seeded_sampling_is_reproducible_and_per_row(host: OnnxSeq2Seq) -> None:
    first = host.generate(rows(temperature=HOT, seed=11))
    assert host.generate(rows(temperature=HOT, seed=11)) == first
    assert host.generate(rows(temperature=HOT, seed=12)) != first
    assert first != host.generate(rows()), "sampling never left the greedy path"
    # A row's sample depends on its own seed only, not on the rows batched with it.
    alone = host.generate([Row(list(INPUTS[3]), 12, temperature=HOT, seed=11)])
    assert alone == [first[3]]
    others = [Row(list(INPUTS[0]), 5), Row(list(INPUTS[2]), 12, temperature=HOT, seed=99)]
    mixed = host.generate([*others, Row(list(INPUTS[3]), 12, temperature=HOT, seed=11)])
    assert mixed[2] == first[3]
    # top_k=1 is greedy whatever the temperature.
    assert host.generate(rows(temperature=HOT, top_k=1, seed=3)) == host.generate(rows())


@pytest.mark.parametrize("strategy", ["host", "device"])
def test_cancellation_stops_a_row_at_the_next_step(
    host: OnnxSeq2Seq, device: OnnxSeq2Seq, strategy: str
) -> None:
    engine = host if strategy == "host" else device
    reference = engine.generate(rows())
    batch = rows()
    seen: list[list[int]] = []

    def cancel_row_2_during_step_3(step: int, live: np.ndarray, logits: np.ndarray) -> None:
        seen.append(live.tolist())
        if step == 3:
            batch[2].cancelled.set()

    batch[0].cancelled.set()  # cancelled before the batch ran: never reaches the model
    out = engine.generate(batch, observer=cancel_row_2_during_step_3)
    assert out[0] == Generation([], "cancelled")
    assert out[2] == Generation(reference[2].tokens[:3], "cancelled")
    assert [out[1], out[3]] == [reference[1], reference[3]]
    assert seen[:4] == [[1, 2, 3]] * 4
    assert seen[4:] == [[1, 3]] * (len(seen) - 4)


@pytest.mark.parametrize("strategy", ["host", "device"])
def test_rows_keep_their_own_budgets(host: OnnxSeq2Seq, device: OnnxSeq2Seq, strategy: str) -> None:
    engine = host if strategy == "host" else device
    reference = engine.generate(rows())
    budgets = [1, 12, 4, 0]
    live_rows: list[list[int]] = []
    out = engine.generate(
        [Row(list(ids), budget) for ids, budget in zip(INPUTS, budgets, strict=True)],
        observer=lambda step, live, logits: live_rows.append(live.tolist()),
    )
    assert [g.tokens for g in out] == [
        r.tokens[:b] for r, b in zip(reference, budgets, strict=True)
    ]
    assert [g.finish for g in out] == ["length"] * 4
    # Finished rows leave: the observer sees only the rows that still run.
    assert live_rows[0] == [0, 1, 2]
    assert live_rows[1:4] == [[1, 2]] * 3
    assert live_rows[4:] == [[1]] * 8


def test_min_new_tokens_holds_the_end_token_back(host: OnnxSeq2Seq) -> None:
    eos, step = mid_row_token(host)
    engine = with_end_token(host, eos)
    early = engine.generate(rows())
    assert early[1] == Generation(host.generate(rows())[1].tokens[:step], "eos")
    forced = engine.generate(rows(min_new_tokens=12))
    assert [len(g.tokens) for g in forced] == [12] * 4
    assert all(eos not in g.tokens for g in forced)


@pytest.mark.parametrize("strategy", ["host", "device"])
def test_step_observer_sees_every_steps_logits(
    random_t5: Path, host: OnnxSeq2Seq, device: OnnxSeq2Seq, strategy: str
) -> None:
    import torch
    from transformers import T5ForConditionalGeneration

    engine = host if strategy == "host" else device
    model = T5ForConditionalGeneration.from_pretrained(random_t5).eval()
    input_ids, attention_mask = pad_rows(rows(), PAD)
    with torch.inference_mode():
        out = model.generate(
            input_ids=torch.from_numpy(input_ids),
            attention_mask=torch.from_numpy(attention_mask),
            generation_config=engine.ids.greedy_config(12),
            use_model_defaults=False,
            return_dict_in_generate=True,
            output_logits=True,
        )
    reference = torch.stack(out.logits, dim=1).numpy()  # rows x steps x vocab
    steps: list[int] = []

    def compare(step: int, live: np.ndarray, logits: np.ndarray) -> None:
        steps.append(step)
        assert logits.shape == (len(live), engine.ids.vocab_size)
        np.testing.assert_allclose(logits, reference[live, step], atol=1e-3, rtol=1e-4)

    engine.generate(rows(), observer=compare)
    assert steps == list(range(12))


def test_sampler_rules_without_a_model() -> None:
    logits = np.array([[0.0, 5.0, 4.9, -1.0], [3.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    live = np.array([0, 1])
    greedy = Sampler([Row([2], 4), Row([2], 4)], eos=0)
    assert greedy.choose(0, logits, live).tolist() == [1, 0]
    # min_new_tokens: the end token (0) is not chosen before step 2, for that row only.
    held = Sampler([Row([2], 4), Row([2], 4, min_new_tokens=2)], eos=0)
    assert held.choose(1, logits, live).tolist() == [1, 1]
    assert held.choose(2, logits, live).tolist() == [1, 0]
    # top-k sampling draws among the k best only, reproducibly per seed.
    draws = [
        Sampler([Row([2], 4, temperature=100.0, top_k=2, seed=s)], eos=3).choose(
            0, logits[:1], np.array([0])
        )[0]
        for s in range(40)
    ]
    assert set(draws) == {1, 2}
    again = [
        Sampler([Row([2], 4, temperature=100.0, top_k=2, seed=s)], eos=3).choose(
            0, logits[:1], np.array([0])
        )[0]
        for s in range(40)
    ]
    assert draws == again


def test_pad_rows_and_cut_after_eos() -> None:
    input_ids, mask = pad_rows([Row([5, 6, 1], 2), Row([7, 1], 2)], pad=0)
    assert input_ids.tolist() == [[5, 6, 1], [7, 1, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert cut_after_eos([4, 1, 0, 0], eos=1) == [4, 1]
    assert cut_after_eos([4, 5], eos=1) == [4, 5]
    assert Generation([4], "eos").with_end(1) == [4, 1]
    assert Generation([4], "length").with_end(1) == [4]


# ----- forced tokens ----------------------------------------------------------------------------
class ScriptedForcer:
    """Forces ``ids`` once the row has generated ``after`` tokens; records every call."""

    def __init__(self, after: int, ids: list[int]) -> None:
        self.after, self.ids = after, ids
        self.calls: list[int] = []

    def __call__(self, generated) -> list[int]:
        self.calls.append(len(generated))
        return list(self.ids) if len(generated) == self.after else []


@pytest.mark.parametrize("strategy", ["host", "device"])
def test_forced_tokens_replace_the_choice_and_the_decoder_goes_on_from_them(
    random_t5: Path, host: OnnxSeq2Seq, device: OnnxSeq2Seq, strategy: str
) -> None:
    import torch
    from transformers import T5ForConditionalGeneration

    engine = host if strategy == "host" else device
    reference = engine.generate(rows())
    batch = rows()
    forcer = ScriptedForcer(2, [5, 6, 7])
    batch[1].forcer = forcer
    out = engine.generate(batch)
    tokens = out[1].tokens
    assert tokens[:5] == [*reference[1].tokens[:2], 5, 6, 7]
    assert tokens != reference[1].tokens
    # Consulted after each appended token, not while its forced ids were queued, nor after the
    # last token its budget allows.
    assert forcer.calls == [1, 2, 5, 6, 7, 8, 9, 10, 11]
    assert [out[i] for i in (0, 2, 3)] == [reference[i] for i in (0, 2, 3)]
    # Exact: after the forced ids the row decodes as a decoder started from that prefix does.
    model = T5ForConditionalGeneration.from_pretrained(random_t5).eval()
    with torch.inference_mode():
        continued = model.generate(
            input_ids=torch.tensor([INPUTS[1]]),
            decoder_input_ids=torch.tensor([[engine.ids.decoder_start, *tokens[:5]]]),
            generation_config=engine.ids.greedy_config(12 - 5),
            use_model_defaults=False,
        )
    assert continued[0, 6:].tolist() == tokens[5:]


def test_forced_tokens_count_towards_the_budget_and_may_end_the_row(host: OnnxSeq2Seq) -> None:
    reference = host.generate(rows())
    short = Row(list(INPUTS[0]), 4, forcer=ScriptedForcer(2, [5, 6, 7]))
    assert host.generate([short]) == [Generation([*reference[0].tokens[:2], 5, 6], "length")]
    ended = Row(list(INPUTS[0]), 12, forcer=ScriptedForcer(3, [8, EOS, 9]))
    assert host.generate([ended]) == [Generation([*reference[0].tokens[:3], 8], "eos")]
    assert host.generate([Row(list(INPUTS[0]), 12, forcer=lambda ids: [])]) == [reference[0]]


def test_a_seeded_row_with_a_forcer_is_repeatable_and_keeps_its_stream(
    host: OnnxSeq2Seq,
) -> None:
    def sampled(forcer=None) -> Row:
        return Row(list(INPUTS[3]), 12, temperature=HOT, seed=11, forcer=forcer)

    free = host.generate([sampled()])[0].tokens
    first = host.generate([sampled(ScriptedForcer(3, [5]))])[0].tokens
    assert host.generate([sampled(ScriptedForcer(3, [5]))])[0].tokens == first
    assert first[:4] == [*free[:3], 5]
    # A forced step still spends its draw: forcing what the row would have sampled anyway
    # leaves every later sample as it was.
    assert host.generate([sampled(ScriptedForcer(3, [free[3]]))])[0].tokens == free
    # Alone or batched with others, the same draws.
    mixed = host.generate([Row(list(INPUTS[0]), 5), sampled(ScriptedForcer(3, [5]))])
    assert mixed[1].tokens == first

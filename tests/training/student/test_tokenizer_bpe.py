from mindmirror.student.formats import DEFAULT_PREFIXES
from mindmirror.student.tasks.arith import generate_problems
from mindmirror.training.student.tokenizer import train_tokenizer
from transformers import T5TokenizerFast


def _texts() -> list[str]:
    problems = generate_problems(400, seed=0)
    return [DEFAULT_PREFIXES.cot_input(p.question, "predict") for p in problems] + [
        p.label for p in problems
    ]


def test_bpe_keeps_templated_words_whole_and_round_trips(tmp_path) -> None:
    texts = _texts()
    bpe = train_tokenizer(texts, vocab_size=600, model_type="bpe")
    unigram = train_tokenizer(texts, vocab_size=600)
    sample = "Sam had some stamps. He found 15 more and now has 21 stamps."
    tokens = bpe.tokenize(sample)
    assert "▁had" in tokens
    assert "▁stamps" in tokens
    assert [t.strip("▁") for t in tokens if t.strip("▁").isdigit()] == ["1", "5", "2", "1"]
    # On templated text BPE gives markedly shorter sequences than unigram.
    bpe_length = sum(len(bpe(t).input_ids) for t in texts)
    unigram_length = sum(len(unigram(t).input_ids) for t in texts)
    assert bpe_length < 0.85 * unigram_length
    bpe.save_pretrained(tmp_path)
    reloaded = T5TokenizerFast.from_pretrained(tmp_path)
    label = "( 10 + 9 ) - 17"
    assert reloaded.decode(reloaded(label).input_ids, skip_special_tokens=True) == label
    assert reloaded.pad_token_id == 0
    assert reloaded.eos_token_id == 1


def test_write_tokenizer_trains_on_the_run_text_and_replaces_atomically(tmp_path) -> None:
    from mindmirror.student.formats import Verdict
    from mindmirror.student.tasks import get_task
    from mindmirror.training.student.tokenizer import training_texts, write_tokenizer

    from tests.training.student.conftest import arith_distillation_set

    records = arith_distillation_set("train", train=20)
    task = get_task("arith")
    texts = training_texts(records, task)
    assert {DEFAULT_PREFIXES.predict, DEFAULT_PREFIXES.evaluate} <= set(texts)
    assert {verdict.value for verdict in Verdict} <= set(texts)
    assert records[0].question in texts
    target = tmp_path / "tokenizer"
    target.mkdir()
    (target / "stale.txt").write_text("from an older run")
    write_tokenizer(records, task, target, vocab_size=300, model_type="bpe")
    assert (target / "tokenizer.json").is_file()
    assert not (target / "stale.txt").exists()  # replaced, not merged
    assert [p.name for p in tmp_path.iterdir()] == ["tokenizer"]  # no temporary left behind
    saved = T5TokenizerFast.from_pretrained(target)
    assert saved.tokenize("apples")  # usable

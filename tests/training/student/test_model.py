from pathlib import Path

import pytest
from mindmirror.training.student.model import (
    StudentModelError,
    load_pretrained_tokenizer,
    load_student_model,
    resolve_student,
)
from mindmirror.training.student.tokenizer import train_tokenizer
from transformers import GPT2Config, T5Config, T5ForConditionalGeneration


def _tiny_t5() -> T5ForConditionalGeneration:
    return T5ForConditionalGeneration(
        T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2)
    )


def test_resolve_student_kinds(tmp_path: Path) -> None:
    assert resolve_student("scratch:tiny").scratch == "tiny"
    assert resolve_student("google/t5-v1_1-base").local_dir is None
    assert resolve_student(str(tmp_path)).local_dir == tmp_path
    with pytest.raises(StudentModelError, match="unknown from-scratch size 'huge'"):
        resolve_student("scratch:huge")
    with pytest.raises(StudentModelError, match="directory not found"):
        resolve_student(str(tmp_path / "missing"))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(StudentModelError, match="is a file"):
        resolve_student(str(tmp_path / "weights.bin"))


def test_local_t5_directory_loads(tmp_path: Path) -> None:
    _tiny_t5().save_pretrained(tmp_path, safe_serialization=True)
    train_tokenizer(["a few words of text", "and some more"], vocab_size=40).save_pretrained(
        tmp_path
    )
    source = resolve_student(str(tmp_path))
    model = load_student_model(source, dropout=0.0)
    assert isinstance(model, T5ForConditionalGeneration)
    assert model.config.dropout_rate == 0.0
    assert load_pretrained_tokenizer(source).eos_token_id == 1


def test_not_t5_is_refused(tmp_path: Path) -> None:
    GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(tmp_path)
    with pytest.raises(StudentModelError, match=r"not a T5 checkpoint \(model_type 'gpt2'"):
        load_student_model(resolve_student(str(tmp_path)))


def test_pickled_weights_are_refused(tmp_path: Path) -> None:
    # A checkpoint with only pytorch_model.bin: loading it would unpickle, which we never do.
    _tiny_t5().save_pretrained(tmp_path, safe_serialization=False)
    assert not (tmp_path / "model.safetensors").exists()
    with pytest.raises(StudentModelError, match="only model.safetensors"):
        load_student_model(resolve_student(str(tmp_path)))


def test_directory_without_config_and_uncached_hub_name(tmp_path: Path) -> None:
    with pytest.raises(StudentModelError, match="holds no config.json"):
        load_student_model(resolve_student(str(tmp_path)))
    # Tests run with HF_HUB_OFFLINE=1: a hub name that is not cached must say so clearly.
    with pytest.raises(StudentModelError, match="not in the Hugging Face cache"):
        load_student_model(resolve_student("mindmirror-tests/no-such-model"))

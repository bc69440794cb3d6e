from pathlib import Path

from mindmirror.student.bundle import load_manifest
from mindmirror.student.formats import DEFAULT_PREFIXES
from mindmirror.training.student.bundle_io import load_student

from tests.tiny_student import make_problems


def test_tiny_bundle_is_trained_and_verified(tiny_bundle: Path) -> None:
    manifest = load_manifest(tiny_bundle)
    assert "model.safetensors" in manifest.files
    assert "tokenizer.json" in manifest.files
    model, tokenizer, _ = load_student(tiny_bundle)
    problem = make_problems(1, seed=123)[0]
    ids = tokenizer(
        DEFAULT_PREFIXES.cot_input(problem.question, "predict"), return_tensors="pt"
    ).input_ids
    text = tokenizer.decode(model.generate(ids, max_new_tokens=16)[0], skip_special_tokens=True)
    # Trained, not random: the answer has the equation shape "<a> <op> <b>".
    assert text.split()[1] in "+-", text

import json
from pathlib import Path

import pytest
from mindmirror.student.bundle import (
    MANIFEST_NAME,
    BundleError,
    Manifest,
    atomic_directory,
    load_manifest,
    write_manifest,
)


def _make_bundle(root: Path) -> Manifest:
    root.mkdir(parents=True)
    (root / "model.safetensors").write_bytes(b"weights")
    (root / "onnx").mkdir()
    (root / "onnx" / "encoder_model.onnx").write_bytes(b"graph")
    return write_manifest(root, Manifest(task="svamp"))


def test_manifest_records_every_file(tmp_path: Path) -> None:
    manifest = _make_bundle(tmp_path / "b")
    assert set(manifest.files) == {"model.safetensors", "onnx/encoder_model.onnx"}
    assert load_manifest(tmp_path / "b").files == manifest.files


def test_files_under_hidden_directories_are_not_part_of_the_bundle(tmp_path: Path) -> None:
    """Staging directories (an interrupted export's ``.export-*``) never enter the checksums."""
    root = tmp_path / "b"
    _make_bundle(root)
    (root / ".export-abc" / "onnx").mkdir(parents=True)
    (root / ".export-abc" / "onnx" / "encoder_model.onnx").write_bytes(b"half written")
    (root / ".export.lock").write_bytes(b"")
    manifest = write_manifest(root, load_manifest(root))
    assert set(manifest.files) == {"model.safetensors", "onnx/encoder_model.onnx"}


def test_tampered_file_is_refused(tmp_path: Path) -> None:
    _make_bundle(tmp_path / "b")
    (tmp_path / "b" / "onnx" / "encoder_model.onnx").write_bytes(b"evil")
    with pytest.raises(BundleError, match="checksum mismatch for onnx/encoder_model.onnx"):
        load_manifest(tmp_path / "b")
    # A reader that checks only another part still loads.
    assert load_manifest(tmp_path / "b", verify="model").task == "svamp"


def test_missing_file_is_refused(tmp_path: Path) -> None:
    _make_bundle(tmp_path / "b")
    (tmp_path / "b" / "model.safetensors").unlink()
    with pytest.raises(
        BundleError, match="model.safetensors is listed in the manifest but missing"
    ):
        load_manifest(tmp_path / "b")


def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not found"):
        load_manifest(tmp_path / "nothing")
    (tmp_path / "dir").mkdir()
    with pytest.raises(BundleError, match="mindmirror.json is missing"):
        load_manifest(tmp_path / "dir")


def test_newer_format_is_refused(tmp_path: Path) -> None:
    _make_bundle(tmp_path / "b")
    path = tmp_path / "b" / MANIFEST_NAME
    data = json.loads(path.read_text())
    data["format_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match="format version 99"):
        load_manifest(tmp_path / "b")


def test_atomic_directory_keeps_target_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with atomic_directory(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(FileExistsError, match="--force"), atomic_directory(target):
        pass

    def write_then_die() -> None:
        with atomic_directory(target, force=True) as tmp:
            (tmp / "a").write_text("2")
            raise RuntimeError("killed halfway")

    with pytest.raises(RuntimeError):
        write_then_die()
    assert (target / "a").read_text() == "1"
    with atomic_directory(target, force=True) as tmp:
        (tmp / "a").write_text("3")
    assert (target / "a").read_text() == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_written_bundle_is_readable_by_other_users(tmp_path: Path) -> None:
    # The serving container runs as a different uid than the user who trained the bundle.
    target = tmp_path / "out"
    with atomic_directory(target) as tmp:
        (tmp / "model.safetensors").write_bytes(b"w")
        write_manifest(tmp, Manifest(task="svamp"))
    assert target.stat().st_mode & 0o005 == 0o005
    assert (target / MANIFEST_NAME).stat().st_mode & 0o004

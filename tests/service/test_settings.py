from __future__ import annotations

import logging
from pathlib import Path

import pytest
from mindmirror.service.settings import Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("MINDMIRROR_"):
            monkeypatch.delenv(name)


def test_defaults_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MINDMIRROR_BUNDLE", str(tmp_path))
    monkeypatch.setenv("MINDMIRROR_MAX_BATCH_SIZE", "16")
    monkeypatch.setenv("MINDMIRROR_API_KEYS", "first-key-0123456789, second-key-0123456789")
    monkeypatch.setenv("MINDMIRROR_ENV", "production")
    settings = load_settings()
    assert settings.bundle == tmp_path
    assert settings.max_batch_size == 16
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert [k.get_secret_value() for k in settings.api_keys] == [
        "first-key-0123456789",
        "second-key-0123456789",
    ]
    assert settings.auth_enabled
    assert not settings.docs_enabled
    assert len(settings.api_key_digests()) == 2
    assert "first-key" not in repr(settings)  # secrets stay out of logs and tracebacks
    # Overrides (CLI flags) win over the environment; None means "not given".
    assert load_settings(max_batch_size=4, port=None).max_batch_size == 4


def test_missing_bundle_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="MINDMIRROR_BUNDLE: is required"):
        load_settings()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_batch_size": 0}, "MINDMIRROR_MAX_BATCH_SIZE"),
        ({"max_queue": 8, "max_batch_size": 16}, "must be at least MINDMIRROR_MAX_BATCH_SIZE"),
        ({"max_queue": 32, "max_predict_inputs": 64}, "MINDMIRROR_MAX_PREDICT_INPUTS"),
        ({"max_queue": 16, "max_batch_size": 8, "max_predict_inputs": 8}, "MINDMIRROR_MAX_SAMPLES"),
        ({"api_keys": "short"}, "at least 16 are required"),
        ({"request_timeout_s": 0}, "MINDMIRROR_REQUEST_TIMEOUT_S"),
        ({"max_body_bytes": 10**9}, "MINDMIRROR_MAX_BODY_BYTES"),
        ({"backend": "tensorrt"}, "MINDMIRROR_BACKEND"),
        ({"variant": "../../etc"}, "MINDMIRROR_VARIANT"),
        ({"host": "bad host"}, "MINDMIRROR_HOST"),
        ({"port": 70000}, "MINDMIRROR_PORT"),
    ],
)
def test_unsafe_values_fail_fast(tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(bundle=tmp_path, **overrides)


def test_api_key_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# rotated 2024-05\nfile-key-0123456789abc\n\nsecond-file-key-0123456789\n")
    settings = load_settings(bundle=tmp_path, api_keys_file=keys)
    assert len(settings.api_key_digests()) == 2
    keys.write_text("# nothing yet\n")
    with pytest.raises(SettingsError, match="holds no key"):
        load_settings(bundle=tmp_path, api_keys_file=keys)
    keys.write_text("tiny\n")
    with pytest.raises(SettingsError, match="line 1"):
        load_settings(bundle=tmp_path, api_keys_file=keys)
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(bundle=tmp_path, api_keys_file=tmp_path / "absent")


def test_unknown_variables_are_reported_with_a_suggestion(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MINDMIRROR_MAX_BATCHSIZE", "8")
    with caplog.at_level(logging.WARNING, logger="mindmirror.service"):
        load_settings(bundle=tmp_path)
    assert "did you mean MINDMIRROR_MAX_BATCH_SIZE" in caplog.text


def test_every_setting_is_documented() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "service.md").read_text()
    for name, field in Settings.model_fields.items():
        assert field.description, name
        assert f"MINDMIRROR_{name.upper()}" in docs, f"MINDMIRROR_{name.upper()} not in docs"

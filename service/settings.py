"""Every knob of the service, read from ``MINDMIRROR_*`` environment variables and validated once.

The service refuses to start on a value that would make it unsafe or unable to serve (a queue
smaller than a batch, an API key too short to resist guessing, a key file that cannot be read,
a token budget no single request fits in) instead of failing on the first unlucky request.
Values that depend on the bundle (the input length limit, the explain cap) are checked against
its manifest when the model is loaded (:func:`mindmirror.service.runtime.resolve_limits`).

Each field's description is the documentation of its environment variable: ``docs/service.md``
renders the same table, and names are fixed by ``docs/contracts.md`` (the Helm chart and the
dashboard rely on them).
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
from pathlib import Path
from typing import Annotated, Literal

from mindmirror.student.errors import MindmirrorError
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["ENV_PREFIX", "MIN_API_KEY_LENGTH", "Settings", "SettingsError", "load_settings"]

ENV_PREFIX = "MINDMIRROR_"
#: Shorter keys are refused: a 16-character random key already has ~95 bits of entropy.
MIN_API_KEY_LENGTH = 16
_VARIANT_PATTERN = r"^(auto|[A-Za-z0-9][A-Za-z0-9._-]{0,63})$"

logger = logging.getLogger("mindmirror.service")


class SettingsError(MindmirrorError, ValueError):
    """A setting is missing, malformed or unsafe; the message names the environment variable."""


class Settings(BaseSettings):
    """The service's settings. Environment variables are ``MINDMIRROR_<FIELD NAME IN CAPS>``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="ignore", validate_default=True
    )

    # ----- what to serve, and where ---------------------------------------------------------
    bundle: Path = Field(description="Path of the student bundle to serve (required).")
    host: str = Field(
        "127.0.0.1",
        description="Listen address. Loopback by default so nothing is exposed by accident; "
        "containers set 0.0.0.0.",
    )
    port: int = Field(8000, ge=1, le=65535, description="Listen port.")
    env: Literal["development", "production"] = Field(
        "development",
        description="`production` turns the OpenAPI pages (/docs, /redoc, /openapi.json) off, "
        "so the API surface is not advertised.",
    )
    backend: Literal["auto", "onnx", "pytorch", "ctranslate2"] = Field(
        "auto",
        description="Inference runtime. `auto` takes the bundle's recommended ONNX variant, "
        "then a CTranslate2 export, then PyTorch when torch is installed.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="`auto` uses CUDA when the runtime can, the CPU otherwise."
    )
    variant: str = Field(
        "auto",
        pattern=_VARIANT_PATTERN,
        description="ONNX/CTranslate2 variant (`fp32`, `int8`, ...). `auto` = the manifest's "
        "recommendation for the device, i.e. the fastest variant that passed the parity check.",
    )

    # ----- authentication ----------------------------------------------------------------------
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated API keys accepted as `Authorization: Bearer <key>`; unset "
        f"(and no key file) = no authentication. Keys shorter than {MIN_API_KEY_LENGTH} "
        "characters are refused.",
    )
    api_keys_file: Path | None = Field(
        None,
        description="A file with one API key per line (`#` comments allowed), e.g. a mounted "
        "Kubernetes Secret; read at start. Combined with MINDMIRROR_API_KEYS.",
    )

    # ----- batching ----------------------------------------------------------------------------
    max_batch_size: int = Field(
        32,
        ge=1,
        le=1024,
        description="Most inputs per model call. Larger batches raise throughput until the "
        "device saturates, and raise every member's latency.",
    )
    max_wait_ms: float = Field(
        0.0,
        ge=0,
        le=1000,
        description="How long the oldest queued input may wait for company before its batch "
        "runs while the model is idle. 0 (default) = run as soon as the model is free: batches "
        "still fill from the inputs that arrive while the model is busy, and a lone request "
        "pays no wait. A few ms buys fuller batches at medium load for that much added latency.",
    )
    max_batch_tokens: int = Field(
        32768,
        ge=16,
        le=10_000_000,
        description="Token budget of one batch: rows × (longest input + most new tokens). "
        "Bounds the memory of a batch of long inputs; too small a value shrinks batches.",
    )
    max_queue: int = Field(
        256,
        ge=1,
        le=1_000_000,
        description="Inputs that may wait per endpoint; beyond it requests get 429 with "
        "Retry-After. A longer queue absorbs bursts but lets latency grow before clients "
        "are told to back off.",
    )
    request_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Deadline for queue wait + inference; past it the request gets 504 and its "
        "queued work is dropped. Should stay below the client's and the ingress' timeouts.",
    )

    # ----- input and output limits -------------------------------------------------------------
    max_input_tokens: int | None = Field(
        None,
        ge=8,
        le=65536,
        description="Longest model input in tokens (prefix and end-of-sequence included). Unset "
        "= the manifest's max_input_length; a larger value than the student was trained with "
        "is refused.",
    )
    truncate_input: bool = Field(
        False,
        description="Cut inputs longer than the limit instead of rejecting them with 422. "
        "Rejecting (the default) never answers a question the model did not fully read.",
    )
    max_body_bytes: int = Field(
        1_048_576,
        ge=1024,
        le=64 * 1_048_576,
        description="Largest request body; beyond it 413, before any parsing.",
    )
    max_new_tokens_explain: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="Cap on generated tokens for /v1/explain and the /v1/evaluate rationale "
        "(requests may ask for less). Unset = the manifest's generation default. Bounds the "
        "cost of the most expensive request.",
    )
    max_predict_inputs: int = Field(
        64,
        ge=1,
        le=4096,
        description="Most inputs in one /v1/predict request; must fit in the queue.",
    )
    max_samples: int = Field(
        8,
        ge=1,
        le=64,
        description="Most `num_samples` one /v1/explain request may ask for; each sample costs "
        "one label, one rationale and one self-evaluation generation.",
    )

    calculator: bool = Field(
        True,
        description='Let a calculator write the result of each arithmetic step ("10 + 9 =") '
        "of a /v1/explain rationale, for tasks that have one (svamp, arith) on backends that "
        "can force tokens (ONNX, PyTorch). The student's own arithmetic is often wrong; the "
        "forced result is right, and the rationale then differs from what the student alone "
        "would write (turn it off to see that).",
    )

    # ----- runtime -------------------------------------------------------------------------
    num_threads: int = Field(
        0,
        ge=0,
        le=1024,
        description="Intra-op threads of the runtime (0 = its default, usually all cores). "
        "Set to the container's CPU limit so threads do not fight over cores.",
    )
    drain_timeout_s: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="After SIGTERM, how long accepted work may take to finish before the "
        "process exits anyway. Keep it below the pod's termination grace period.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Level of the JSON logs on stderr."
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for position, key in enumerate(keys):
            _check_key(key.get_secret_value(), f"key {position + 1}")
        return keys

    @field_validator("host")
    @classmethod
    def _check_host(cls, host: str) -> str:
        if not host or any(ch.isspace() for ch in host):
            raise ValueError("must be a host name or IP address without spaces")
        return host

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.max_queue < self.max_batch_size:
            raise ValueError(
                f"MINDMIRROR_MAX_QUEUE ({self.max_queue}) must be at least "
                f"MINDMIRROR_MAX_BATCH_SIZE ({self.max_batch_size}); a smaller queue could never "
                "fill a batch"
            )
        if self.max_queue < self.max_predict_inputs:
            raise ValueError(
                f"MINDMIRROR_MAX_QUEUE ({self.max_queue}) must be at least "
                f"MINDMIRROR_MAX_PREDICT_INPUTS ({self.max_predict_inputs}); a request with the "
                "most inputs allowed would always be refused"
            )
        if self.max_queue < 3 * self.max_samples:
            raise ValueError(
                f"MINDMIRROR_MAX_QUEUE ({self.max_queue}) must be at least 3 × "
                f"MINDMIRROR_MAX_SAMPLES ({3 * self.max_samples}): one explain request with the "
                "most samples queues that many generations"
            )
        if self.api_keys_file is not None:
            self._read_key_file()  # fail now, not on the first request
        return self

    # ----- derived -----------------------------------------------------------------------------
    @property
    def docs_enabled(self) -> bool:
        return self.env != "production"

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys) or self.api_keys_file is not None

    def api_key_digests(self) -> list[bytes]:
        """sha256 of every accepted key. Requests are compared digest to digest, so the
        comparison takes the same time whatever the key's length and content."""
        keys = [key.get_secret_value() for key in self.api_keys]
        if self.api_keys_file is not None:
            keys += self._read_key_file()
        return [hashlib.sha256(key.encode("utf-8")).digest() for key in keys]

    def _read_key_file(self) -> list[str]:
        path = self.api_keys_file
        assert path is not None
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ValueError(
                f"MINDMIRROR_API_KEYS_FILE: cannot read {path}: {error.strerror or error}"
            ) from None
        keys = []
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            _check_key(line, f"{path} line {number}")
            keys.append(line)
        if not keys:
            raise ValueError(f"MINDMIRROR_API_KEYS_FILE: {path} holds no key")
        return keys


def _check_key(key: str, where: str) -> None:
    if len(key) < MIN_API_KEY_LENGTH:
        raise ValueError(
            f"API key ({where}) is {len(key)} characters; at least {MIN_API_KEY_LENGTH} are "
            "required (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    if any(ch.isspace() for ch in key) or "," in key:
        raise ValueError(f"API key ({where}) contains whitespace or a comma")


def _env_name(location: tuple[object, ...]) -> str:
    if not location:
        return "settings"
    return ENV_PREFIX + str(location[0]).upper()


def load_settings(**overrides: object) -> Settings:
    """Read the environment (plus ``overrides``, e.g. CLI flags) into validated settings.

    Raises :class:`SettingsError` naming each bad variable. Unknown ``MINDMIRROR_*`` variables
    are reported (most often a typo that would otherwise be silently ignored).
    """
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    for name in sorted(os.environ):
        if name.startswith(ENV_PREFIX) and name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            logger.warning("ignoring unknown setting %s%s", name, hint)
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)  # type: ignore[arg-type]
    except ValidationError as error:
        problems = []
        for item in error.errors():
            message = str(item["msg"]).removeprefix("Value error, ")
            if item["type"] == "missing":
                message = "is required"
            where = _env_name(item["loc"])
            problems.append(f"{where}: {message}" if item["loc"] else message)
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None

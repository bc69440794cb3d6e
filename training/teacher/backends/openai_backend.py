"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp server, Ollama...) through the
official ``openai`` async client.

The client's own retries are off (``max_retries=0``): the runner owns the retry policy so that
every attempt is counted, rate-limited and recorded in the store. The API key comes only from
the environment (``OPENAI_API_KEY`` or the variable named by ``--api-key-env``), never from a
command-line value that would land in shell history and process listings.
"""

from __future__ import annotations

import email.utils
import logging
import math
import os
import time
from typing import TYPE_CHECKING, Any

from mindmirror.student.errors import MindmirrorError
from mindmirror.training.teacher.backends.base import (
    Completion,
    GenerationRequest,
    RequestRejected,
    TeacherBackend,
    TeacherFatalError,
    TeacherOptions,
    TransientTeacherError,
)

if TYPE_CHECKING:
    from openai import AsyncOpenAI

__all__ = ["OpenAITeacher", "parse_retry_after", "resolve_api_key"]

log = logging.getLogger(__name__)

# Servers that run on the user's own machine need no key, but the client insists on one.
_PLACEHOLDER_KEY = "not-needed"


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``retry-after`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            if name != "retry-after":
                continue
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                continue
            seconds = when.timestamp() - time.time()
        if math.isfinite(seconds):
            return max(0.0, seconds)
    return None


def resolve_api_key(env_name: str, base_url: str | None, required: bool = True) -> str:
    """The key from the environment; a placeholder for a custom endpoint that needs none, or
    when nothing will be sent (``required=False``, a dry run)."""
    key = os.environ.get(env_name, "").strip()
    if key:
        return key
    if not required:
        return _PLACEHOLDER_KEY
    if base_url:
        log.info("%s is not set; calling %s without an API key", env_name, base_url)
        return _PLACEHOLDER_KEY
    raise MindmirrorError(
        f"no API key: set the environment variable {env_name} (or name another one with "
        "--api-key-env), or pass --base-url for a server that needs no key"
    )


class OpenAITeacher(TeacherBackend):
    name = "openai"
    supports_batch = True

    def __init__(
        self,
        model: str,
        api_key: str,
        base_url: str | None = None,
        timeout: float = 120.0,
        n_mode: str = "auto",
        max_tokens_param: str | None = None,
    ) -> None:
        from openai import AsyncOpenAI

        if n_mode not in ("auto", "on", "off"):
            raise MindmirrorError(f"--n-mode must be auto, on or off, not {n_mode!r}")
        self.model_id = model
        self.base_url = base_url
        self.client: AsyncOpenAI = AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0
        )
        self.supports_n = {"auto": None, "on": True, "off": False}[n_mode]
        # OpenAI's newer models accept only max_completion_tokens; most self-hosted servers
        # know only max_tokens.
        self.max_tokens_param = max_tokens_param or (
            "max_tokens" if base_url else "max_completion_tokens"
        )
        if self.max_tokens_param not in ("max_tokens", "max_completion_tokens"):
            raise MindmirrorError(
                "--max-tokens-param must be max_tokens or max_completion_tokens, "
                f"not {self.max_tokens_param!r}"
            )

    @classmethod
    def from_options(cls, options: TeacherOptions) -> OpenAITeacher:
        if not options.model:
            raise MindmirrorError("--model is required for the openai teacher")
        return cls(
            model=options.model,
            api_key=resolve_api_key(
                options.api_key_env, options.base_url, required=not options.dry_run
            ),
            base_url=options.base_url,
            timeout=options.timeout,
            n_mode=options.n_mode,
            max_tokens_param=options.max_tokens_param,
        )

    def describe(self) -> str:
        return f"openai-compatible teacher {self.model_id} at {self.base_url or 'api.openai.com'}"

    def request_body(self, request: GenerationRequest) -> dict[str, Any]:
        """The chat-completions body (also what a Batch API line carries)."""
        params = request.params
        body: dict[str, Any] = {
            "model": self.model_id,
            "messages": list(request.messages),
            "temperature": params.temperature,
            "top_p": params.top_p,
            self.max_tokens_param: params.max_tokens,
        }
        if request.n > 1:
            body["n"] = request.n
        seed = params.request_seed(request.first_index)
        if seed is not None:
            body["seed"] = seed
        return body

    async def generate(self, request: GenerationRequest) -> Completion:
        import openai

        try:
            response = await self.client.chat.completions.create(**self.request_body(request))
        except openai.APITimeoutError:
            raise TransientTeacherError("request timed out") from None
        except openai.APIConnectionError as error:
            raise TransientTeacherError(f"connection error: {error.message}") from None
        except openai.APIStatusError as error:
            raise classify_status_error(error) from None
        return completion_from_body(response.model_dump())

    async def aclose(self) -> None:
        await self.client.close()


def classify_status_error(error: Any) -> Exception:
    """Map an ``openai.APIStatusError`` to the runner's three kinds of failure."""
    status = int(error.status_code)
    message = f"HTTP {status}: {_short(error.message)}"
    if status == 429 and error.code == "insufficient_quota":
        return TeacherFatalError(f"the account has no quota left ({message})", status)
    if status == 429 or status >= 500 or status in (408, 409):
        return TransientTeacherError(message, status, parse_retry_after(error.response.headers))
    if status in (401, 403):
        return TeacherFatalError(f"the endpoint refused the API key ({message})", status)
    if status == 404:
        return TeacherFatalError(f"model or endpoint not found ({message})", status)
    return RequestRejected(message, status)


def completion_from_body(body: dict[str, Any]) -> Completion:
    """Read a chat-completions response body (a dict, as the API or a batch output line has)."""
    choices = sorted(body.get("choices") or [], key=lambda choice: choice.get("index", 0))
    texts = []
    reasons = []
    for choice in choices:
        message = choice.get("message") or {}
        # A refusal or an empty message is kept as empty text: flagged unparseable later.
        texts.append(str(message.get("content") or ""))
        reasons.append(choice.get("finish_reason"))
    usage = body.get("usage") or {}
    return Completion(
        texts=texts,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        finish_reasons=reasons,
    )


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

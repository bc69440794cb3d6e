"""A scripted OpenAI-compatible server for tests and benchmarks (FastAPI + uvicorn, 127.0.0.1).

It implements what the teacher uses: ``POST /v1/chat/completions`` (with ``n``, ``seed`` and
``usage``), and for Batch API mode ``POST /v1/files``, ``GET /v1/files/{id}/content``,
``POST /v1/batches``, ``GET /v1/batches/{id}`` and ``GET /v1/batches``. Tests talk to it
through the real ``openai`` client.

Answers are deterministic: a function of the request's messages, ``seed`` and choice index,
so an interrupted run and an uninterrupted one produce the same distillation set. A
``script`` callable can replace any reply with an error (429 with Retry-After, 500), a delay
longer than the client's timeout, or other text. Every chat request is logged.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import hashlib
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

SELF_EVAL_MARK = "Evaluation result: the given answer is correct."
VERDICTS = ("correct", "wrong", "uncertain")


@dataclass
class Reply:
    """What the server does with one chat request (``None`` fields: the default)."""

    status: int = 200
    texts: list[str] | None = None
    retry_after: float | None = None
    delay: float = 0.0
    error_code: str | None = None
    usage: bool = True


@dataclass
class ChatLog:
    at: float
    identity: str  # sha256 of (messages, seed): which slot(s) the request was for
    kind: str  # cot | self_eval
    n: int
    status: int
    delay: float
    returned: int  # choices returned (0 for errors)
    authorization: str | None
    body: dict[str, Any] = field(repr=False)


def identity_of(messages: list[dict[str, str]], seed: int | None) -> str:
    text = json.dumps({"messages": messages, "seed": seed}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def is_self_eval(messages: list[dict[str, str]]) -> bool:
    return bool(messages) and SELF_EVAL_MARK in messages[0]["content"]


def default_text(messages: list[dict[str, str]], seed: int | None, choice: int) -> str:
    """A deterministic, parseable SVAMP-style answer (or a malformed one when asked)."""
    question = messages[-1]["content"]
    variant = (seed or 0) + choice
    digest = int(hashlib.sha256(f"{question}|{variant}".encode()).hexdigest(), 16)
    if is_self_eval(messages):
        if "MALFORMED" in question:
            return "Evaluation:\nHard to say, the reasoning rambles on."
        verdict = VERDICTS[digest % 3]
        return (
            f"Evaluation:\nChecked the steps (variant {variant}).\n\n"
            f"Evaluation result: the given answer is {verdict}."
        )
    if "MALFORMED" in question:
        return f"I am not sure how to solve this one (variant {variant})."
    numbers = re.findall(r"\d+", question)[:2] or ["1", "1"]
    a, b = (numbers + numbers)[:2]
    op = "+-*"[digest % 3]
    return f"Take {a} and {b} (variant {variant}). The answer is ({a} {op} {b})."


class FakeOpenAI:
    """The server's state and app. Use :func:`serve` to run it."""

    def __init__(
        self,
        script: Callable[[dict[str, Any], int], Reply | None] | None = None,
        latency: float = 0.0,
        honour_n: bool = True,
        batch_polls: int = 1,
        batch_line_script: Callable[[str, int], int] | None = None,
    ) -> None:
        self.script = script
        self.latency = latency
        self.honour_n = honour_n
        self.batch_polls = batch_polls
        # (custom_id, times seen) -> HTTP status for that batch line (0 = leave it out)
        self.batch_line_script = batch_line_script
        self.lock = threading.Lock()
        self.chats: list[ChatLog] = []
        self.request_number = itertools.count()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_polls_seen: dict[str, int] = {}
        self.batch_lines_seen: dict[str, int] = {}
        self.batch_creations = 0
        self.uploads = 0
        self.app = self._build()

    # ----- chat ----------------------------------------------------------------------------
    def successful(self) -> list[ChatLog]:
        """Requests answered with 200 before any client timeout could fire."""
        with self.lock:
            return [c for c in self.chats if c.status == 200 and c.delay == 0]

    def completion(self, body: dict[str, Any], reply: Reply | None) -> dict[str, Any]:
        messages = body["messages"]
        n = int(body.get("n") or 1) if self.honour_n else 1
        seed = body.get("seed")
        if reply is not None and reply.texts is not None:
            texts = reply.texts[:n]
        else:
            texts = [default_text(messages, seed, choice) for choice in range(n)]
        prompt_tokens = sum(len(m["content"]) for m in messages) // 4 + 1
        completion_tokens = sum(len(text) // 4 + 1 for text in texts)
        out: dict[str, Any] = {
            "id": f"chatcmpl-{next(self.request_number)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
                for i, text in enumerate(texts)
            ],
        }
        if reply is None or reply.usage:
            out["usage"] = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }
        return out

    def _attempt(self, identity: str) -> int:
        with self.lock:
            return sum(1 for c in self.chats if c.identity == identity)

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        messages = body["messages"]
        identity = identity_of(messages, body.get("seed"))
        reply = self.script(body, self._attempt(identity)) if self.script else None
        status = reply.status if reply else 200
        delay = reply.delay if reply else 0.0
        kind = "self_eval" if is_self_eval(messages) else "cot"
        payload = self.completion(body, reply) if status == 200 else None
        with self.lock:
            self.chats.append(
                ChatLog(
                    at=time.monotonic(),
                    identity=identity,
                    kind=kind,
                    n=int(body.get("n") or 1),
                    status=status,
                    delay=delay,
                    returned=len(payload["choices"]) if payload else 0,
                    authorization=request.headers.get("authorization"),
                    body=body,
                )
            )
        if self.latency or delay:
            await asyncio.sleep(self.latency + delay)
        if payload is not None:
            return JSONResponse(payload)
        headers = {}
        if reply is not None and reply.retry_after is not None:
            headers["retry-after"] = f"{reply.retry_after:g}"
        error = {
            "message": f"scripted {status}",
            "type": "server_error" if status >= 500 else "invalid_request_error",
            "code": reply.error_code if reply else None,
        }
        return JSONResponse({"error": error}, status_code=status, headers=headers)

    # ----- files and batches ---------------------------------------------------------------
    async def upload(self, request: Request) -> Response:
        raw = await request.body()
        header = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.default).parsebytes(header + raw)
        content, filename, purpose = b"", "upload", ""
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name == "file":
                content = part.get_payload(decode=True) or b""
                filename = part.get_filename() or filename
            elif name == "purpose":
                purpose = (part.get_payload(decode=True) or b"").decode()
        with self.lock:
            self.uploads += 1
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = content
        return JSONResponse(self._file(file_id, filename, purpose))

    def _file(self, file_id: str, filename: str, purpose: str) -> dict[str, Any]:
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(self.files[file_id]),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }

    async def file_content(self, file_id: str) -> Response:
        if file_id not in self.files:
            return JSONResponse({"error": {"message": "no such file"}}, status_code=404)
        return Response(self.files[file_id], media_type="application/octet-stream")

    async def create_batch(self, request: Request) -> Response:
        body = await request.json()
        if body["input_file_id"] not in self.files:
            return JSONResponse({"error": {"message": "no such file"}}, status_code=404)
        with self.lock:
            self.batch_creations += 1
            batch_id = f"batch_{len(self.batches) + 1}"
            lines = self.files[body["input_file_id"]].decode().splitlines()
            self.batches[batch_id] = {
                "id": batch_id,
                "object": "batch",
                "endpoint": body["endpoint"],
                "input_file_id": body["input_file_id"],
                "completion_window": body["completion_window"],
                "status": "validating",
                "created_at": int(time.time()),
                "output_file_id": None,
                "error_file_id": None,
                "errors": None,
                "metadata": body.get("metadata"),
                "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            }
            self.batch_polls_seen[batch_id] = 0
        return JSONResponse(self.batches[batch_id])

    def _run_batch(self, batch: dict[str, Any]) -> None:
        """Answer every line, as the Batch API does when a batch completes."""
        ok_lines, error_lines = [], []
        for line in self.files[batch["input_file_id"]].decode().splitlines():
            request = json.loads(line)
            custom_id = request["custom_id"]
            seen = self.batch_lines_seen.get(custom_id, 0)
            self.batch_lines_seen[custom_id] = seen + 1
            status = self.batch_line_script(custom_id, seen) if self.batch_line_script else 200
            if status == 0:
                continue  # the batch expired before reaching this line
            result: dict[str, Any] = {"id": f"batch_req_{custom_id[:8]}", "custom_id": custom_id}
            if status == 200:
                body = self.completion(request["body"], None)
                result["response"] = {"status_code": 200, "request_id": "r", "body": body}
                result["error"] = None
                ok_lines.append(json.dumps(result))
            else:
                result["response"] = {
                    "status_code": status,
                    "request_id": "r",
                    "body": {"error": {"message": f"scripted batch {status}"}},
                }
                result["error"] = None
                error_lines.append(json.dumps(result))
        counts = batch["request_counts"]
        counts["completed"], counts["failed"] = len(ok_lines), len(error_lines)
        if ok_lines:
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = ("\n".join(ok_lines) + "\n").encode()
            batch["output_file_id"] = file_id
        if error_lines:
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = ("\n".join(error_lines) + "\n").encode()
            batch["error_file_id"] = file_id
        batch["status"] = "completed"

    async def get_batch(self, batch_id: str) -> Response:
        with self.lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                return JSONResponse({"error": {"message": "no such batch"}}, status_code=404)
            self.batch_polls_seen[batch_id] += 1
            if batch["status"] != "completed":
                if self.batch_polls_seen[batch_id] >= self.batch_polls:
                    self._run_batch(batch)
                else:
                    batch["status"] = "in_progress"
            return JSONResponse(batch)

    async def list_batches(self) -> Response:
        with self.lock:
            data = list(reversed(self.batches.values()))
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )

    def _build(self) -> FastAPI:
        app = FastAPI()
        app.add_api_route("/v1/chat/completions", self.chat, methods=["POST"])
        app.add_api_route("/v1/files", self.upload, methods=["POST"])
        app.add_api_route("/v1/files/{file_id}/content", self.file_content, methods=["GET"])
        app.add_api_route("/v1/batches", self.create_batch, methods=["POST"])
        app.add_api_route("/v1/batches", self.list_batches, methods=["GET"])
        app.add_api_route("/v1/batches/{batch_id}", self.get_batch, methods=["GET"])
        return app


@contextmanager
def serve(fake: FakeOpenAI) -> Iterator[str]:
    """Run the fake on a free 127.0.0.1 port in a thread; yields its base URL (…/v1)."""
    import uvicorn

    config = uvicorn.Config(
        fake.app, host="127.0.0.1", port=0, log_level="error", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the fake OpenAI server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)

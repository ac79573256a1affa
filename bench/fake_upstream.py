"""A lean fake Anthropic Messages API for the benchmarks (fallback for `tests/fake_anthropic.py`).

Same command line as the project's test fake, so the harness can use either:

    python bench/fake_upstream.py --port N --mode instant|paced \
        [--ttft-ms 250 --tokens 16-64 --token-ms 10-20] [--echo none|system|user]

Written on bare asyncio streams (no web framework) so that it costs as little CPU as possible and
is never the bottleneck of a benchmark. It speaks the real wire format: `POST /v1/messages`
returns a JSON message, or with `"stream": true` the SSE sequence `message_start` ...
`message_stop`. When the request offers tools and the last message is a plain user message, it
answers with one `tool_use` block for the first tool (input `{"city": "Paris"}`); after the
`tool_result` it answers with text. `--echo system` makes the reply start with the system
prompt (used to detect hot reloads). `GET /__stats` returns the request count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import sys

WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")


def _parse_range(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    return int(lo), int(hi or lo)


class Upstream:
    def __init__(self, args: argparse.Namespace) -> None:
        self.paced = args.mode == "paced"
        self.ttft = args.ttft_ms / 1000.0
        self.tokens = _parse_range(args.tokens)
        lo, hi = _parse_range(args.token_ms)
        self.token_s = (lo / 1000.0, hi / 1000.0)
        self.echo = args.echo
        self.rng = random.Random(args.seed)
        self.requests = 0
        self.msg_id = 0

    # -- reply content --------------------------------------------------------------------
    def _text(self, req: dict) -> list[str]:
        n = self.rng.randint(*self.tokens)
        pieces = [WORDS[i % len(WORDS)] + " " for i in range(n)]
        prefix = ""
        if self.echo == "system":
            system = req.get("system", "")
            if isinstance(system, list):
                system = "".join(b.get("text", "") for b in system if isinstance(b, dict))
            prefix = str(system)
        elif self.echo == "user":
            prefix = _last_user_text(req.get("messages") or [])
        if prefix:
            pieces.insert(0, prefix + " ")
        return pieces

    def _tool_call(self, req: dict) -> dict | None:
        tools = req.get("tools") or []
        messages = req.get("messages") or []
        if not tools or not messages:
            return None
        last = messages[-1]
        content = last.get("content")
        if last.get("role") != "user":
            return None
        if isinstance(content, list) and any(
            isinstance(b, dict) and b.get("type") == "tool_result" for b in content
        ):
            return None
        self.msg_id += 1
        return {"type": "tool_use", "id": f"toolu_{self.msg_id:08d}", "name": tools[0]["name"],
                "input": {"city": "Paris"}}  # fmt: skip

    # -- HTTP -------------------------------------------------------------------------------
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length", "0") or 0)
                body = await reader.readexactly(length) if length else b""
                close = headers.get("connection", "").lower() == "close"
                if method == "POST" and path.split("?")[0] == "/v1/messages":
                    self.requests += 1
                    await self.messages(writer, body)
                elif method == "GET" and path == "/__stats":
                    _send_json(writer, 200, {"requests": self.requests})
                else:
                    _send_json(writer, 404, {"type": "error", "error": {
                        "type": "not_found_error", "message": f"no route {path}"}})  # fmt: skip
                await writer.drain()
                if close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def messages(self, writer: asyncio.StreamWriter, body: bytes) -> None:
        try:
            req = json.loads(body)
        except ValueError:
            _send_json(writer, 400, {"type": "error", "error": {
                "type": "invalid_request_error", "message": "bad json"}})  # fmt: skip
            return
        self.msg_id += 1
        mid = f"msg_{self.msg_id:08d}"
        model = req.get("model", "claude-fake")
        tool = self._tool_call(req)
        pieces = [] if tool else self._text(req)
        in_tokens = max(1, len(body) // 4)
        out_tokens = len(pieces) or 8
        stop = "tool_use" if tool else "end_turn"
        if not req.get("stream"):
            if self.paced:
                await asyncio.sleep(self.ttft + sum(self._gap() for _ in pieces))
            content = [tool] if tool else [{"type": "text", "text": "".join(pieces)}]
            _send_json(writer, 200, {
                "id": mid, "type": "message", "role": "assistant", "model": model,
                "content": content, "stop_reason": stop, "stop_sequence": None,
                "usage": {"input_tokens": in_tokens, "output_tokens": out_tokens}})  # fmt: skip
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"request-id: req_fake\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        start = {"type": "message_start", "message": {
            "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": in_tokens, "output_tokens": 1}}}  # fmt: skip
        if self.paced:
            _chunk(writer, _sse("message_start", start))
            await writer.drain()
            await asyncio.sleep(self.ttft)
            out = []
        else:
            out = [_sse("message_start", start)]
        if tool:
            out.append(_sse("content_block_start", {"type": "content_block_start", "index": 0,
                "content_block": {**tool, "input": {}}}))  # fmt: skip
            out.append(_sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": json.dumps(tool["input"])}}))  # fmt: skip
        else:
            out.append(_sse("content_block_start", {"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}))  # fmt: skip
            for i, piece in enumerate(pieces):
                if self.paced and i:
                    _chunk(writer, b"".join(out))
                    out = []
                    await writer.drain()
                    await asyncio.sleep(self._gap())
                out.append(_sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": piece}}))  # fmt: skip
        out.append(_sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
        out.append(_sse("message_delta", {"type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": out_tokens}}))  # fmt: skip
        out.append(_sse("message_stop", {"type": "message_stop"}))
        _chunk(writer, b"".join(out))
        writer.write(b"0\r\n\r\n")

    def _gap(self) -> float:
        return self.rng.uniform(*self.token_s)


def _last_user_text(messages: list) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, str):
                return c
            return "".join(b.get("text", "") for b in c if isinstance(b, dict))
    return ""


def _sse(event: str, data: dict) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + json.dumps(data).encode() + b"\n\n"


def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(b"%x\r\n%s\r\n" % (len(data), data))


def _send_json(writer: asyncio.StreamWriter, status: int, obj: dict) -> None:
    body = json.dumps(obj).encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
    writer.write(
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\nrequest-id: req_fake\r\n"
        b"content-length: %d\r\n\r\n%s" % (status, reason.encode(), len(body), body)
    )


async def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=["instant", "paced"], default="instant")
    p.add_argument("--ttft-ms", type=float, default=250.0)
    p.add_argument("--tokens", default="16-64")
    p.add_argument("--token-ms", default="10-20")
    p.add_argument("--echo", choices=["none", "system", "user"], default="none")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    up = Upstream(args)
    server = await asyncio.start_server(up.handle, args.host, args.port, backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"fake upstream listening on http://{args.host}:{args.port} ({args.mode})", flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(sys.argv[1:]))

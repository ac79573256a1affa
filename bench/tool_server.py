"""A tiny local HTTP tool server for the tool-turn benchmark: `GET /weather/{city}` -> JSON.

    python bench/tool_server.py --port N

`GET /__stats` returns how many tool calls it served. Bare asyncio, so it costs next to nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

COUNT = 0


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    global COUNT
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            _method, path, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            if length:
                await reader.readexactly(length)
            if path.startswith("/weather/"):
                COUNT += 1
                city = path[len("/weather/") :].split("?")[0]
                obj = {"city": city, "temperature_c": 21, "conditions": "sunny"}
            else:
                obj = {"tool_calls": COUNT}
            body = json.dumps(obj).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                % (len(body), body)
            )
            await writer.drain()
    except ConnectionError:
        return
    finally:
        writer.close()


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    server = await asyncio.start_server(handle, "127.0.0.1", args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"tool server on http://127.0.0.1:{args.port}", flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())

"""The chatbot a developer writes by hand from the usual FastAPI + Anthropic tutorial.

In-memory dict of sessions, the last 20 messages sent as context, NDJSON streaming through the
SDK's `messages.stream`. No persistence, no rate limits, no auth: the benchmark's baseline.

    ANTHROPIC_BASE_URL=http://127.0.0.1:9000 ANTHROPIC_API_KEY=test \
        python bench/baselines/fastapi_chatbot.py --port 8001
"""

import argparse
import json

import uvicorn
from anthropic import AsyncAnthropic
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

MODEL = "claude-sonnet-4-6"
SYSTEM = "You are a concise AI tutor."

app = FastAPI()
client = AsyncAnthropic()
sessions: dict[str, list[dict]] = {}


class ChatIn(BaseModel):
    message: str
    stream: bool = True


@app.get("/health")
async def health():
    return {"ok": True}


@app.post("/chat/{session_id}")
async def chat(session_id: str, body: ChatIn):
    history = sessions.setdefault(session_id, [])
    history.append({"role": "user", "content": body.message})
    context = history[-20:]

    if not body.stream:
        reply = await client.messages.create(
            model=MODEL, max_tokens=1024, system=SYSTEM, messages=context
        )
        text = "".join(b.text for b in reply.content if b.type == "text")
        history.append({"role": "assistant", "content": text})
        return {"reply": text, "usage": reply.usage.model_dump()}

    async def generate():
        parts = []
        async with client.messages.stream(
            model=MODEL, max_tokens=1024, system=SYSTEM, messages=context
        ) as stream:
            async for text in stream.text_stream:
                parts.append(text)
                yield json.dumps({"delta": text}) + "\n"
            final = await stream.get_final_message()
        history.append({"role": "assistant", "content": "".join(parts)})
        yield json.dumps({"done": True, "usage": final.usage.model_dump()}) + "\n"

    return StreamingResponse(generate(), media_type="application/x-ndjson")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")

"""`judge`: a model grades a reply against the author's rubric, and says why.

The grader is the bot's own model, through the test's provider: live with `--live`, recorded
with `--record`, and its recorded grade played back on replay (the grading request is part of
the cassette, so a changed rubric or reply makes the replay stale, never silently reused).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from botrunner.bot import Bot
from botrunner.providers.base import AssistantMessage, ModelRequest, Provider, ProviderError

INSTRUCTIONS = (
    "You grade one reply of a chatbot against a rubric written by the bot's author. Read the "
    "conversation, then decide whether the assistant's last reply meets the rubric. Answer "
    "with PASS or FAIL on the first line, then one or two sentences saying why."
)
MAX_TOKENS = 300
_VERDICT = re.compile(r"^\W*(PASS|FAIL)\b\W*(.*)", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Verdict:
    passed: bool
    reason: str
    # The grade could not be had (an API error, an answer that is neither PASS nor FAIL).
    error: str | None = None


def grading_request(bot: Bot, exchanges: list[tuple[str, str]], rubric: str) -> ModelRequest:
    lines = []
    for user, reply in exchanges:
        lines += [f"User: {user}", f"Assistant: {reply}"]
    prompt = (
        "<conversation>\n" + "\n".join(lines) + "\n</conversation>\n\n"
        "Grade the assistant's last reply.\n\n"
        f"Rubric: {rubric}"
    )
    return ModelRequest(
        model=bot.model.name,
        max_tokens=MAX_TOKENS,
        system=INSTRUCTIONS,
        messages=[{"role": "user", "content": [{"type": "text", "text": prompt}]}],
        temperature=0.0,
    )


async def judge(
    provider: Provider, bot: Bot, exchanges: list[tuple[str, str]], rubric: str
) -> Verdict:
    """Grade the last of `exchanges` (user message, reply) against `rubric`."""
    request = grading_request(bot, exchanges, rubric)
    reply: AssistantMessage | None = None
    try:
        async for item in provider.stream(
            request, deadline=time.monotonic() + bot.retry.timeout_seconds
        ):
            if isinstance(item, AssistantMessage):
                reply = item
    except ProviderError as exc:
        return Verdict(False, "", f"the grader could not answer: {exc.message}")
    except TimeoutError:
        return Verdict(False, "", "the grader did not answer in time")
    text = "".join(
        b.get("text", "") for b in (reply.content if reply else []) if b.get("type") == "text"
    )
    found = _VERDICT.match(text.strip())
    if found is None:
        return Verdict(False, text.strip(), "the grader's answer is neither PASS nor FAIL")
    reason = " ".join(found[2].split())
    return Verdict(found[1].upper() == "PASS", reason)

"""The native chat API: one streamed turn per POST, the stored history, forgetting a session.

    POST   /bots/{name}/chat/{session_id}   {"message": "...", "user": {...}}  -> NDJSON or SSE
    GET    /bots/{name}/chat/{session_id}   -> {"bot", "session", "user", "messages": [...]}
                                            (?full=true: the full record; see history.py)
    DELETE /bots/{name}/chat/{session_id}   -> {"deleted": true|false}
    GET    /bots                            -> {"bots": [...]} (what the chat page shows)

`/chat/{session_id}` is the same when exactly one bot is loaded.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Query, Request
from pydantic import ConfigDict

from botrunner.bot import Bot
from botrunner.providers.base import ProviderError
from botrunner.server import history
from botrunner.server.auth import resolve_user
from botrunner.server.bodies import CheckedBody
from botrunner.server.errors import ENGINE_ERRORS, ApiError, from_engine
from botrunner.server.metrics import refused
from botrunner.server.streaming import NDJSON, SSE, TurnStream, encoded, observed, wants_sse
from botrunner.store.base import ConversationKey

if TYPE_CHECKING:
    from botrunner.engine.turn import PreparedTurn
    from botrunner.server.metrics import TurnTimer
    from botrunner.server.state import ServerState

_SESSION = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
router = APIRouter()


class ChatIn(CheckedBody):
    model_config = ConfigDict(extra="ignore")
    message: str
    # Attributes for the system template (`{{ user.name }}`); `id` names the end user (see auth).
    user: dict[str, Any] | None = None


def state(request: Request) -> ServerState:
    return request.app.state.botrunner


def find_bot(request: Request, name: str | None, api: str = "native") -> Bot:
    live = state(request).live
    if name is None:
        bots = live.bots
        if len(bots) != 1:
            raise ApiError(
                404,
                "bot_required",
                f"{len(bots)} bots are loaded here ({', '.join(sorted(bots))}): "
                "use /bots/{name}/chat/{session_id}.",
            )
        return next(iter(bots.values()))
    bot = live.get(name)
    if bot is None:
        refused(state(request).metrics, "unknown", api, 404, "unknown_bot")
        known = ", ".join(sorted(live.bots)) or "none"
        raise ApiError(404, "unknown_bot", f"There is no bot named '{name}' (loaded: {known}).")
    return bot


def conversation_key(request: Request, bot: Bot, session: str, named: object) -> ConversationKey:
    if not _SESSION.match(session):
        raise ApiError(
            400, "invalid_session", "A session id is 1 to 128 letters, digits, '.', '_', ':', '-'."
        )
    principal = getattr(request.state, "principal", None)
    try:
        user = resolve_user(principal, named)
    except PermissionError as exc:
        raise ApiError(403, "user_not_allowed", str(exc)) from None
    except ValueError as exc:
        raise ApiError(400, "invalid_user", str(exc)) from None
    return ConversationKey(bot.name, user, session)


async def begin(
    request: Request,
    bot: Bot,
    session: str,
    message: str,
    user: dict[str, Any] | None,
    api: str,
    history: list[dict[str, Any]] | None = None,
) -> tuple[PreparedTurn, TurnTimer]:
    """Check and acknowledge one message; raise ApiError before anything streams.
    `history`: a conversation the client keeps (see `Engine.prepare`)."""
    st = state(request)
    attrs = dict(user or {})
    named = attrs.pop("id", None)
    principal = getattr(request.state, "principal", None)
    key = conversation_key(request, bot, session, named)
    if named is not None and key.user != str(named):
        attrs["id"] = str(named)  # a trusted backend's end user, as the backend names them
    try:
        prepared = await st.engine.prepare(
            bot,
            key,
            message,
            user=attrs,
            request_id=request.state.request_id,
            history=history,
            trusted=principal is not None and principal.trusted,
        )
    except ENGINE_ERRORS as exc:
        error = from_engine(exc)
        refused(st.metrics, bot.name, api, error.status, error.code)
        raise error from None
    return prepared, st.metrics.turn(bot.name, api)


async def _post(request: Request, name: str | None, session_id: str, body: ChatIn) -> TurnStream:
    bot = find_bot(request, name)
    prepared, timer = await begin(request, bot, session_id, body.message, body.user, "native")
    sse = wants_sse(request.headers.get("accept"))
    chunks = encoded(observed(prepared, timer), sse, request.state.request_id)
    return TurnStream(chunks, media_type=SSE if sse else NDJSON)


async def _history(
    request: Request, name: str | None, session_id: str, user: str | None, full: bool
):
    bot = find_bot(request, name)
    key = conversation_key(request, bot, session_id, user)
    principal = getattr(request.state, "principal", None)
    if full and (principal is None or not principal.trusted):
        raise ApiError(
            403,
            "full_record_not_allowed",
            "Only a trusted API key may read the full record (?full=true): give the key "
            '"trusted": true in the keys file, or name its principal in '
            "BOTRUNNER_TRUSTED_PRINCIPALS.",
        )
    messages = await state(request).engine.store.history(key)
    return {
        "bot": bot.name,
        "session": session_id,
        "user": key.user,
        "messages": history.full_record(messages) if full else history.for_end_user(messages),
    }


async def _delete(request: Request, name: str | None, session_id: str, user: str | None):
    bot = find_bot(request, name)
    key = conversation_key(request, bot, session_id, user)
    return {"deleted": bool(await state(request).engine.store.delete(key))}


_USER_QUERY = Query(None, description="The end user (no auth, or a trusted key only).")
_FULL_QUERY = Query(
    False, description="The full record, tool results included (a trusted key only)."
)


@router.post("/bots/{name}/chat/{session_id}")
async def post_chat(request: Request, name: str, session_id: str, body: ChatIn):
    return await _post(request, name, session_id, body)


@router.post("/chat/{session_id}")
async def post_chat_short(request: Request, session_id: str, body: ChatIn):
    return await _post(request, None, session_id, body)


@router.get("/bots/{name}/chat/{session_id}")
async def get_chat(
    request: Request,
    name: str,
    session_id: str,
    user: str | None = _USER_QUERY,
    full: bool = _FULL_QUERY,
):
    return await _history(request, name, session_id, user, full)


@router.get("/chat/{session_id}")
async def get_chat_short(
    request: Request, session_id: str, user: str | None = _USER_QUERY, full: bool = _FULL_QUERY
):
    return await _history(request, None, session_id, user, full)


@router.delete("/bots/{name}/chat/{session_id}")
async def delete_chat(request: Request, name: str, session_id: str, user: str | None = _USER_QUERY):
    return await _delete(request, name, session_id, user)


@router.delete("/chat/{session_id}")
async def delete_chat_short(request: Request, session_id: str, user: str | None = _USER_QUERY):
    return await _delete(request, None, session_id, user)


@router.get("/bots")
async def list_bots(request: Request) -> dict[str, Any]:
    st = state(request)
    out = []
    for bot in sorted(st.live.bots.values(), key=lambda b: b.name):
        problem = None
        try:
            st.engine.check(bot)
        except ProviderError as exc:
            problem = {"code": exc.code, "message": exc.message}
        out.append(
            {
                "name": bot.name,
                "description": bot.description,
                "greeting": bot.greeting,
                "version": bot.version,
                "problem": problem,
            }
        )
    return {"bots": out}

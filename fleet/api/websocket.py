"""The live-query results websocket (Fleet's raw-websocket protocol, used by fleetctl).

Client: `{"type":"auth","data":{"token"}}`, then `{"type":"select_campaign",
"data":{"campaign_id"}}`, both within `server.websocket_auth_timeout` of connecting (an
unauthenticated socket may not hold a connection). Server: `totals`, `status` and `result`
messages as they change, `error` with a string on failure. The campaign is completed when
the socket closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from fleet.core.authz import Viewer
from fleet.core.errors import FleetError
from fleet.service import campaigns
from fleet.service.context import ServiceContext
from fleet.service.sessions import authenticate

log = logging.getLogger("fleet.websocket")
router = APIRouter()

PATHS = ("/api/v1/fleet/results/websocket", "/api/latest/fleet/results/websocket",
         "/api/2022-04/fleet/results/websocket")


class ProtocolError(Exception):
    pass


async def _send(ws: WebSocket, type_: str, data: Any) -> None:
    await ws.send_text(orjson.dumps({"type": type_, "data": data}).decode())


async def _expect(ws: WebSocket, type_: str) -> Any:
    try:
        message = orjson.loads(await ws.receive_text())
    except orjson.JSONDecodeError:
        raise ProtocolError(f"expected {type_}") from None
    if not isinstance(message, dict) or message.get("type") != type_:
        raise ProtocolError(f"expected {type_}")
    return message.get("data")


async def _handshake(ws: WebSocket, ctx: ServiceContext) -> tuple[Viewer, int]:
    auth = await _expect(ws, "auth")
    token = auth.get("token") if isinstance(auth, dict) else None
    try:
        viewer = await authenticate(ctx, token if isinstance(token, str) else "")
    except FleetError:
        raise ProtocolError("unauthorized") from None
    if viewer.must_reset_password:
        raise ProtocolError("unauthorized")
    select = await _expect(ws, "select_campaign")
    campaign_id = select.get("campaign_id") if isinstance(select, dict) else None
    if not isinstance(campaign_id, int) or isinstance(campaign_id, bool):
        raise ProtocolError("expected select_campaign")
    if campaign_id == 0:
        raise ProtocolError("0 is not a valid campaign ID")
    return viewer, campaign_id


async def _stream(ws: WebSocket, ctx: ServiceContext, campaign_id: int) -> None:
    async for event in campaigns.watch(ctx, campaign_id):
        await _send(ws, event.type, event.data)


async def _until_closed(ws: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await ws.receive_text()


async def results_websocket(ws: WebSocket) -> None:
    ctx: ServiceContext = ws.app.state.ctx
    if not ctx.cfg.server.websockets_allow_unsafe_origin and not _same_origin(ws):
        await ws.close(code=1008)
        return
    await ws.accept()
    campaign_id = 0
    try:
        try:
            async with asyncio.timeout(ctx.cfg.server.websocket_auth_timeout):
                viewer, campaign_id = await _handshake(ws, ctx)
        except TimeoutError:
            raise ProtocolError("authentication timed out") from None
        await campaigns.load(ctx, viewer, campaign_id)
        stream = asyncio.create_task(_stream(ws, ctx, campaign_id))
        closed = asyncio.create_task(_until_closed(ws))
        done, pending = await asyncio.wait({stream, closed},
                                           return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.result()
    except WebSocketDisconnect:
        pass
    except (ProtocolError, FleetError) as exc:
        reason = exc.reason if isinstance(exc, FleetError) else str(exc)
        with contextlib.suppress(Exception):
            await _send(ws, "error", reason)
            await ws.close()
    finally:
        if campaign_id:
            with contextlib.suppress(Exception):
                await campaigns.complete(ctx, campaign_id)


def _same_origin(ws: WebSocket) -> bool:
    """Browsers send Origin; it must name this server. Non-browser clients send none."""
    origin = ws.headers.get("origin")
    if not origin:
        return True
    host = ws.headers.get("host", "")
    return origin.split("://", 1)[-1].rstrip("/") == host


for _path in PATHS:
    router.add_api_websocket_route(_path, results_websocket)

"""A scripted HTTP client that plays a bot against a test server."""

from __future__ import annotations

import base64
import uuid
from typing import Any

from aiohttp.test_utils import TestClient

BOT_API = "/swarming/api/v1/bot"


class ScriptedBot:
    """Speaks the bot protocol step by step, remembering its session like a bot does."""

    def __init__(self, client: TestClient, bot_id: str = "bot1", version: str = "") -> None:  # type: ignore[type-arg]
        self.client = client
        self.bot_id = bot_id
        self.version = version
        self.session: str | None = None
        self.dimensions: dict[str, list[str]] = {"id": [bot_id], "os": ["Linux"]}
        self.state: dict[str, Any] = {"running_time": 1, "sleep_streak": 0}

    async def expected_version(self) -> str:
        """Learns the bot version the server expects."""
        resp = await self.client.get("/api/v1/server")
        self.version = (await resp.json())["bot_version"]
        return self.version

    async def call(self, name: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
        """POSTs to a bot endpoint, checks the status, adopts any session."""
        resp = await self.client.post(f"{BOT_API}/{name}", json=body)
        assert resp.status == status, f"{name}: {resp.status} {await resp.text()}"
        assert resp.content_type == "application/json"
        data: dict[str, Any] = await resp.json()
        if isinstance(data.get("session"), str) and data["session"]:
            self.session = data["session"]
        return data

    async def handshake(self, status: int = 200) -> dict[str, Any]:
        """Opens a session."""
        if not self.version:
            await self.expected_version()
        return await self.call(
            "handshake",
            {
                "dimensions": self.dimensions,
                "state": self.state,
                "version": self.version,
                "session_id": f"{uuid.uuid4().hex}/1",
            },
            status,
        )

    async def poll(self, request_uuid: str | None = None, status: int = 200) -> dict[str, Any]:
        """Asks what to do next."""
        return await self.call(
            "poll",
            {
                "dimensions": self.dimensions,
                "state": self.state,
                "version": self.version,
                "session": self.session,
                "request_uuid": request_uuid or uuid.uuid4().hex,
            },
            status,
        )

    async def claim(self, run_id: str, claim_id: str = "claim-1") -> dict[str, Any]:
        """Confirms a reservation."""
        return await self.call(
            "claim", {"session": self.session, "claim_id": claim_id, "task_id": run_id}
        )

    async def update(
        self, run_id: str, output: bytes | None = None, offset: int = 0, **fields: Any
    ) -> dict[str, Any]:
        """Sends a task_update."""
        body: dict[str, Any] = {
            "id": self.bot_id,
            "task_id": run_id,
            "session": self.session,
            "cost_usd": 0.0,
            **fields,
        }
        if output is not None:
            body["output"] = base64.b64encode(output).decode()
            body["output_chunk_start"] = offset
        return await self.call(f"task_update/{run_id}", body)


def task_body(
    command: list[str] | None = None, *, wait: bool = False, **extra: Any
) -> dict[str, Any]:
    """A minimal valid NewTaskRequest body for pool `default`.

    With `wait`, the slice waits for capacity instead of ending NO_RESOURCE
    when no bot that could run it has been seen.
    """
    body: dict[str, Any] = {
        "name": "test",
        "task_slices": [
            {
                "expiration_secs": 600,
                "wait_for_capacity": wait,
                "properties": {
                    "command": command or ["echo", "hi"],
                    "dimensions": [{"key": "pool", "value": "default"}],
                    "execution_timeout_secs": 60,
                },
            }
        ],
    }
    body.update(extra)
    return body

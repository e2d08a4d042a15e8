"""Typed application state keys (aiohttp `web.AppKey`)."""

from __future__ import annotations

from aiohttp import web

from server.api.grpc_server import GrpcEndpoint
from server.auth.id_tokens import IdTokens
from server.botapi.bootstrap import BootstrapService
from server.botapi.runs import RunService
from server.botapi.service import BotService
from server.botapi.tokens import TokenService
from server.botcode import BotCode
from server.config.live import LiveConfig
from server.scheduler.sweeper import Sweeper
from server.scheduler.tasks import TaskService
from server.store.base import Store

CONFIG = web.AppKey("config", LiveConfig)
GRPC = web.AppKey("grpc", GrpcEndpoint)
BOTCODE = web.AppKey("botcode", BotCode)
BOT_SERVICE = web.AppKey("bot_service", BotService)
RUN_SERVICE = web.AppKey("run_service", RunService)
TASK_SERVICE = web.AppKey("task_service", TaskService)
TOKEN_SERVICE = web.AppKey("token_service", TokenService)
BOOTSTRAP_SERVICE = web.AppKey("bootstrap_service", BootstrapService)
ID_TOKENS = web.AppKey("id_tokens", IdTokens)
SWEEPER = web.AppKey("sweeper", Sweeper)
# For diagnostics and tests only: handlers never touch the store.
STORE = web.AppKey("store", Store)

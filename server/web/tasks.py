"""The task pages: the filtered list, one task (request, result, log, results, why
pending), its raw log and live output for the browser, and its action buttons.

A task's page shows the tail of its log as plain HTML, so it reads without
script; server/web/static/log.js then follows the output live from where
the page stopped, through `stdout:stream` here, which is the client API's
own StreamStdout handler given the sign-in cookie as its bearer token (an
HttpOnly cookie cannot be turned into a header by script, and the client
API itself reads no cookies, so it needs no CSRF defence).
"""

from __future__ import annotations

from aiohttp import web

from protos.api import tasks_pb2
from server.auth.principal import SCHEDULER
from server.model import TaskState
from server.scheduler.children import PARENT_TAG
from server.scheduler.pending import SliceReport
from server.web import buttons, gate
from server.web.queries import pager, task_filter
from server.web.render import SECURITY_HEADERS, page, render
from server.web.services import WEB

# How much of the log a task's page shows; the raw log link has all of it.
LOG_TAIL = 256 * 1024
# The rules of the client API calls whose answers a task's page shows.
TASK_PAGE_RPCS = (
    "Tasks.GetResult",
    "Tasks.GetRequest",
    "Tasks.GetStdout",
    "Tasks.GetResults",
    "Tasks.GetPending",
)

# Each button: the guarded Tasks RPC it calls and the request it sends.
TASK_ACTIONS: buttons.Actions = {
    "cancel": ("CancelTask", lambda t, _: tasks_pb2.TaskCancelRequest(task_id=t)),
    "kill": (
        "CancelTask",
        lambda t, _: tasks_pb2.TaskCancelRequest(task_id=t, kill_running=True),
    ),
    "pause": ("PauseTask", lambda t, _: tasks_pb2.TaskIdRequest(task_id=t)),
    "resume": ("ResumeTask", lambda t, _: tasks_pb2.TaskIdRequest(task_id=t)),
    "restart": ("RestartTask", lambda t, _: tasks_pb2.TaskIdRequest(task_id=t)),
    "retry": ("RetryTask", lambda t, _: tasks_pb2.TaskIdRequest(task_id=t)),
}


@page
async def task_list(request: web.Request) -> web.StreamResponse:
    """Tasks newest first, filtered by state, tags, pool and bot, paged by cursor."""
    services = request.app[WEB]
    me = await services.gate.check(request, "Tasks.ListTasks")
    chosen = task_filter(request.query)
    found = await services.tasks.list_tasks(chosen.query)
    context = {
        "filter": chosen,
        "tasks": found.items,
        "states": list(TaskState.__members__),
        **pager(request.rel_url, found.cursor),
    }
    return await render(request, "tasks.html", context, me=me)


@page
async def task_page(request: web.Request) -> web.StreamResponse:
    """One task: its request, result, timestamps, log, structured results, why pending."""
    services = request.app[WEB]
    task_id = request.match_info["task_id"]
    me = await services.gate.check(request, *TASK_PAGE_RPCS, task_id=task_id)
    _, result, size = await services.tasks.read_output(task_id, 0, 1)
    task_request = await services.tasks.get_request(task_id)
    start = max(0, size - LOG_TAIL)
    data = b""
    if size:
        data, _, _ = await services.tasks.read_output(task_id, start, LOG_TAIL)
    _, report = await services.tasks.get_report(task_id)
    slices: list[SliceReport] = []
    if result.state is TaskState.PENDING:
        _, slices = await services.pending.explain(task_id)
    context = {
        "task": result,
        "request": task_request,
        "log": data.decode("utf-8", errors="replace"),
        "log_start": start,
        "log_end": start + len(data),
        "log_size": size,
        "report": report,
        "slices": slices,
        "children_tag": f"{PARENT_TAG}:{result.task_id}",
        "can_control": me.has_role(SCHEDULER),
        "done": request.query.get("done", "") if request.query.get("done") in TASK_ACTIONS else "",
        "changed": request.query.get("changed", "1") != "0",
    }
    return await render(request, "task.html", context, me=me)


async def task_log(request: web.Request) -> web.StreamResponse:
    """The raw log as text/plain: GET /api/v1/tasks/{id}/log, signed in by cookie."""
    response = await request.app[WEB].log_handler(request.clone(headers=gate.credentials(request)))
    response.headers.update(SECURITY_HEADERS)
    return response


async def task_stream(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/tasks/{id}/stdout:stream (NDJSON or server-sent events), by cookie."""
    return await request.app[WEB].stream_handler(request.clone(headers=gate.credentials(request)))


@page
async def task_action(request: web.Request) -> web.StreamResponse:
    """A button: the Tasks RPC it stands for, through the client API's guard."""
    task_id = request.match_info["task_id"]
    action, method, reply = await buttons.press(
        request, request.app[WEB].tasks_api, TASK_ACTIONS, task_id
    )
    if action == "retry":
        raise web.HTTPSeeOther(f"/ui/tasks/{reply.task_id}")
    changed = reply.canceled if method == "CancelTask" else reply.changed
    raise web.HTTPSeeOther(f"/ui/tasks/{task_id}?done={action}&changed={int(changed)}")

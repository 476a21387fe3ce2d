"""Tools the orchestrator answers itself: the built-in `get_time`, and HTTP tools from the config.

An HTTP tool gets the call's arguments as a JSON POST body and its JSON answer is the result (a
text answer becomes {"text": ...}). Its URL is the operator's; the model only chooses the
arguments, so a redirect is followed only to the same scheme, host and port, and the answer is
read up to the result size limit.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiohttp

from voicefleet.orchestrator.tool_config import HttpToolConfig, ToolsConfig

_MAX_REDIRECTS = 3
_EXCERPT = 200

GET_TIME_SPEC: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The current date and time, in UTC unless a time zone is given.",
        "parameters": {
            "type": "object",
            "properties": {
                "timezone": {"type": "string", "description": "an IANA name, e.g. Europe/Paris"}
            },
        },
    },
}


class ToolFailed(Exception):
    """A tool call that produced no result; the message is what the model is told."""


def get_time(arguments: dict[str, Any], now: dt.datetime | None = None) -> dict[str, Any]:
    """The `get_time` tool: the time as words to say, and as ISO 8601."""
    name = arguments.get("timezone") or "UTC"
    if not isinstance(name, str):
        raise ToolFailed("timezone must be a string")
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolFailed(f"unknown time zone {name!r}") from None
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(zone)
    return {
        "text": f"It is {moment:%H:%M} {name} on {moment:%A}, {moment:%B} {moment.day}.",
        "iso": moment.isoformat(timespec="seconds"),
        "timezone": name,
    }


class ServerTools:
    """One session's tools answered by the orchestrator."""

    def __init__(self, config: ToolsConfig) -> None:
        self.config = config
        self._http = {tool.name: tool for tool in config.http}
        self._session: aiohttp.ClientSession | None = None

    def specs(self) -> list[dict[str, Any]]:
        """The tools as the chat request declares them."""
        builtin = [GET_TIME_SPEC] if "get_time" in self.config.builtin else []
        return [*builtin, *(tool.spec() for tool in self.config.http)]

    def names(self) -> set[str]:
        """The tools answered here."""
        return self.config.names()

    async def run(self, name: str, arguments: dict[str, Any]) -> Any:
        """Answer one call; ToolFailed when there is no result."""
        if name == "get_time" and "get_time" in self.config.builtin:
            return get_time(arguments)
        tool = self._http.get(name)
        if tool is None:
            raise ToolFailed(f"no tool named {name!r}")
        return await self._post(tool, arguments)

    async def close(self) -> None:
        """Close the HTTP connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _post(self, tool: HttpToolConfig, arguments: dict[str, Any]) -> Any:
        timeout = aiohttp.ClientTimeout(total=tool.timeout_s or self.config.call_timeout_s)
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        url = tool.url
        try:
            for _ in range(_MAX_REDIRECTS + 1):
                async with self._session.post(
                    url,
                    json=arguments,
                    headers={"Accept": "application/json", **tool.headers},
                    timeout=timeout,
                    allow_redirects=False,
                ) as response:
                    if response.status in (301, 302, 303, 307, 308):
                        url = _same_origin(url, response.headers.get("Location", ""))
                        continue
                    body = await _read(response, self.config.max_result_bytes)
                    return _result(tool.name, response.status, body)
        except TimeoutError:
            raise ToolFailed(f"{tool.name} did not answer in time") from None
        except aiohttp.ClientError as error:
            raise ToolFailed(f"{tool.name} could not be reached: {error}") from None
        raise ToolFailed(f"{tool.name}: more than {_MAX_REDIRECTS} redirects")


def _same_origin(url: str, location: str) -> str:
    target = urljoin(url, location)
    before, after = urlsplit(url), urlsplit(target)
    if not location or (before.scheme, before.netloc) != (after.scheme, after.netloc):
        raise ToolFailed("the tool's endpoint redirected to another host; not followed")
    return target


async def _read(response: aiohttp.ClientResponse, limit: int) -> bytes:
    body = b""
    while len(body) <= limit:
        chunk = await response.content.read(limit + 1 - len(body))
        if not chunk:
            break
        body += chunk
    if len(body) > limit:
        raise ToolFailed(f"the tool's answer is larger than {limit} bytes")
    return body


def _result(name: str, status: int, body: bytes) -> Any:
    text = body.decode("utf-8", errors="replace")
    if status >= 400:
        excerpt = " ".join(text.split())[:_EXCERPT]
        raise ToolFailed(f"{name} answered HTTP {status}: {excerpt}")
    try:
        return json.loads(text) if text.strip() else None
    except (json.JSONDecodeError, RecursionError):
        return {"text": text}

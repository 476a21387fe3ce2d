"""Worker-side sessions: one per StartSession, each with its own PAUSE/RESUME/STOP control."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from voicefleet.tts.adapters.base import SynthesisOptions
from voicefleet.tts.errors import InvalidRequest, Overloaded, SessionExists, SessionNotFound

if TYPE_CHECKING:
    from voicefleet.tts.stream import SynthesisStream

_SESSION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def validate_session_id(session_id: str) -> str:
    """Return the id if well formed, else INVALID_ARGUMENT."""
    if not _SESSION_ID.match(session_id):
        shown = session_id[:40] + ("…" if len(session_id) > 40 else "")
        raise InvalidRequest(
            f"session_id must be 1-128 characters of [A-Za-z0-9._:-], got {shown!r}"
        )
    return session_id


class StreamControl:
    """PAUSE/RESUME/STOP flags of one stream and the event its sender waits on."""

    def __init__(self) -> None:
        self.paused = False
        self.stopped = False
        self.changed = asyncio.Event()

    def pause(self) -> None:
        """Hold every further frame."""
        self.paused = True
        self.changed.set()

    def resume(self) -> None:
        """Release held frames."""
        self.paused = False
        self.changed.set()

    def stop(self) -> None:
        """End the stream."""
        self.stopped = True
        self.changed.set()


@dataclass
class WorkerSession:
    """A client's binding to a model on this worker."""

    id: str
    model_id: str
    options: SynthesisOptions
    created_at: float = field(default_factory=time.monotonic)
    last_active: float = field(default_factory=time.monotonic)
    frames_sent: int = 0
    stream: SynthesisStream | None = None
    paused: bool = False  # PAUSE with no stream running: the next stream starts held

    def touch(self) -> None:
        """Mark activity (keeps the idle reaper away)."""
        self.last_active = time.monotonic()


class SessionTable:
    """The open sessions, bounded by max_sessions."""

    def __init__(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self._sessions: dict[str, WorkerSession] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def reserve(self, session_id: str) -> None:
        """Check a new id can be opened (call before the slow model load)."""
        validate_session_id(session_id)
        if session_id in self._sessions:
            raise SessionExists(f"session {session_id!r} is already open on this worker")
        if len(self._sessions) >= self.max_sessions:
            raise Overloaded(f"worker is at max_sessions={self.max_sessions}; try another worker")

    def add(self, session: WorkerSession) -> None:
        """Register an opened session (re-checked: the load awaited)."""
        self.reserve(session.id)
        self._sessions[session.id] = session

    def get(self, session_id: str) -> WorkerSession:
        """The open session with this id, or NOT_FOUND."""
        session = self._sessions.get(validate_session_id(session_id))
        if session is None:
            raise SessionNotFound(f"no session {session_id!r} on this worker (StartSession first)")
        return session

    def remove(self, session_id: str) -> WorkerSession:
        """Forget a session and return it."""
        session = self.get(session_id)
        del self._sessions[session_id]
        return session

    def idle(self, idle_s: float) -> list[WorkerSession]:
        """Sessions without a stream and untouched for idle_s."""
        now = time.monotonic()
        return [
            s for s in self._sessions.values() if s.stream is None and now - s.last_active >= idle_s
        ]

    def all(self) -> list[WorkerSession]:
        """Every open session."""
        return list(self._sessions.values())

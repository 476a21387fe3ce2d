"""Worker-side sessions: one per StartSession, each with its own PAUSE/RESUME/STOP control."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
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
    """PAUSE/RESUME/STOP flags of one stream and the event its sender waits on.

    It also times how long a PAUSE or STOP waits to be obeyed: from the command to the sender's
    next check (`checkpoint`), which comes before every frame. A command that finds the sender
    waiting for audio (`idle`) is obeyed as it arrives.
    """

    def __init__(self, obeyed: Callable[[str, float], None] | None = None) -> None:
        self.paused = False
        self.stopped = False
        self.idle = False
        self.changed = asyncio.Event()
        self._obeyed = obeyed
        self._pending: tuple[str, float] | None = None

    def pause(self) -> None:
        """Hold every further frame."""
        self.paused = True
        self._requested("pause")
        self.changed.set()

    def hold(self) -> None:
        """Start held: a PAUSE that came before the stream (nothing to time)."""
        self.paused = True

    def resume(self) -> None:
        """Release held frames."""
        self.paused = False
        self.changed.set()

    def stop(self) -> None:
        """End the stream."""
        self.stopped = True
        self._requested("stop")
        self.changed.set()

    def checkpoint(self) -> None:
        """The sender looks at the flags before deciding on a frame: what it was told is obeyed."""
        if self._pending is not None and self._obeyed is not None:
            command, at = self._pending
            self._obeyed(command, time.perf_counter() - at)
        self._pending = None

    def _requested(self, command: str) -> None:
        if self.idle:
            self._pending = None
            if self._obeyed is not None:
                self._obeyed(command, 0.0)
        elif self._pending is None:
            self._pending = (command, time.perf_counter())


@dataclass
class WorkerSession:
    """A client's binding to a model on this worker, owned by the caller that opened it."""

    id: str
    model_id: str
    options: SynthesisOptions
    owner: str
    created_at: float = field(default_factory=time.monotonic)
    last_active: float = field(default_factory=time.monotonic)
    frames_sent: int = 0
    stream: SynthesisStream | None = None
    paused: bool = False  # PAUSE with no stream running: the next stream starts held
    unpaced: bool = False  # frames leave as soon as made (StartSessionRequest.unpaced)

    def touch(self) -> None:
        """Mark activity (keeps the idle reaper away)."""
        self.last_active = time.monotonic()


class SessionTable:
    """The open sessions, bounded by max_sessions and per owner by max_per_owner.

    Sessions are keyed by (owner, id): one caller never sees another's sessions, so an id
    someone else holds is as unknown as an id nobody holds (and can be opened again).
    """

    def __init__(self, max_sessions: int, max_per_owner: int | None = None) -> None:
        self.max_sessions = max_sessions
        self.max_per_owner = max_per_owner
        self._sessions: dict[tuple[str, str], WorkerSession] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def reserve(self, owner: str, session_id: str) -> None:
        """Check a new id can be opened (call before the slow model load)."""
        validate_session_id(session_id)
        if (owner, session_id) in self._sessions:
            raise SessionExists(f"session {session_id!r} is already open on this worker")
        if len(self._sessions) >= self.max_sessions:
            raise Overloaded(f"worker is at max_sessions={self.max_sessions}; try another worker")
        if self.max_per_owner is not None:
            held = sum(1 for key in self._sessions if key[0] == owner)
            if held >= self.max_per_owner:
                raise Overloaded(
                    f"caller {owner!r} already holds {held} sessions on this worker "
                    f"(limits.max_sessions_per_credential={self.max_per_owner}); "
                    "end one or try another worker"
                )

    def add(self, session: WorkerSession) -> None:
        """Register an opened session (re-checked: the load awaited)."""
        self.reserve(session.owner, session.id)
        self._sessions[session.owner, session.id] = session

    def get(self, owner: str, session_id: str) -> WorkerSession:
        """The caller's open session with this id, or NOT_FOUND (the same for anyone else's)."""
        session = self._sessions.get((owner, validate_session_id(session_id)))
        if session is None:
            raise SessionNotFound(f"no session {session_id!r} on this worker (StartSession first)")
        return session

    def remove(self, session: WorkerSession) -> bool:
        """Forget a session; False if it was already gone."""
        if self._sessions.get((session.owner, session.id)) is not session:
            return False
        del self._sessions[session.owner, session.id]
        return True

    def idle(self, idle_s: float) -> list[WorkerSession]:
        """Sessions without a stream and untouched for idle_s."""
        now = time.monotonic()
        return [
            s for s in self._sessions.values() if s.stream is None and now - s.last_active >= idle_s
        ]

    def streaming(self) -> list[WorkerSession]:
        """Sessions with a Synthesize stream running."""
        return [s for s in self._sessions.values() if s.stream is not None]

    def all(self) -> list[WorkerSession]:
        """Every open session."""
        return list(self._sessions.values())

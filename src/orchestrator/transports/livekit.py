"""The LiveKit transport in production: config, tokens for the web page, the real room, and the
livekit-agents worker whose jobs run the LiveKitBridge (livekit_bridge.py).

A job: connect to the room (audio only), wait for the first participant, publish one 48 kHz mono
track, subscribe to the participant's microphone, and run one TurnController through the bridge
until the participant leaves or the session ends. Each job builds its own Services (the ASR
model, a fleet view, worker channels) with `app.build`, because livekit-agents runs jobs in
their own processes. No LiveKit server is reachable from the tests: this path is kept thin and
is exercised in deployment (docker-compose: livekit-server + `voicefleet` with LIVEKIT_URL,
LIVEKIT_API_KEY and LIVEKIT_API_SECRET set); the bridge it drives is tested with a fake room.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import os
import re
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from livekit import api, rtc
from livekit.protocol.agent_dispatch import RoomAgentDispatch
from livekit.protocol.room import RoomConfiguration

from voicefleet.audio.format import OUTPUT_SAMPLE_RATE
from voicefleet.orchestrator.config import LiveKitConfig
from voicefleet.orchestrator.protocol import Hello
from voicefleet.orchestrator.transports.livekit_bridge import CONTROL_TOPIC, LiveKitBridge

if TYPE_CHECKING:
    from livekit import agents

    from voicefleet.orchestrator.config import OrchestratorConfig

log = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Audio the published track may hold ahead of playback: the pipeline already paces frames in
# real time with a small lead, and AudioCancel clears this queue.
OUTPUT_QUEUE_MS = 200


class TokenRequestError(ValueError):
    """A token request with a bad room or identity; the message says which and why."""


def _check_name(kind: str, value: str) -> None:
    if not _NAME.fullmatch(value):
        raise TokenRequestError(
            f"{kind} must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-', got {value!r}"
        )


def mint_token(
    api_key: str,
    api_secret: str,
    room: str,
    identity: str,
    ttl: int,
    *,
    agent_name: str | None = None,
) -> str:
    """A JWT that lets `identity` join `room` for `ttl` seconds (and dispatches the agent)."""
    _check_name("room", room)
    _check_name("identity", identity)
    if ttl <= 0:
        raise TokenRequestError(f"ttl must be positive, got {ttl}")
    if not api_key or not api_secret:
        raise TokenRequestError("the LiveKit API key and secret are not configured")
    token = (
        api.AccessToken(api_key, api_secret)
        .with_identity(identity)
        .with_ttl(datetime.timedelta(seconds=ttl))
        .with_grants(api.VideoGrants(room_join=True, room=room))
    )
    if agent_name:
        # The worker registers with an agent name (explicit dispatch): the token asks for it.
        dispatch = RoomAgentDispatch(agent_name=agent_name)
        token = token.with_room_config(RoomConfiguration(agents=[dispatch]))
    return token.to_jwt()


class RealRoom:
    """RoomBoundary over a connected rtc.Room and one remote participant."""

    def __init__(
        self, room: rtc.Room, participant: rtc.RemoteParticipant, source: rtc.AudioSource
    ) -> None:
        self.room = room
        self.participant = participant
        self.source = source
        self._left = asyncio.Event()
        self._data: asyncio.Queue[bytes] = asyncio.Queue()
        room.on("participant_disconnected", self._on_participant_disconnected)
        room.on("disconnected", lambda *_: self._left.set())
        room.on("data_received", self._on_data)

    @classmethod
    async def join(cls, room: rtc.Room, participant: rtc.RemoteParticipant) -> RealRoom:
        """Publish the agent's 48 kHz mono track and watch the participant."""
        source = rtc.AudioSource(OUTPUT_SAMPLE_RATE, 1, queue_size_ms=OUTPUT_QUEUE_MS)
        track = rtc.LocalAudioTrack.create_audio_track("voicefleet", source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await room.local_participant.publish_track(track, options)
        return cls(room, participant, source)

    def _on_participant_disconnected(self, participant: rtc.RemoteParticipant) -> None:
        if participant.identity == self.participant.identity:
            self._left.set()

    def _on_data(self, packet: rtc.DataPacket) -> None:
        sender = packet.participant
        mine = sender is not None and sender.identity == self.participant.identity
        if mine and packet.topic == CONTROL_TOPIC:
            self._data.put_nowait(packet.data)

    async def _microphone(self) -> rtc.Track:
        for publication in self.participant.track_publications.values():
            if publication.kind == rtc.TrackKind.KIND_AUDIO and publication.track is not None:
                return publication.track
        found: asyncio.Future[rtc.Track] = asyncio.get_running_loop().create_future()

        def on_subscribed(
            track: rtc.Track, _publication: rtc.RemoteTrackPublication, who: rtc.RemoteParticipant
        ) -> None:
            mine = who.identity == self.participant.identity
            if mine and track.kind == rtc.TrackKind.KIND_AUDIO and not found.done():
                found.set_result(track)

        self.room.on("track_subscribed", on_subscribed)
        try:
            return await found
        finally:
            self.room.off("track_subscribed", on_subscribed)

    async def audio_frames(self) -> AsyncIterator[rtc.AudioFrame]:
        """The participant's microphone, as LiveKit delivers it."""
        stream = rtc.AudioStream(await self._microphone())
        try:
            async for event in stream:
                yield event.frame
        finally:
            await stream.aclose()

    async def data_messages(self) -> AsyncIterator[bytes]:
        """Control messages from the participant."""
        while True:
            yield await self._data.get()

    async def wait_participant_left(self) -> None:
        """Until the participant (or the room) is gone."""
        await self._left.wait()

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        """Queue a frame on the published track."""
        await self.source.capture_frame(frame)

    def clear_output(self) -> None:
        """Drop queued audio (barge-in, interrupt)."""
        self.source.clear_queue()

    async def send_data(self, payload: bytes, topic: str) -> None:
        """A reliable data message to the participant only."""
        await self.room.local_participant.publish_data(
            payload, reliable=True, destination_identities=[self.participant.identity], topic=topic
        )

    async def close(self, reason: str) -> None:
        """Release the audio source; the job ends the room connection."""
        log.info("livekit session with %s closed: %s", self.participant.identity, reason)
        await self.source.aclose()


async def run_job(config: OrchestratorConfig, ctx: agents.JobContext) -> None:
    """A job's entrypoint: one participant, one TurnController, until either ends."""
    from livekit import agents

    from voicefleet.orchestrator.app import build
    from voicefleet.orchestrator.controller import TurnController
    from voicefleet.orchestrator.responder import create_responder

    orchestrator = build(config)
    services = orchestrator.services
    await services.asr.start()
    await orchestrator.fleet.start()
    try:
        await ctx.connect(auto_subscribe=agents.AutoSubscribe.AUDIO_ONLY)
        participant = await ctx.wait_for_participant()
        room = await RealRoom.join(ctx.room, participant)
        bridge = LiveKitBridge(room, Hello(sample_rate=OUTPUT_SAMPLE_RATE))
        session_id = uuid.uuid4().hex[:16]
        responder = create_responder(config.responder)
        session = TurnController(session_id, bridge.hello, services, responder, bridge, "livekit")
        log.info("livekit job %s: session %s for %s", ctx.job.id, session_id, participant.identity)
        await bridge.run(session)
    finally:
        await orchestrator.fleet.close()
        await services.pool.close()
        services.asr.close()
        ctx.shutdown("session ended")


def worker_options(config: OrchestratorConfig, livekit: LiveKitConfig) -> agents.WorkerOptions:
    """livekit-agents options: our entrypoint, the agent name, the server and its credentials."""
    from livekit import agents

    credentials = livekit.credentials()
    if credentials is None:
        raise ValueError(
            f"the LiveKit worker needs {livekit.api_key_env} and {livekit.api_secret_env} set"
        )
    url = livekit.url or os.environ.get("LIVEKIT_URL")
    if not url:
        raise ValueError("the LiveKit worker needs livekit.url or LIVEKIT_URL")
    return agents.WorkerOptions(
        # A partial of a module-level function: job processes receive it pickled.
        entrypoint_fnc=functools.partial(run_job, config),
        agent_name=livekit.agent_name,
        ws_url=url,
        api_key=credentials[0],
        api_secret=credentials[1],
    )


async def run_worker(config: OrchestratorConfig, livekit: LiveKitConfig) -> None:
    """Register with the LiveKit server and take jobs until cancelled."""
    from livekit import agents

    server = agents.AgentServer.from_server_options(worker_options(config, livekit))
    try:
        await server.run()
    finally:
        await server.aclose()

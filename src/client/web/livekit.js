// LiveKit mode: the same conversation through a LiveKit room instead of the orchestrator's `/ws`.
//
// It has the transport shape documented in websocket.js, so app.js drives it the same way:
//
//   the orchestrator's GET /token?room=R&identity=I  ->  { token, url }  (the LiveKit server;
//                      with Authorization: Bearer <the Token setting> when one is given)
//   microphone  ->  published to the room as a WebRTC track (sendAudio has nothing to do)
//   agent voice <-  the agent's 48 kHz track, played by one <audio> element (onAudio is unused)
//   events      <-  JSON data messages on topic "voicefleet.events", the /ws protocol's events
//   control     ->  JSON data messages on topic "voicefleet.control": text, interrupt, bye
//
// Beyond websocket.js's options it takes { room, identity, microphone }: the room to join, this
// participant's name in it, and the MediaStreamTrack to publish (the AudioEngine's, so there is
// one capture and the "You" meter shows what the agent hears). It also has stopPlayback(), since
// the agent's voice plays here and not in the AudioEngine's player.
//
// livekit-client is loaded only when LiveKit mode connects, from the copy vendor.sh puts in
// vendor/: the page needs no CDN, and WebSocket mode works without the bundle.

const SDK_URL = new URL("./vendor/livekit-client.esm.mjs", import.meta.url);
const BUNDLE_MISSING = "LiveKit mode needs the livekit-client bundle: run src/client/web/vendor.sh";
const EVENTS_TOPIC = "voicefleet.events"; // livekit_bridge.py EVENTS_TOPIC
const CONTROL_TOPIC = "voicefleet.control"; // livekit_bridge.py CONTROL_TOPIC
const TOKEN_PATH = "/token";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
let sdkLoading = null;

/** The livekit-client module, imported once. */
function loadSdk() {
  sdkLoading ??= import(SDK_URL.href).catch((error) => {
    sdkLoading = null; // running vendor.sh and connecting again must work without a reload
    console.warn("livekit-client bundle:", error);
    throw new Error(BUNDLE_MISSING);
  });
  return sdkLoading;
}

export class LiveKitTransport {
  static mode = "livekit";
  /** livekit-client's version once its bundle has loaded; null before. */
  static sdkVersion = null;

  constructor({ hello, room, identity, microphone, onEvent, onClose }) {
    // The orchestrator's access token (the page's Token setting): /token asks for it.
    this.accessToken = hello?.token ?? "";
    this.roomName = room;
    this.identity = identity;
    this.microphone = microphone ?? null;
    this.onEvent = onEvent;
    this.onClose = onClose;
    this.sdk = null;
    this.room = null;
    this.url = null;
    this.muted = false;
    this.finished = false;
    this.hangUpReason = null;
    // The agent's voice. One element for the whole session, so a mute set before its track
    // arrives still holds.
    this.audio = document.createElement("audio");
    this.audio.autoplay = true;
  }

  /** Join the room and publish the microphone; resolves once both are done. */
  async connect() {
    try {
      // The token first: when the orchestrator has no LiveKit, the bundle is not worth loading.
      const { token, url } = await this.fetchToken();
      this.url = url;
      this.sdk = await loadSdk().catch((error) => {
        throw this.fail("livekit_bundle", error.message);
      });
      LiveKitTransport.sdkVersion = this.sdk.version;
      await this.join(url, token);
    } catch (error) {
      this.finish({ code: 0, reason: error.message });
      throw error;
    }
    // There is no `ready` over LiveKit: the agent joins on its own and then sends `state`.
    return { type: "ready", session_id: null, room: this.roomName, identity: this.identity, url: this.url };
  }

  async fetchToken() {
    const query = new URLSearchParams({ room: this.roomName, identity: this.identity });
    let response;
    try {
      const headers = this.accessToken ? { Authorization: `Bearer ${this.accessToken}` } : {};
      response = await fetch(`${TOKEN_PATH}?${query}`, { cache: "no-store", headers });
    } catch (error) {
      throw this.fail("livekit_token", `could not reach ${TOKEN_PATH}: ${error.message}`);
    }
    // The orchestrator explains every refusal as { error, message }; show its words.
    const body = await response.json().catch(() => ({}));
    if (!response.ok || !body.token) {
      throw this.fail(body.error ?? "livekit_token", body.message ?? `${TOKEN_PATH} answered ${response.status}`);
    }
    if (!body.url) {
      throw this.fail("livekit_disabled", "the orchestrator knows no LiveKit URL (set livekit.url or LIVEKIT_URL)");
    }
    return body;
  }

  async join(url, token) {
    const { Room, RoomEvent, Track } = this.sdk;
    // No WebAudio mixing: the agent's voice must go through this.audio, which mutes at once.
    const room = new Room({ webAudioMix: false });
    this.room = room;
    room.on(RoomEvent.DataReceived, (payload, _participant, _kind, topic) => this.received(payload, topic));
    room.on(RoomEvent.TrackSubscribed, (track) => {
      if (track.kind === Track.Kind.Audio) this.play(track);
    });
    room.on(RoomEvent.TrackUnsubscribed, (track) => track.detach(this.audio));
    room.on(RoomEvent.ParticipantDisconnected, (participant) => {
      // The agent leaves when its session ends (bye, a limit, an error): the conversation is over.
      if (participant.isAgent) this.hangUp("the agent left the room");
    });
    room.on(RoomEvent.AudioPlaybackStatusChanged, (playing) => {
      if (!playing) this.audioBlocked();
    });
    room.on(RoomEvent.Disconnected, (reason) => this.disconnected(reason));

    try {
      await room.connect(url, token);
    } catch (error) {
      throw this.fail("livekit_connect", `could not connect to ${url}: ${error.message}`);
    }
    try {
      if (this.microphone) {
        await room.localParticipant.publishTrack(this.microphone, { source: Track.Source.Microphone });
      } else {
        await room.localParticipant.setMicrophoneEnabled(true);
      }
    } catch (error) {
      throw this.fail("livekit_connect", `could not publish the microphone: ${error.message}`);
    }
    document.body.append(this.audio);
    // Connect was clicked moments ago, so the browser still lets audio start without a prompt.
    await room.startAudio().catch(() => this.audioBlocked());
  }

  /** Report an error through onEvent, as the server's errors are; returns it to throw. */
  fail(code, message) {
    this.onEvent({ type: "error", code, message, fatal: false });
    const error = new Error(`${code}: ${message}`);
    error.reported = true;
    return error;
  }

  received(payload, topic) {
    if (topic !== EVENTS_TOPIC) return;
    let message;
    try {
      message = JSON.parse(decoder.decode(payload));
    } catch {
      this.onEvent({ type: "error", code: "bad_server_message", message: "the agent sent invalid JSON", fatal: false });
      return;
    }
    this.followPlayback(message);
    this.onEvent(message);
  }

  /**
   * The agent's track keeps playing whatever reached the browser, so pause and cancel mute the
   * element at once (the server also clears its queue); the next reply or a resume unmutes it.
   */
  followPlayback(message) {
    switch (message.type) {
      case "audio_pause":
      case "audio_cancel":
        this.setMuted(true);
        break;
      case "audio_resume":
      case "audio_start":
        this.setMuted(false);
        break;
    }
  }

  setMuted(muted) {
    this.muted = muted;
    this.audio.muted = muted;
  }

  play(track) {
    track.attach(this.audio);
    this.audio.muted = this.muted; // attach() unmutes the element
  }

  audioBlocked() {
    this.onEvent({
      type: "error",
      code: "audio_blocked",
      message: "the browser blocked the agent's audio: click anywhere on the page to hear it",
      fatal: false,
    });
    document.addEventListener("click", () => this.room?.startAudio().catch(() => {}), { once: true });
  }

  get connected() {
    return this.room !== null && this.room.state === this.sdk.ConnectionState.Connected;
  }

  send(message) {
    if (!this.connected) return;
    const payload = encoder.encode(JSON.stringify(message));
    return this.room.localParticipant
      .publishData(payload, { reliable: true, topic: CONTROL_TOPIC })
      .catch((error) => console.warn(`livekit: could not send ${message.type}:`, error));
  }

  sendAudio() {
    // The microphone track is published to the room; WebRTC carries it.
  }

  sendText(text, mode = "answer") {
    this.send({ type: "text", text, mode });
  }

  /** Silence the agent now (the page interrupts, or types over a reply); audio_start unmutes. */
  stopPlayback() {
    this.setMuted(true);
  }

  interrupt() {
    this.stopPlayback(); // at once; the server confirms with audio_cancel
    this.send({ type: "interrupt" });
  }

  /** Say bye (so the agent ends the session now, not when it notices we left), then leave. */
  async close() {
    if (!this.room) return;
    await this.send({ type: "bye" });
    // A microphone handed over by the AudioEngine is the engine's to stop.
    await this.room.disconnect(this.microphone === null).catch(() => {});
  }

  async hangUp(reason) {
    this.hangUpReason = reason;
    await this.room?.disconnect(this.microphone === null);
  }

  disconnected(reason) {
    const name = reason === undefined ? "" : this.sdk.DisconnectReason[reason];
    this.finish({ code: reason ?? 0, reason: this.hangUpReason ?? `LiveKit: ${name || "disconnected"}` });
  }

  finish({ code, reason }) {
    this.audio.remove();
    if (this.finished) return;
    this.finished = true;
    this.onClose({ code, reason });
  }
}

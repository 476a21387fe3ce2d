// The voicefleet web page: connects a microphone and a speaker to the orchestrator.
//
// app.js owns the page (controls, meters, transcript, errors) and one Session at a time; the
// audio lives in audio.js, the wire protocol in a transport module (websocket.js or livekit.js).

import { AudioEngine } from "./audio.js";
import { LiveKitTransport } from "./livekit.js";
import { TranscriptView } from "./transcript.js";
import { WebSocketTransport } from "./websocket.js";

// Transports by mode, all with the interface websocket.js documents. A mode's radio button is
// enabled when its transport is registered here.
const TRANSPORTS = new Map([
  [WebSocketTransport.mode, WebSocketTransport],
  [LiveKitTransport.mode, LiveKitTransport],
]);

// Everything worth observing, kept current. Tests read it through `window.voicefleet`;
// the functions are not enumerable so the state serializes as plain data.
const store = {
  state: "disconnected",
  connected: false,
  sessionId: null,
  inputSampleRate: null, // the rate declared in hello (and actually sent)
  contextSampleRate: null,
  transcripts: [], // final transcripts, in order
  agentText: "", // the latest agent turn's text so far
  errors: [], // every error: { code, message, fatal }
  cancels: [], // every audio_cancel: { turn, reason }
  metrics: [], // every metrics event, as received
  playedSamples: 0, // 48 kHz samples the player has played
  playedNonSilentSamples: 0, // of which louder than -60 dBFS
  flushes: 0,
  underruns: 0,
  bufferedMs: 0,
  micChunks: 0,
  // livekit-client's version once LiveKit mode has loaded its bundle (null before).
  get livekitVersion() {
    return LiveKitTransport.sdkVersion;
  },
};
Object.defineProperties(store, {
  send: { value: (text, mode = "answer") => session?.sendText(text, mode) },
  interrupt: { value: () => session?.interrupt() },
});
window.voicefleet = store;

const $ = (id) => document.getElementById(id);
const ui = {
  connect: $("connect"),
  state: $("state"),
  mode: () => document.querySelector('input[name="mode"]:checked').value,
  settings: $("settings-fields"),
  serverUrl: $("server-url"),
  token: $("token"),
  room: $("room"),
  identity: $("identity"),
  voice: $("voice"),
  model: $("model"),
  language: $("language"),
  micMeter: $("mic-meter"),
  agentMeter: $("agent-meter"),
  playback: $("playback"),
  sayForm: $("say-form"),
  sayText: $("say-text"),
  sayButton: $("say-button"),
  interrupt: $("interrupt"),
  errors: $("errors"),
  metrics: $("metrics"),
};
const transcript = new TranscriptView($("transcript"));
const levels = { mic: 0, agent: 0 };
let session = null;

/** Settings from the form, which the query string pre-fills (?token=…&voice=…&rate=…). */
function readSettings() {
  const query = new URLSearchParams(location.search);
  const rate = query.get("rate");
  return {
    mode: ui.mode(),
    url: ui.serverUrl.value.trim(),
    // LiveKit mode: the room to join and this participant's name in it.
    room: ui.room.value.trim() || "voicefleet",
    identity: ui.identity.value.trim(),
    // 16 kHz is what the orchestrator's VAD and ASR use; "native" sends the context's rate.
    inputRate: rate === "native" ? null : Number(rate ?? 16000),
    processing: query.get("processing") !== "off",
    hello: {
      // The browser cancels the reply's echo itself (getUserMedia echoCancellation) unless
      // ?processing=off, when the server does it.
      echo_cancellation: query.get("processing") !== "off" ? "client" : "auto",
      language: ui.language.value.trim() || "en",
      voice: ui.voice.value.trim(),
      model: ui.model.value.trim(),
      token: ui.token.value.trim(),
    },
  };
}

function prefillSettings() {
  const query = new URLSearchParams(location.search);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  ui.serverUrl.value = query.get("ws") ?? `${scheme}//${location.host}/ws`;
  // Two tabs must not share an identity: LiveKit would disconnect the first when the second joins.
  ui.identity.value = `web-${Math.random().toString(36).slice(2, 10)}`;
  for (const name of ["token", "voice", "model", "language", "room", "identity"]) {
    if (query.has(name)) ui[name].value = query.get(name);
  }
}

/** One conversation: the audio engine, a transport, and what the server says. */
class Session {
  constructor(settings) {
    this.settings = settings;
    this.engine = null;
    this.transport = null;
    // After a local interrupt, frames of the interrupted reply still in flight are dropped
    // until the next reply starts.
    this.discarding = false;
    this.started = false; // ready was received
    this.closed = false;
  }

  async start() {
    const { settings } = this;
    this.engine = new AudioEngine({
      inputRate: settings.inputRate,
      processing: settings.processing,
      onMicChunk: (pcm, rms) => this.micChunk(pcm, rms),
      onPlayerStats: (stats) => playerStats(stats),
    });
    await this.engine.start(); // opens the microphone first: Connect is the user's consent
    store.inputSampleRate = this.engine.inputRate;
    store.contextSampleRate = this.engine.contextRate;
    const Transport = TRANSPORTS.get(settings.mode);
    this.transport = new Transport({
      url: settings.url,
      hello: { sample_rate: this.engine.inputRate, ...settings.hello },
      room: settings.room,
      identity: settings.identity,
      microphone: this.engine.stream.getAudioTracks()[0],
      onEvent: (message) => this.event(message),
      onAudio: (pcm) => this.audio(pcm),
      onClose: ({ code, reason }) => this.closedByPeer(code, reason),
    });
    const ready = await this.transport.connect();
    store.sessionId = ready.session_id;
    store.connected = true;
    this.started = true;
    // Over LiveKit the agent joins the room on its own, then announces itself with a `state`.
    if (settings.mode === "livekit" && store.state === "disconnected") setState("waiting_for_agent");
    return ready;
  }

  micChunk(pcm, rms) {
    levels.mic = Math.max(levels.mic * 0.8, rms);
    store.micChunks += 1;
    this.transport?.sendAudio(pcm);
  }

  audio(pcm) {
    if (!this.discarding) this.engine.play(pcm);
  }

  event(message) {
    switch (message.type) {
      case "state":
        setState(message.state);
        break;
      case "transcript":
        if (message.final) {
          store.transcripts.push(message.text);
          transcript.final(message.turn, message.text);
        } else {
          transcript.partial(message.text);
        }
        break;
      case "agent_text":
        if (!transcript.agentLines.has(message.turn)) store.agentText = "";
        store.agentText += message.text;
        transcript.agent(message.turn, message.text, message.final);
        break;
      case "tool_request":
        transcript.tool(`${message.tool_name}(${JSON.stringify(message.parameters)}) asked`);
        break;
      case "tool_result":
        transcript.tool(
          `${message.tool_name} (${message.by}) → ` +
            (message.error ? `error: ${message.error}` : JSON.stringify(message.result)),
        );
        break;
      case "tool_cancelled":
        transcript.tool(`${message.request_id} cancelled (${message.reason})`);
        break;
      case "audio_start":
        this.discarding = false;
        break;
      case "audio_end":
        this.engine.endOfReply();
        break;
      case "audio_pause":
        this.engine.pause();
        break;
      case "audio_resume":
        this.engine.resume();
        break;
      case "audio_cancel":
        this.engine.flush();
        this.discarding = true;
        store.cancels.push({ turn: message.turn, reason: message.reason });
        transcript.cancelled(message.turn, message.reason);
        break;
      case "metrics":
        store.metrics.push(message);
        showMetrics(message);
        break;
      case "error":
        showError(message);
        break;
    }
  }

  /** Stop the agent now: locally at once, and tell the server (which confirms with audio_cancel). */
  interrupt() {
    this.stopPlayback();
    this.transport?.interrupt();
  }

  sendText(text, mode) {
    // A new turn cuts the current reply short on the server too; don't make the person wait.
    if (store.state === "speaking" || store.state === "barged_in") this.stopPlayback();
    this.transport?.sendText(text, mode);
  }

  stopPlayback() {
    this.engine?.flush();
    this.discarding = true;
    // A transport that plays the agent itself (LiveKit: an <audio> element) silences it too.
    this.transport?.stopPlayback?.();
  }

  async stop() {
    this.closed = true;
    await this.transport?.close();
    await this.engine?.stop();
  }

  closedByPeer(code, reason) {
    // Before ready, a close is a failed connect(), which reports it.
    if (this.closed || !this.started) return;
    // The server hung up (fatal error, limit, shutdown): release the microphone too.
    this.closed = true;
    this.engine?.stop();
    finishSession(`disconnected by the server (${reason || `code ${code}`})`);
  }
}

function setState(state) {
  store.state = state;
  ui.state.textContent = state.replace(/_/g, " ");
  ui.state.dataset.state = state;
}

function playerStats(stats) {
  store.playedSamples = stats.playedSamples;
  store.playedNonSilentSamples = stats.nonSilentSamples;
  store.flushes = stats.flushes;
  store.underruns = stats.underruns;
  store.bufferedMs = Math.round(stats.bufferedMs);
  levels.agent = Math.max(levels.agent * 0.8, stats.rms);
  ui.playback.textContent =
    `buffer ${store.bufferedMs} ms · played ${(stats.playedSamples / 48000).toFixed(1)} s` +
    ` · underruns ${stats.underruns} · flushes ${stats.flushes}`;
}

function showError({ code, message, fatal = false }) {
  store.errors.push({ code, message, fatal });
  const item = document.createElement("li");
  item.textContent = `${code}: ${message}${fatal ? " (session ended)" : ""}`;
  ui.errors.append(item);
  ui.errors.hidden = false;
}

/** The turn line: how the turn ended ("end of turn: semantic/complete after 300 ms"), latencies. */
function showMetrics(metrics) {
  const has = (key) => metrics[key] !== null && metrics[key] !== undefined;
  const parts = [];
  if (has("end_of_turn")) {
    // endpoint_ms: the silence the policy waited after the last word before ending the turn.
    const waited = has("endpoint_ms") ? ` after ${Math.round(metrics.endpoint_ms)} ms` : "";
    parts.push(`end of turn: ${metrics.end_of_turn}${waited}`);
  }
  const names = [
    ...(has("end_of_turn") ? [] : [["endpoint_ms", "endpoint"]]),
    ["asr_ms", "asr"],
    ["first_frame_ms", "first frame"],
    ["ttfa_ms", "time to first audio"],
    ["barge_in_ms", "barge-in"],
  ];
  for (const [key, label] of names.filter(([key]) => has(key))) {
    parts.push(`${label} ${Math.round(metrics[key])} ms`);
  }
  ui.metrics.textContent = `turn ${metrics.turn}: ${parts.join(" · ") || "nothing measured"}`;
}

/** Level meter: -60 dBFS .. 0 dBFS across the bar. */
function drawMeter(meter, rms) {
  const db = 20 * Math.log10(Math.max(rms, 1e-6));
  const fraction = Math.min(1, Math.max(0, (db + 60) / 60));
  meter.style.setProperty("--level", fraction.toFixed(3));
}

function animateMeters() {
  drawMeter(ui.micMeter, levels.mic);
  drawMeter(ui.agentMeter, levels.agent);
  // Decay between updates so the bars fall back when the sound stops.
  levels.mic *= 0.9;
  levels.agent *= 0.9;
  requestAnimationFrame(animateMeters);
}

function setControls(phase) {
  const connected = phase === "connected";
  ui.connect.textContent = connected ? "Disconnect" : phase === "connecting" ? "Connecting…" : "Connect";
  ui.connect.disabled = phase === "connecting";
  ui.connect.classList.toggle("connected", connected);
  ui.sayButton.disabled = !connected;
  ui.interrupt.disabled = !connected;
  // Settings apply when connecting; editing them mid-session would silently do nothing.
  ui.settings.disabled = phase !== "idle";
  for (const radio of document.querySelectorAll('input[name="mode"]')) {
    radio.disabled = phase !== "idle" || !TRANSPORTS.has(radio.value);
  }
}

function finishSession(note) {
  session = null;
  store.connected = false;
  setState("disconnected");
  setControls("idle");
  transcript.note(note);
}

async function connect() {
  const settings = readSettings();
  session = new Session(settings);
  setControls("connecting");
  try {
    const ready = await session.start();
    setControls("connected");
    transcript.note(
      settings.mode === "livekit"
        ? `connected to LiveKit room "${ready.room}" at ${ready.url} as ${ready.identity}`
        : `connected: microphone ${store.contextSampleRate} Hz → ${store.inputSampleRate} Hz to ${settings.url}`,
    );
  } catch (error) {
    const failed = session;
    failed.closed = true;
    await failed.stop().catch(() => {});
    if (!error.reported) {
      const code = error.name === "NotAllowedError" || error.name === "NotFoundError" ? "microphone" : "connection";
      showError({ code, message: error.message || String(error) });
    }
    if (session === failed) finishSession("not connected");
  }
}

async function disconnect() {
  const ending = session;
  if (!ending) return;
  await ending.stop();
  finishSession("disconnected");
}

ui.connect.addEventListener("click", () => (session ? disconnect() : connect()));
ui.interrupt.addEventListener("click", () => session?.interrupt());
ui.sayForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.sayText.value.trim();
  if (!session || !text) return;
  session.sendText(text, "answer");
  ui.sayText.value = "";
});
window.addEventListener("pagehide", () => session?.stop());

prefillSettings();
setControls("idle");
animateMeters();

// WebSocket mode: the orchestrator's `/ws` protocol (docs/protocol.md).
//
// Every transport the page can use has this shape, so app.js does not care which one runs
// (a LiveKit transport in livekit.js plugs into the same place):
//
//   new Transport({ url, hello, onEvent, onAudio, onClose })
//   await transport.connect()        resolves with the `ready` event, rejects if refused
//   transport.sendAudio(int16Array)  microphone audio at hello.sample_rate
//   transport.sendText(text, mode)   "answer" or "say"
//   transport.interrupt()
//   await transport.close()          says bye, then closes
//
// onEvent receives every JSON event as the server sent it; onAudio receives reply frames
// (Int16Array, 960 samples at 48 kHz); onClose({ code, reason }) fires once at the end.

// Above this much unsent data the connection is stalled: drop microphone audio instead of
// queueing seconds of it, which would arrive late and confuse turn-taking.
const MAX_BUFFERED_BYTES = 64 * 1024;

export class WebSocketTransport {
  static mode = "websocket";

  constructor({ url, hello, onEvent, onAudio, onClose }) {
    this.url = url;
    this.hello = hello;
    this.onEvent = onEvent;
    this.onAudio = onAudio;
    this.onClose = onClose;
    this.socket = null;
    this.ready = false;
    this.droppedChunks = 0;
  }

  connect() {
    return new Promise((resolve, reject) => {
      let settled = false;
      const socket = new WebSocket(this.url);
      socket.binaryType = "arraybuffer";
      this.socket = socket;

      socket.onopen = () => this.send({ type: "hello", ...this.hello });
      socket.onmessage = ({ data }) => {
        if (typeof data !== "string") {
          // PCM16 little-endian: the byte order of every platform browsers run on.
          if (data.byteLength % 2 === 0) this.onAudio(new Int16Array(data));
          return;
        }
        let message;
        try {
          message = JSON.parse(data);
        } catch {
          this.onEvent({ type: "error", code: "bad_server_message", message: "server sent invalid JSON", fatal: false });
          return;
        }
        if (message.type === "ready" && !settled) {
          settled = true;
          this.ready = true;
          resolve(message);
        }
        this.onEvent(message);
        if (message.type === "error" && message.fatal && !settled) {
          settled = true;
          const error = new Error(`${message.code}: ${message.message}`);
          error.reported = true; // onEvent already showed it
          reject(error);
        }
      };
      // A failed connection fires `error` then `close`; `close` has the details, so it
      // settles the promise.
      socket.onerror = () => {};
      socket.onclose = ({ code, reason }) => {
        this.ready = false;
        if (!settled) {
          settled = true;
          reject(new Error(`could not connect to ${this.url} (WebSocket close code ${code})`));
        }
        this.onClose({ code, reason });
      };
    });
  }

  get open() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  send(message) {
    if (this.open) this.socket.send(JSON.stringify(message));
  }

  sendAudio(pcm) {
    // Audio before `ready` would be refused (hello_required); the page starts capturing first.
    if (!this.ready || !this.open) return;
    if (this.socket.bufferedAmount > MAX_BUFFERED_BYTES) {
      this.droppedChunks += 1;
      return;
    }
    this.socket.send(pcm); // an ArrayBufferView goes out as one binary message
  }

  sendText(text, mode = "answer") {
    this.send({ type: "text", text, mode });
  }

  interrupt() {
    this.send({ type: "interrupt" });
  }

  async close() {
    if (!this.socket) return;
    this.send({ type: "bye" });
    if (this.socket.readyState < WebSocket.CLOSING) this.socket.close(1000, "bye");
  }
}

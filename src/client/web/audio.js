// The page's audio: one AudioContext with two worklets, the microphone capture
// (mic-worklet.js) and the reply player (player-worklet.js).
//
// Transport-neutral on purpose: the WebSocket transport feeds the player with server frames and
// sends the capture's chunks; another transport (LiveKit) may use only part of it.

const MIC_WORKLET = new URL("./mic-worklet.js", import.meta.url);
const PLAYER_WORKLET = new URL("./player-worklet.js", import.meta.url);

export class AudioEngine {
  /**
   * @param {object} options
   * @param {number|null} options.inputRate  rate of the chunks sent to the server (declared in
   *   hello); null sends the AudioContext's own rate
   * @param {boolean} [options.processing]  browser echo cancellation / noise suppression / AGC
   * @param {(pcm: Int16Array, rms: number) => void} options.onMicChunk  every 20 ms of capture
   * @param {(stats: object) => void} options.onPlayerStats  player counters, ~20 times a second
   * @param {() => void} [options.onDrained]  a reply finished playing
   */
  constructor({ inputRate, processing = true, onMicChunk, onPlayerStats, onDrained = () => {} }) {
    this.inputRate = inputRate;
    this.processing = processing;
    this.onMicChunk = onMicChunk;
    this.onPlayerStats = onPlayerStats;
    this.onDrained = onDrained;
    this.context = null;
    this.stream = null;
    this.mic = null;
    this.player = null;
  }

  /** The AudioContext's rate (known after start). */
  get contextRate() {
    return this.context ? this.context.sampleRate : null;
  }

  /**
   * Open the microphone and build the graph. Call from a click handler: browsers only let a
   * user gesture start audio.
   */
  async start() {
    // The context is created first, inside the gesture, so it is allowed to run.
    this.context = new AudioContext({ latencyHint: "interactive" });
    const context = this.context;
    // No rate asked for: send the context's own (the server accepts 8-48 kHz).
    this.inputRate ??= Math.min(48000, Math.max(8000, context.sampleRate));
    await Promise.all([
      context.audioWorklet.addModule(MIC_WORKLET),
      context.audioWorklet.addModule(PLAYER_WORKLET),
    ]);

    this.player = new AudioWorkletNode(context, "voicefleet-player", {
      numberOfInputs: 0,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      processorOptions: { prebufferMs: 40, bufferSeconds: 20 },
    });
    this.player.port.onmessage = ({ data }) => {
      if (data.type === "stats") this.onPlayerStats(data);
      else if (data.type === "drained") this.onDrained();
    };
    this.player.connect(context.destination);

    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: {
        channelCount: 1,
        // Full duplex through speakers needs echo cancellation, or the agent hears itself.
        echoCancellation: this.processing,
        noiseSuppression: this.processing,
        autoGainControl: this.processing,
      },
    });
    const source = context.createMediaStreamSource(this.stream);
    this.mic = new AudioWorkletNode(context, "voicefleet-mic", {
      numberOfInputs: 1,
      // No output: the capture is a sink, and a node without outputs is still rendered.
      numberOfOutputs: 0,
      // The browser mixes the microphone down to mono before the worklet sees it.
      channelCount: 1,
      channelCountMode: "explicit",
      channelInterpretation: "speakers",
      processorOptions: { targetRate: this.inputRate, chunkMs: 20 },
    });
    this.mic.port.onmessage = ({ data }) => {
      if (data.type === "chunk") this.onMicChunk(data.pcm, data.rms);
    };
    source.connect(this.mic);
    if (context.state !== "running") await context.resume();
  }

  /** Queue one frame of reply audio (48 kHz PCM16). */
  play(pcm) {
    this.player?.port.postMessage({ type: "push", pcm }, [pcm.buffer]);
  }

  /** The reply's last frame has been queued: play it out without waiting for more. */
  endOfReply() {
    this.player?.port.postMessage({ type: "end" });
  }

  /** Hold playback, keeping what is buffered (a possible barge-in). */
  pause() {
    this.player?.port.postMessage({ type: "pause" });
  }

  /** Play on from where playback held. */
  resume() {
    this.player?.port.postMessage({ type: "resume" });
  }

  /** Drop all buffered playback within one render quantum. */
  flush() {
    this.player?.port.postMessage({ type: "flush" });
  }

  /** Release the microphone and the audio device. */
  async stop() {
    this.stream?.getTracks().forEach((track) => track.stop());
    this.mic?.disconnect();
    this.player?.disconnect();
    if (this.context && this.context.state !== "closed") await this.context.close();
    this.context = this.stream = this.mic = this.player = null;
  }
}

// Reply playback on the audio rendering thread.
//
// The server sends 20 ms frames of 48 kHz PCM16, paced in real time a little ahead (~120 ms).
// The main thread posts each frame here; this processor keeps them in a ring buffer and plays
// them without gaps, converting to the AudioContext's rate when it is not 48 kHz.
//
// Barge-in needs playback to react within a render quantum (128 samples, ~2.7 ms), which only
// code on this thread can promise:
//   pause   hold: fade out over one quantum, then play silence, keeping the buffer
//   resume  play on from where it held
//   flush   fade out over one quantum and drop everything received before the flush
// Fading over one quantum instead of cutting avoids an audible click at no cost in latency.
//
// It reports counters to the main thread (played and non-silent samples, underruns, flushes)
// so the page can show them and tests can check what was actually heard.

const SOURCE_RATE = 48000;
const RAMP_SAMPLES = 128; // one render quantum
const SILENT_BELOW = 1e-3; // ~ -60 dBFS: quieter samples do not count as "heard"
const STATS_INTERVAL_S = 0.05;

class PlayerProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const settings = options.processorOptions ?? {};
    // Frames arrive in real time, so a few seconds is ample; the margin covers a server that
    // does not pace (a whole reply at once) without growing without bound.
    this.ring = new Float32Array(Math.round(SOURCE_RATE * (settings.bufferSeconds ?? 20)));
    // Absolute positions in source samples (numbers stay exact far beyond any session).
    this.readPos = 0;
    this.writePos = 0;
    this.fraction = 0; // read position between readPos and readPos + 1, when resampling
    this.step = SOURCE_RATE / sampleRate; // source samples per output sample
    // A small jitter buffer before (re)starting, so one late frame does not cause a gap.
    this.prebuffer = Math.round((SOURCE_RATE * (settings.prebufferMs ?? 40)) / 1000);
    this.mode = "idle"; // idle (nothing to play) | priming (filling the jitter buffer) | playing
    this.paused = false;
    this.ended = false; // the current reply's last frame has arrived: play out, no underrun
    this.gain = 0;
    this.gainTarget = 1;
    this.flushUntil = -1; // >= 0 while a flush is fading out
    this.counters = { played: 0, nonSilent: 0, underruns: 0, flushes: 0, overflows: 0 };
    this.sumSquares = 0;
    this.sinceStats = 0;
    this.statsEvery = Math.round(sampleRate * STATS_INTERVAL_S);
    this.port.onmessage = (event) => this.command(event.data);
  }

  available() {
    return this.writePos - this.readPos;
  }

  command(message) {
    switch (message.type) {
      case "push":
        this.push(message.pcm);
        break;
      case "end":
        this.ended = true;
        break;
      case "pause":
        this.paused = true;
        this.gainTarget = 0;
        break;
      case "resume":
        this.paused = false;
        this.gainTarget = 1;
        break;
      case "flush":
        // Everything written so far goes; frames pushed after this message survive.
        this.flushUntil = this.writePos;
        this.gainTarget = 0;
        this.paused = false;
        break;
    }
  }

  push(pcm) {
    const ring = this.ring;
    const capacity = ring.length;
    for (let i = 0; i < pcm.length; i++) {
      if (this.available() >= capacity) {
        this.counters.overflows += 1; // drop the rest of this frame rather than wrap over unplayed audio
        break;
      }
      ring[this.writePos % capacity] = pcm[i] / 32768;
      this.writePos += 1;
    }
    this.ended = false;
    if (this.mode === "idle") this.mode = "priming";
  }

  process(_inputs, outputs) {
    const channels = outputs[0];
    const frames = channels[0].length;
    if (this.mode === "priming" && (this.available() >= this.prebuffer || this.ended)) {
      this.mode = "playing";
    }
    const rampStep = 1 / RAMP_SAMPLES;
    for (let i = 0; i < frames; i++) {
      let sample = 0;
      const holding = this.paused && this.gain === 0;
      if (this.mode === "playing" && !holding) {
        if (this.available() > 0) {
          sample = this.read() * this.gain;
          this.counters.played += this.step;
          if (Math.abs(sample) >= SILENT_BELOW) this.counters.nonSilent += this.step;
        } else {
          this.starved();
        }
      }
      if (this.mode !== "playing") {
        this.gain = 0; // whatever plays next fades in
      } else if (this.gain < this.gainTarget) {
        this.gain = Math.min(this.gainTarget, this.gain + rampStep);
      } else if (this.gain > this.gainTarget) {
        this.gain = Math.max(this.gainTarget, this.gain - rampStep);
      }
      for (let c = 0; c < channels.length; c++) channels[c][i] = sample;
      this.sumSquares += sample * sample;
    }
    if (this.flushUntil >= 0) this.finishFlush();
    this.sinceStats += frames;
    if (this.sinceStats >= this.statsEvery) this.report();
    return true; // the player lives as long as the session
  }

  /** The next output sample, linearly interpolated between source samples when resampling. */
  read() {
    const ring = this.ring;
    const capacity = ring.length;
    const a = ring[this.readPos % capacity];
    if (this.step === 1) {
      this.readPos += 1;
      return a;
    }
    // Speech from the server is band-limited far below any usual context rate's Nyquist, where
    // linear interpolation's error is small; a longer kernel would buy nothing audible.
    const b = this.available() > 1 ? ring[(this.readPos + 1) % capacity] : a;
    const value = a + (b - a) * this.fraction;
    this.fraction += this.step;
    const whole = Math.floor(this.fraction);
    this.fraction -= whole;
    this.readPos = Math.min(this.readPos + whole, this.writePos);
    return value;
  }

  starved() {
    if (this.ended) {
      this.mode = "idle"; // the reply played out
      this.port.postMessage({ type: "drained" });
    } else {
      this.counters.underruns += 1; // frames came too late: the person hears a gap
      this.mode = "priming";
    }
  }

  finishFlush() {
    // The fade-out took this whole quantum; drop what it did not play.
    this.readPos = Math.max(this.readPos, this.flushUntil);
    this.fraction = 0;
    this.flushUntil = -1;
    this.ended = false;
    this.gain = 0;
    this.gainTarget = 1;
    this.mode = this.available() > 0 ? "priming" : "idle";
    this.counters.flushes += 1;
    this.report(); // at once: the page (and tests) see the flush without waiting for the timer
  }

  report() {
    const rms = this.sinceStats ? Math.sqrt(this.sumSquares / this.sinceStats) : 0;
    this.port.postMessage({
      type: "stats",
      playedSamples: Math.round(this.counters.played),
      nonSilentSamples: Math.round(this.counters.nonSilent),
      underruns: this.counters.underruns,
      flushes: this.counters.flushes,
      overflows: this.counters.overflows,
      bufferedMs: (this.available() / SOURCE_RATE) * 1000,
      rms,
      mode: this.mode,
      paused: this.paused,
    });
    this.sumSquares = 0;
    this.sinceStats = 0;
  }
}

registerProcessor("voicefleet-player", PlayerProcessor);

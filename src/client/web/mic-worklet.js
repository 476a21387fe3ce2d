// Microphone capture on the audio rendering thread.
//
// The AudioContext runs at whatever rate the hardware wants (44.1 or 48 kHz, usually), but the
// orchestrator is told one rate in `hello` (16 kHz by default: what its VAD and ASR use). So
// this processor low-pass filters, resamples to that rate and posts 20 ms Int16 chunks to the
// main thread, which sends them as binary WebSocket messages unchanged.
//
// Doing it here rather than on the main thread keeps capture glitch-free when the page is busy
// (layout, garbage collection): the rendering thread runs every 128 samples regardless.

const DEFAULT_TARGET_RATE = 16000;
const DEFAULT_CHUNK_MS = 20;
// 95 taps of a Blackman-windowed sinc at 48 kHz leave a ~2.8 kHz transition band, so with the
// cutoff at 0.42 x the target rate almost nothing above the target Nyquist folds back.
const FILTER_TAPS = 95;
const CUTOFF_FRACTION = 0.42;

/** A windowed-sinc low-pass kernel; `cutoff` is in cycles per input sample (0..0.5). */
function lowPassKernel(cutoff, taps) {
  const kernel = new Float32Array(taps);
  const middle = (taps - 1) / 2;
  let sum = 0;
  for (let i = 0; i < taps; i++) {
    const x = i - middle;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    const phase = (2 * Math.PI * i) / (taps - 1);
    const blackman = 0.42 - 0.5 * Math.cos(phase) + 0.08 * Math.cos(2 * phase);
    kernel[i] = sinc * blackman;
    sum += kernel[i];
  }
  // Unity gain at DC, so the level the person sees is the level the server gets.
  for (let i = 0; i < taps; i++) kernel[i] /= sum;
  return kernel;
}

/** Streaming resampler: anti-alias FIR (when downsampling), then linear interpolation. */
class StreamResampler {
  constructor(inRate, outRate) {
    this.step = inRate / outRate; // input samples per output sample
    this.kernel = inRate > outRate ? lowPassKernel((CUTOFF_FRACTION * outRate) / inRate, FILTER_TAPS) : null;
    if (this.kernel) {
      // Each sample is written twice, `taps` apart, so the newest `taps` samples are always
      // contiguous at history[head .. head + taps) and the inner loop needs no modulo.
      this.history = new Float32Array(2 * this.kernel.length);
      this.head = 0;
    }
    // Position of the next output sample relative to the previous filtered input sample
    // (0 = that sample, 1 = the current one); starts on the very first input sample.
    this.offset = 1;
    this.previous = 0;
  }

  /** Resample `input`; writes into `output` (large enough) and returns how many were written. */
  process(input, output) {
    let written = 0;
    for (let n = 0; n < input.length; n++) {
      const current = this.kernel ? this.filter(input[n]) : input[n];
      while (this.offset <= 1) {
        output[written++] = this.previous + (current - this.previous) * this.offset;
        this.offset += this.step;
      }
      this.offset -= 1;
      this.previous = current;
    }
    return written;
  }

  filter(sample) {
    const kernel = this.kernel;
    const taps = kernel.length;
    const history = this.history;
    history[this.head] = sample;
    history[this.head + taps] = sample;
    this.head = this.head + 1 === taps ? 0 : this.head + 1;
    let acc = 0;
    for (let i = 0, j = this.head; i < taps; i++, j++) acc += kernel[i] * history[j];
    return acc;
  }
}

class MicCaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const settings = options.processorOptions ?? {};
    const targetRate = settings.targetRate ?? DEFAULT_TARGET_RATE;
    const chunkMs = settings.chunkMs ?? DEFAULT_CHUNK_MS;
    // `sampleRate` is the AudioContext's rate, a global of the worklet scope.
    this.resampler = new StreamResampler(sampleRate, targetRate);
    this.resampled = new Float32Array(Math.ceil(128 / this.resampler.step) + 2);
    this.chunkSamples = Math.round((targetRate * chunkMs) / 1000);
    this.chunk = new Int16Array(this.chunkSamples);
    this.filled = 0;
    this.sumSquares = 0;
    this.peak = 0;
  }

  process(inputs) {
    // The node is created with channelCount 1 / "explicit", so the browser already mixed the
    // microphone down to mono. An empty input means the source is not connected (yet).
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    const count = this.resampler.process(channel, this.resampled);
    for (let i = 0; i < count; i++) this.append(this.resampled[i]);
    return true; // keep capturing until the node is disconnected
  }

  append(value) {
    const clipped = value > 1 ? 1 : value < -1 ? -1 : value;
    this.chunk[this.filled++] = Math.round(clipped < 0 ? clipped * 32768 : clipped * 32767);
    this.sumSquares += clipped * clipped;
    const magnitude = Math.abs(clipped);
    if (magnitude > this.peak) this.peak = magnitude;
    if (this.filled === this.chunkSamples) {
      const rms = Math.sqrt(this.sumSquares / this.chunkSamples);
      // Transfer, not copy: the chunk is not touched again here.
      this.port.postMessage({ type: "chunk", pcm: this.chunk, rms, peak: this.peak }, [this.chunk.buffer]);
      this.chunk = new Int16Array(this.chunkSamples);
      this.filled = 0;
      this.sumSquares = 0;
      this.peak = 0;
    }
  }
}

registerProcessor("voicefleet-mic", MicCaptureProcessor);

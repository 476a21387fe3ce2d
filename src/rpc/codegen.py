"""Generate the Python stubs for tts.proto (``make proto``); tests call it to detect stale stubs."""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
PROTO_FILE = PROTO_DIR / "tts.proto"
GENERATED_DIR = PROTO_DIR / "generated"
GENERATED_FILES = ("tts_pb2.py", "tts_pb2.pyi", "tts_pb2_grpc.py", "tts_pb2_grpc.pyi")
_PACKAGE = "voicefleet.rpc.generated"
_TOP_LEVEL_IMPORT = re.compile(r"^import tts_pb2( as \w+)?$", re.MULTILINE)


def _plugin_path(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError(f"{name} not found next to {sys.executable}; install the 'dev' extra")
    return found


def generate(out_dir: Path) -> list[Path]:
    """Run protoc on tts.proto into out_dir and return the files written."""
    from grpc_tools import protoc  # dev dependency, only needed to regenerate

    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--plugin=protoc-gen-mypy={_plugin_path('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin_path('protoc-gen-mypy_grpc')}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        str(PROTO_FILE.name),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on tts.proto")
    written = []
    for name in GENERATED_FILES:
        path = out_dir / name
        # protoc emits top-level imports; the stubs live inside the voicefleet package.
        text = path.read_text()
        text = _TOP_LEVEL_IMPORT.sub(rf"from {_PACKAGE} import tts_pb2\1", text)
        path.write_text(text)
        written.append(path)
    return written


def stale_files() -> list[str]:
    """Names of committed stubs that differ from a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        return [
            name
            for name in GENERATED_FILES
            if not (GENERATED_DIR / name).exists()
            or (GENERATED_DIR / name).read_bytes() != (Path(tmp) / name).read_bytes()
        ]


def main(argv: list[str] | None = None) -> int:
    """Regenerate the committed stubs, or only check them with --check."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the stubs are stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print(f"stale generated stubs: {', '.join(stale)}; run 'make proto'", file=sys.stderr)
            return 1
        return 0
    for path in generate(GENERATED_DIR):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

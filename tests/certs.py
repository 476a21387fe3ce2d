"""A throwaway certificate authority for TLS tests (the openssl command; CI installs it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def _issue(directory: Path, name: str, subject: str, extensions: str) -> None:
    key, csr, ext = (directory / f"{name}.{suffix}" for suffix in ("key", "csr", "ext"))
    ext.write_text(extensions + "\n")
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", subject,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(directory / "ca.pem"),
        "-CAkey", str(directory / "ca.key"), "-CAcreateserial", "-days", "1",
        "-out", str(directory / f"{name}.pem"), "-extfile", str(ext),
    )  # fmt: skip


def make_ca(directory: Path) -> Path:
    """A CA (ca.pem), a server certificate for 127.0.0.1 / tts.internal (server.pem/.key) and
    a client certificate (client.pem/.key) in `directory`."""
    assert shutil.which("openssl"), "TLS tests need the openssl command (apt-get install openssl)"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(directory / "ca.key"), "-out", str(directory / "ca.pem"), "-days", "1",
        "-subj", "/CN=voicefleet test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign",
    )  # fmt: skip
    _issue(directory, "server", "/CN=tts-worker", "subjectAltName=DNS:tts.internal,IP:127.0.0.1")
    _issue(directory, "client", "/CN=orchestrator", "extendedKeyUsage=clientAuth")
    return directory

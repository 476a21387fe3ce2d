"""`voicefleet up` finds the repository's worker configs from any working directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicefleet.up import default_worker_configs

REPO = Path(__file__).resolve().parents[2]


def test_the_two_engines_configs_from_another_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    found = default_worker_configs()
    # make install puts the hibari plug-in in: both engines, Piper first.
    assert found == [REPO / "configs" / "worker.yaml", REPO / "configs" / "worker-hibari.yaml"]


def test_a_configs_folder_here_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "worker.yaml").write_text("models: []\n")
    monkeypatch.chdir(tmp_path)
    assert default_worker_configs() == [Path("configs") / "worker.yaml"]

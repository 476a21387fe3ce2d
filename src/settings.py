"""Loading a process's pydantic config from YAML plus environment overrides, with errors that
name the file and the dotted path of the bad key."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

ConfigT = TypeVar("ConfigT", bound=BaseModel)


class ConfigError(Exception):
    """A config file or override that cannot be used; the message says where and why."""


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = value


def env_overrides(prefix: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """Nested overrides from PREFIX__KEY__SUBKEY=value (values parsed as YAML scalars)."""
    tree: dict[str, Any] = {}
    marker = prefix + "__"
    for name, raw in environ.items():
        if name.startswith(marker) and len(name) > len(marker):
            path = [part.lower() for part in name[len(marker) :].split("__")]
            _set_path(tree, path, yaml.safe_load(raw) if raw else raw)
    return tree


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(
    model: type[ConfigT],
    path: Path | None,
    *,
    env_prefix: str,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ConfigT:
    """YAML file < environment (env_prefix__KEY) < explicit overrides (CLI flags)."""
    data: dict[str, Any] = {}
    source = str(path) if path else "<defaults>"
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {error}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        data = loaded or {}
    data = _merge(data, env_overrides(env_prefix, os.environ if environ is None else environ))
    data = _merge(data, overrides or {})
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc']) or '<root>'}: {item['msg']}"
            for item in error.errors()
        )
        raise ConfigError(f"{source}: {problems}") from None

"""Secrets: the network HMAC key and the API-key pepper. From the environment in production; on a
developer machine, from local files under the relgraph home that the demo creates, loudly."""

from __future__ import annotations

import secrets as _random
import sys
from pathlib import Path

from core.config import Config
from core.errors import ConfigError

_announced: set[Path] = set()  # local secrets already warned about in this process


def _local_secret(path: Path, what: str, variable: str, create: bool) -> str:
    if not path.exists():
        if not create:
            raise ConfigError(
                f"{variable} is not set (and no local development {what} exists); "
                f"set it to a secret of at least 16 characters"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(_random.token_hex(32))
        _warn(f"GENERATED A LOCAL DEVELOPMENT {what.upper()} at {path}. Set {variable} in production.")
    elif path not in _announced:
        _warn(f"using the local development {what} {path} ({variable} is not set)")
    _announced.add(path)
    return path.read_text().strip()


def _warn(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr)


def network_key(config: Config, *, create_local: bool = False) -> str:
    """RELGRAPH_NETWORK_KEY, else the local development key (pseudonyms made with it match
    nothing outside this machine)."""
    if config.network_key:
        return config.network_key
    return _local_secret(config.local_key_path, "network key", "RELGRAPH_NETWORK_KEY", create_local)


def api_key_pepper(config: Config, *, create_local: bool = False) -> str:
    """RELGRAPH_API_KEY_PEPPER (the secret mixed into stored API-key hashes), else a local one."""
    if config.api_key_pepper:
        return config.api_key_pepper
    return _local_secret(config.home / "api-key-pepper", "API-key pepper", "RELGRAPH_API_KEY_PEPPER", create_local)

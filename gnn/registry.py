"""The model registry: one directory per trained version, and an explicit promotion.

    <root>/<model>/v0001/  model.pt  manifest.json  card.md  reliability.png  curves.png
    <root>/<model>/PROMOTED            the promoted version's name (replaced atomically)

A version is written completely into a temporary directory and then renamed into place, so a
reader never sees half an artifact. Serving loads only the promoted version, and only if its
feature schema is the one the server computes (`ModelSchemaError` otherwise)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.errors import ModelSchemaError, NoModelError, NotFoundError

_VERSION = re.compile(r"^v(\d{4,})\Z")


@dataclass(frozen=True)
class ModelVersion:
    name: str
    path: Path
    manifest: dict[str, Any]
    promoted: bool

    def summary(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "version": self.name,
            "promoted": self.promoted,
            "created": m.get("created"),
            "schema_hash": m.get("schema_hash"),
            "metrics": m.get("headline", {}),
        }


class ModelRegistry:
    """Versions of each model under `root` (e.g. `$RELGRAPH_HOME/models`)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r})"

    def versions(self, model: str) -> list[ModelVersion]:
        folder = self.root / model
        promoted = self.promoted_name(model)
        names = (
            sorted((p.name for p in folder.iterdir() if _VERSION.match(p.name)), key=lambda s: int(s[1:]))
            if folder.is_dir()
            else []
        )
        return [ModelVersion(name, folder / name, self._manifest(folder / name), name == promoted) for name in names]

    def version(self, model: str, name: str) -> ModelVersion:
        path = self.root / model / name
        if not _VERSION.match(name) or not (path / "manifest.json").is_file():
            known = ", ".join(v.name for v in self.versions(model)) or "none"
            raise NotFoundError(f"no {model} model version {name!r} (versions: {known})")
        return ModelVersion(name, path, self._manifest(path), name == self.promoted_name(model))

    def write(
        self, model: str, manifest: dict[str, Any], state: dict[str, Any], extras: Callable[[Path], None]
    ) -> ModelVersion:
        """Store a new version: `state` as model.pt, `manifest` as manifest.json, plus whatever
        `extras(folder)` writes into the version's folder (card, plots)."""
        folder = self.root / model
        folder.mkdir(parents=True, exist_ok=True)
        while True:
            existing = [int(m.group(1)) for p in folder.iterdir() if (m := _VERSION.match(p.name))]
            name = f"v{max(existing, default=0) + 1:04d}"
            staging = folder / f".{name}.{os.getpid()}"
            staging.mkdir()
            torch.save(state, staging / "model.pt")
            (staging / "manifest.json").write_text(json.dumps({**manifest, "version": name}, indent=2))
            extras(staging)
            try:
                staging.rename(folder / name)
                return self.version(model, name)
            except OSError:  # another run took this number first: try the next one
                for f in staging.iterdir():
                    f.unlink()
                staging.rmdir()

    def amend(self, model: str, name: str, **fields: Any) -> ModelVersion:
        """Record `fields` in a version's manifest (e.g. a forced promotion), replacing it atomically."""
        version = self.version(model, name)
        path = version.path / "manifest.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**version.manifest, **fields}, indent=2))
        tmp.replace(path)
        return self.version(model, name)

    def promote(self, model: str, name: str) -> ModelVersion:
        version = self.version(model, name)
        pointer = self.root / model / "PROMOTED"
        tmp = pointer.with_suffix(".tmp")
        tmp.write_text(name + "\n")
        tmp.replace(pointer)
        return ModelVersion(version.name, version.path, version.manifest, True)

    def promoted_name(self, model: str) -> str | None:
        pointer = self.root / model / "PROMOTED"
        return pointer.read_text().strip() if pointer.is_file() else None

    def promoted(self, model: str, schema_hash: Callable[[dict[str, Any]], str]) -> tuple[ModelVersion, dict[str, Any]]:
        """The promoted version and its saved state; refuses a model trained on another schema than
        `schema_hash(manifest)`, the one this code computes for that version."""
        name = self.promoted_name(model)
        if name is None:
            raise NoModelError(f"no {model} model promoted (run `relgraph models promote VERSION`)")
        version = self.version(model, name)
        expected = schema_hash(version.manifest)
        if version.manifest.get("schema_hash") != expected:
            raise ModelSchemaError(
                f"{model} model {name} was trained on feature schema {version.manifest.get('schema_hash')}, "
                f"but this server computes {expected}: retrain, or promote a version with that schema"
            )
        return version, torch.load(version.path / "model.pt", weights_only=True)

    @staticmethod
    def _manifest(path: Path) -> dict[str, Any]:
        manifest: dict[str, Any] = json.loads((path / "manifest.json").read_text())
        return manifest

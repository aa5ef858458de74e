"""JSON round-trip for flat configuration dataclasses (placement's, and tierstore's through ``tierstore.config``)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any


class JsonDataclass:
    """Mixin: ``to_dict``/``from_dict``/``to_json``/``from_json`` for flat dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)}; allowed: {sorted(names)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))

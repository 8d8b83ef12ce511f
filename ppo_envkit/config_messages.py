"""Pydantic's validation errors as one readable line per problem, in the settings' own terms:
``invalid setting ppo.gamma = 2: input should be less than or equal to 1 (allowed: >= 0 and
<= 1)``, or ``unknown setting 'ppo.gama' in section 'ppo'; known: ...``."""

from __future__ import annotations

from types import UnionType
from typing import Any, Union, get_origin

from pydantic import BaseModel, ValidationError

#: The most characters of a value (or a key) that a message shows: a file may hold megabytes.
SHOWN_CHARS = 200


def shown(value: Any) -> str:
    """``repr(value)``, cut at :data:`SHOWN_CHARS` characters (the cut says how long it was)."""
    text = repr(value)
    if len(text) <= SHOWN_CHARS:
        return text
    return f"{text[:SHOWN_CHARS]}... ({len(text):,} characters)"


def _clip(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(text):,} characters)"


def _lookup(data: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def _field_info(root: type[BaseModel], loc: tuple[Any, ...]) -> Any:
    model: Any = root
    info = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return info
        info = fields[part]
        model = info.annotation
    return info


def _allowed_range(info: Any) -> str:
    if info is None:
        return ""
    bounds = []
    for meta in info.metadata:
        for attr, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(meta, attr, None)
            if value is not None:
                bounds.append(f"{symbol} {value}")
    return " and ".join(bounds)


def _union_branch(root: type[BaseModel], loc: tuple[Any, ...]) -> bool:
    """Whether ``loc`` ends in the name of one alternative of a union field (``run.stop_at.float``)."""
    if len(loc) < 2:
        return False
    field = _field_info(root, loc[:-1])
    model = _field_info(root, loc[:-2]).annotation if len(loc) > 2 else root
    names = getattr(model, "model_fields", {})
    return field is not None and loc[-2] in names and get_origin(field.annotation) in (Union, UnionType)


def format_validation_error(
    exc: ValidationError, root: type[BaseModel], data: dict[str, Any] | None = None
) -> str:
    """One line per problem: ``ppo.gamma = 2: must be <= 1 (allowed: >= 0 and <= 1)``. A value
    that fits none of a field's alternatives is one problem listing what each expects. ``root``
    is the settings model that was validated (passed in: this module imports no settings).
    No value or key is shown longer than :data:`SHOWN_CHARS` characters."""
    lines = []
    errors: list[dict[str, Any]] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if _union_branch(root, loc):
            merged = next((e for e in errors if tuple(e["loc"]) == loc[:-1]), None)
            msg = err["msg"].removeprefix("Input should be ").removeprefix("Value error, ").split(",")[0]
            if merged is None:
                errors.append({**err, "loc": loc[:-1], "msg": f"should be {msg}"})
            else:
                merged["msg"] += f" or {msg}"
            continue
        errors.append(err)
    for err in errors:
        loc = tuple(err["loc"])
        name = _clip(".".join(str(p) for p in loc) or "config")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            section = _clip(".".join(str(p) for p in loc[:-1]))
            known = ""
            info = _field_info(root, loc[:-1])
            model = info.annotation if info is not None else (root if not loc[:-1] else None)
            if model is not None and hasattr(model, "model_fields"):
                known = ", ".join(model.model_fields)
            where = f" in section '{section}'" if section else ""
            lines.append(f"unknown setting '{name}'{where}; known: {known}")
            continue
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        value = _lookup(data, loc) if data is not None else err.get("input")
        allowed = _allowed_range(_field_info(root, loc))
        suffix = f" (allowed: {allowed})" if allowed else ""
        echo = f" = {shown(value)}" if value is not None and not isinstance(value, dict) else ""
        lines.append(f"invalid setting {name}{echo}: {_clip(msg[:1].lower() + msg[1:])}{suffix}")
    return "; ".join(lines)


__all__ = ["SHOWN_CHARS", "format_validation_error", "shown"]

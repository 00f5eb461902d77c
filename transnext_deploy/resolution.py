"""Image sizes as the API and the command line take them: an int side or (height, width), or text.

At the bottom of the package (imports only errors.py).
"""

from __future__ import annotations

from .errors import InvalidArgumentError


def pair(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """224 -> (224, 224); (224, 320) -> (224, 320)."""
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


def parse_resolution(text: str) -> tuple[int, int]:
    """'224' or '224x320' (height x width)."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise InvalidArgumentError(f"resolution {text!r} is not a number or HEIGHTxWIDTH") from None
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) <= 0:
        raise InvalidArgumentError(f"resolution {text!r} must be a positive side or HEIGHTxWIDTH")
    return values[0], values[1]


__all__ = ["pair", "parse_resolution"]

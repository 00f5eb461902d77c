"""A horizontal bar chart written as PNG with the standard library only (zlib), for machines without
matplotlib (benchmarks/gpu_suite.py). Text uses a built-in 5x7 pixel font, upper case."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

# 5x7 glyphs, one int per row (bit 4 = leftmost pixel).
_FONT = {
    " ": (0, 0, 0, 0, 0, 0, 0), "0": (14, 17, 19, 21, 25, 17, 14), "1": (4, 12, 4, 4, 4, 4, 14),
    "2": (14, 17, 1, 2, 4, 8, 31), "3": (31, 2, 4, 2, 1, 17, 14), "4": (2, 6, 10, 18, 31, 2, 2),
    "5": (31, 16, 30, 1, 1, 17, 14), "6": (6, 8, 16, 30, 17, 17, 14), "7": (31, 1, 2, 4, 8, 8, 8),
    "8": (14, 17, 17, 14, 17, 17, 14), "9": (14, 17, 17, 15, 1, 2, 12), "A": (14, 17, 17, 31, 17, 17, 17),
    "B": (30, 17, 17, 30, 17, 17, 30), "C": (14, 17, 16, 16, 16, 17, 14), "D": (28, 18, 17, 17, 17, 18, 28),
    "E": (31, 16, 16, 30, 16, 16, 31), "F": (31, 16, 16, 30, 16, 16, 16), "G": (14, 17, 16, 23, 17, 17, 15),
    "H": (17, 17, 17, 31, 17, 17, 17), "I": (14, 4, 4, 4, 4, 4, 14), "J": (7, 2, 2, 2, 2, 18, 12),
    "K": (17, 18, 20, 24, 20, 18, 17), "L": (16, 16, 16, 16, 16, 16, 31), "M": (17, 27, 21, 21, 17, 17, 17),
    "N": (17, 17, 25, 21, 19, 17, 17), "O": (14, 17, 17, 17, 17, 17, 14), "P": (30, 17, 17, 30, 16, 16, 16),
    "Q": (14, 17, 17, 17, 21, 18, 13), "R": (30, 17, 17, 30, 20, 18, 17), "S": (15, 16, 16, 14, 1, 1, 30),
    "T": (31, 4, 4, 4, 4, 4, 4), "U": (17, 17, 17, 17, 17, 17, 14), "V": (17, 17, 17, 17, 17, 10, 4),
    "W": (17, 17, 17, 21, 21, 21, 10), "X": (17, 17, 10, 4, 10, 17, 17), "Y": (17, 17, 17, 10, 4, 4, 4),
    "Z": (31, 1, 2, 4, 8, 16, 31), ".": (0, 0, 0, 0, 0, 12, 12), ",": (0, 0, 0, 0, 12, 4, 8),
    ":": (0, 12, 12, 0, 12, 12, 0), "-": (0, 0, 0, 31, 0, 0, 0), "/": (1, 1, 2, 4, 8, 16, 16),
    "@": (14, 17, 23, 21, 23, 16, 15), "(": (2, 4, 8, 8, 8, 4, 2), ")": (8, 4, 2, 2, 2, 4, 8),
    "+": (0, 4, 4, 31, 4, 4, 0), "_": (0, 0, 0, 0, 0, 0, 31), "=": (0, 0, 31, 0, 31, 0, 0),
}
_SCALE = 2  # each font pixel drawn as 2x2
_CHAR_W, _LINE_H = 6 * _SCALE, 10 * _SCALE


class _Canvas:
    def __init__(self, width: int, height: int):
        self.width, self.height = width, height
        self.pixels = bytearray(b"\xff" * (width * height * 3))

    def rect(self, x: int, y: int, w: int, h: int, color: tuple[int, int, int]) -> None:
        for yy in range(max(0, y), min(self.height, y + h)):
            start = (yy * self.width + max(0, x)) * 3
            end = (yy * self.width + min(self.width, x + w)) * 3
            if end > start:
                self.pixels[start:end] = bytes(color) * ((end - start) // 3)

    def text(self, x: int, y: int, text: str, color: tuple[int, int, int] = (30, 30, 30)) -> None:
        for ch in text.upper():
            rows = _FONT.get(ch, _FONT[" "])
            for r, bits in enumerate(rows):
                for c in range(5):
                    if bits & (16 >> c):
                        self.rect(x + c * _SCALE, y + r * _SCALE, _SCALE, _SCALE, color)
            x += _CHAR_W

    def png(self) -> bytes:
        raw = b"".join(b"\x00" + bytes(self.pixels[y * self.width * 3:(y + 1) * self.width * 3])
                       for y in range(self.height))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def bar_chart(path: Path, title: str, groups: list[tuple[str, list[tuple[str, float]], str]]) -> Path:
    """groups: (heading, [(label, value)], unit suffix); one block of bars per group, each scaled to its maximum."""
    label_w = max([len(label) for _, bars, _ in groups for label, _ in bars] + [10]) * _CHAR_W + 20
    bar_w = 520
    height = 30 + sum(2 * _LINE_H + max(1, len(bars)) * _LINE_H for _, bars, _ in groups) + 20
    canvas = _Canvas(label_w + bar_w + 160, height)
    canvas.text(10, 8, title)
    y = 8 + 2 * _LINE_H
    for heading, bars, unit in groups:
        canvas.text(10, y, heading, (20, 60, 120))
        y += int(1.5 * _LINE_H)
        top = max([v for _, v in bars] + [1e-12])
        if not bars:
            canvas.text(label_w, y, "no measurement", (120, 120, 120))
            y += _LINE_H
        for label, value in bars:
            canvas.text(10, y + 2, label)
            length = max(1, int(bar_w * value / top))
            canvas.rect(label_w, y, length, _LINE_H - 6, (36, 113, 163))
            canvas.text(label_w + length + 6, y + 2, f"{value:.3g}{unit}")
            y += _LINE_H
        y += _LINE_H // 2
    path = Path(path)
    path.write_bytes(canvas.png())
    return path

"""`transnext-deploy predict`: classify images with a bundle (`transnext_deploy.bundle.runtime`)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..progress import no_progress
from . import options
from .app import StepProgress, UserError, note, one_line_errors, say

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")  # what a directory walk picks up


def expand_inputs(inputs: list[str]) -> tuple[list[str], bool]:
    """The images to classify, in the order given; a directory gives its images (IMAGE_SUFFIXES, any
    depth, sorted by path) as `<dir>/<relative path>`. Returns (images, whether a directory was walked)."""
    images: list[str] = []
    walked = False
    for given in inputs:
        if os.path.isdir(given):
            walked = True
            images += [os.path.join(given, rel) for rel in _walk(Path(given))]
        else:
            images.append(given)  # missing or unreadable files get their error object later
    return images, walked


def _walk(root: Path) -> Iterator[str]:
    found = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in files:
            if name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith("."):
                found.append(os.path.relpath(os.path.join(directory, name), root))
    yield from sorted(found)


def predict_command(
    bundle: options.Bundle,
    inputs: list[str] = typer.Argument(  # noqa: B008
        ..., metavar="IMAGE_OR_DIR...",
        help="Image files (JPEG, PNG, WebP) and directories (walked for *.jpg, *.jpeg, *.png, *.webp)."),
    top: Annotated[int, options.top("to print per image")] = 5,
    batch: Annotated[int, typer.Option("--batch", help="Images per inference call.")] = 8,
    device: options.Device = "auto",
    backend: options.Backend = None,
    resolution: Annotated[Optional[str], typer.Option(  # noqa: UP007
        "--resolution", "-r", help="Which model of a multi-resolution bundle (SIDE or HxW). Default: the first.")
    ] = None,
    threads: options.RuntimeThreads = None,
    json_output: bool = typer.Option(
        False, "--json",
        help='Print a JSON list, one object per input in input order: {"image", "backend", "top": [{"index", '
             '"label", "probability"}]}, or {"image", "error"} for an input that is not a readable image.'),
) -> None:
    """Classify images with a bundle: the manifest's preprocessing, batched inference, top-k classes.

    Images are decoded with Pillow (EXIF orientation applied; grayscale, palette, RGBA and CMYK
    converted to RGB). An input that is not a readable image gets an error (an error object with
    --json); the others still run, and the exit status is then 1.
    """
    from ..bundle.runtime import check_count, check_top, load
    from ..errors import TransNeXtDeployError, one_line

    check_top(top)
    check_count(batch, "batch")  # before the bundle is opened, checked and perhaps extracted
    images, walked = expand_inputs(inputs)
    if not images:
        raise UserError(f"no images found in {', '.join(inputs)} (looked for {', '.join(IMAGE_SUFFIXES)})")
    with load(bundle, device=device, backend=backend, resolution=resolution, threads=threads) as predictor:
        note(f"{predictor.backend}: " + "; ".join(predictor.notes), "backend")
        for line in predictor.skipped:
            note(line, "skipped")
        with contextlib.ExitStack() as stack:  # progress only for a walked directory
            progress = no_progress
            if walked:  # a line per image would flood a log: off a terminal every 10 s
                progress = stack.enter_context(StepProgress("classifying", total=len(images), steps=False)).update
            outcomes = predictor.predict_each(images, top, batch, progress)
    results = [{"image": image, "error": one_line(outcome)} if isinstance(outcome, TransNeXtDeployError) else
               {"image": image, "backend": predictor.backend,
                "top": [{"index": c, "label": label, "probability": p} for c, label, p in outcome.top]}
               for image, outcome in zip(images, outcomes)]
    failed = [r for r in results if "error" in r]
    if json_output:
        typer.echo(json.dumps(results, indent=2))
    else:
        for r in results:
            if "error" in r:
                say(r["error"], label="error", style="bold red")
                continue
            typer.echo(r["image"])
            for entry in r["top"]:
                typer.echo(f"  {entry['probability']:7.2%}  {entry['index']:4d}  {entry['label']}")
    if failed:
        note(f"{len(failed)} of {len(images)} inputs could not be read", "error")
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    app.command("predict")(one_line_errors(predict_command))

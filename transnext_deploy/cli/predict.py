"""`transnext-deploy predict`: classify images with a bundle (`transnext_deploy.bundle.runtime`)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import typer

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
    inputs: list[str] = typer.Argument(  # noqa: B008
        ..., metavar="IMAGE_OR_DIR...",
        help="Image files (JPEG, PNG, WebP) and directories (walked for *.jpg, *.jpeg, *.png, *.webp)."),
    bundle: Path = typer.Option(..., "--bundle", "-b",  # noqa: B008
                                help="A bundle directory or .tar.gz made by `transnext-deploy package`."),
    top: int = typer.Option(5, "--top", "-k", help="How many classes to print per image."),
    batch: int = typer.Option(8, "--batch", help="Images per inference call."),
    device: str = typer.Option(
        "auto", "--device",
        help="auto: a TensorRT engine of the bundle when it can run here, else onnxruntime CUDA, else "
             "onnxruntime CPU (the choice and the reasons are printed); tensorrt, cuda or cpu: only that one."),
    resolution: Optional[str] = typer.Option(  # noqa: UP007
        None, "--resolution", "-r", help="Which model of a multi-resolution bundle (SIDE or HxW). Default: the first."),
    threads: Optional[int] = typer.Option(  # noqa: UP007
        None, "--threads", help="CPU threads for onnxruntime. Default: the CPUs this process may use, at most 8."),
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
    import numpy as np

    from ..errors import TransNeXtDeployError, one_line
    from ..bundle.runtime import load, top_k

    if top < 1:
        raise UserError(f"--top must be at least 1, got {top}")
    if batch < 1:
        raise UserError(f"--batch must be at least 1, got {batch}")
    images, walked = expand_inputs(inputs)
    if not images:
        raise UserError(f"no images found in {', '.join(inputs)} (looked for {', '.join(IMAGE_SUFFIXES)})")
    with load(bundle, device=device, resolution=resolution, threads=threads) as predictor:
        if not predictor.classify:
            raise UserError(f"{bundle} is a backbone bundle: it has no classes to predict (package it with "
                            "--mode classify)")
        note(f"{predictor.backend}: " + "; ".join(predictor.notes), "backend")
        for line in predictor.skipped:
            note(line, "skipped")
        results: list[dict | None] = [None] * len(images)
        pending: list[tuple[int, np.ndarray]] = []

        def flush() -> None:
            if pending:
                logits = predictor.logits(np.stack([x for _, x in pending]))
                for (i, _), prediction in zip(pending, top_k(logits, predictor.labels, top)):
                    results[i] = {"image": images[i], "backend": predictor.backend,
                                  "top": [{"index": c, "label": label, "probability": p}
                                          for c, label, p in prediction.top]}
                pending.clear()

        with contextlib.ExitStack() as stack:  # progress only for a walked directory
            progress = stack.enter_context(StepProgress("classifying", total=len(images))) if walked else None
            for i, image in enumerate(images):
                try:
                    pending.append((i, predictor.preprocess(image)))
                except TransNeXtDeployError as exc:
                    results[i] = {"image": image, "error": one_line(exc)}
                if len(pending) == batch:
                    flush()
                if progress is not None:  # a line per image would flood a log: off a terminal every 10 s
                    progress.update(f"classifying {image}", completed=i + 1 - len(pending), step=False)
            flush()
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

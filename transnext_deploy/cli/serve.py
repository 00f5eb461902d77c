"""`transnext-deploy serve`: a Triton Inference Server in front of a bundle's predictor (serving/server.py)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ..artifacts import IMAGE_MODEL
from . import options
from .app import note, one_line_errors, say


def serve_command(
    bundle: options.Bundle,
    host: str = typer.Option("127.0.0.1", "--host",
                             help="Address the HTTP, gRPC and metrics endpoints listen on "
                                  "(0.0.0.0: every interface)."),
    http_port: int = typer.Option(8000, "--http-port", help="HTTP/REST port (KServe v2 protocol)."),
    grpc_port: int = typer.Option(8001, "--grpc-port", help="gRPC port (KServe v2 protocol)."),
    metrics_port: int = typer.Option(8002, "--metrics-port", help="Prometheus metrics port (/metrics)."),
    max_batch: int = typer.Option(16, "--max-batch",
                                  help="Largest batch Triton's dynamic batcher forms, and the largest batch "
                                       "one request may send."),
    top: Annotated[int, options.top(f"returned per image by the `{IMAGE_MODEL}` model")] = 5,
    device: options.Device = "auto",
    backend: options.Backend = None,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Pass Triton's own log through to stderr."),
) -> None:
    """Serve a bundle with Triton Inference Server: model `transnext` takes encoded image files (BYTES
    [-1, 1]) and returns top-K indices, probabilities and labels; model `transnext_tensor` takes
    preprocessed float32 images [-1, 3, H, W] and returns logits. Both batch dynamically. Runs until
    SIGTERM or Ctrl-C, then stops cleanly. Needs `pip install 'transnext-deploy\\[serve]'`."""
    from ..serving.server import (
        TritonServer,
        bundle_facts,
        check_ports,
        check_serve_options,
        serve_forever,
        triton_dist,
    )

    check_serve_options(max_batch=max_batch, top=top, device=device, backend=backend)
    triton_dist()  # a missing server or a taken port is one line before the bundle is loaded
    check_ports(host, {"--http-port": http_port, "--grpc-port": grpc_port, "--metrics-port": metrics_port})
    input_size, chosen, classes = bundle_facts(bundle, device, backend)
    note(f"{bundle}: {input_size[0]}x{input_size[1]}, {classes} classes, backend {chosen}", label="bundle")
    server = TritonServer(bundle, host=host, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port,
                          max_batch=max_batch, top=top, device=device, backend=backend, input_size=input_size,
                          num_classes=classes, log=sys.stderr if verbose else None)
    raise typer.Exit(serve_forever(server, announce=say))


def register(app: typer.Typer) -> None:
    app.command("serve")(one_line_errors(serve_command))

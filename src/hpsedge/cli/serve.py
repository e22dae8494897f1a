"""``hpsedge serve``: a thin wrapper over :func:`hpsedge.serve.server.serve`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hpsedge.cli._common import console, parse_precision


def serve_cmd(
    export_dir: Annotated[Path, typer.Argument(help="A build folder (with manifest.json).")],
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    http_port: Annotated[int, typer.Option(help="HTTP port.")] = 8000,
    grpc_port: Annotated[int, typer.Option(help="gRPC port.")] = 8001,
    metrics_port: Annotated[int, typer.Option(help="Prometheus metrics port (/metrics).")] = 8002,
    batching: Annotated[bool, typer.Option("--batching/--no-batching", help="Triton's dynamic batcher on the network.")] = True,
    max_queue_delay_us: Annotated[int, typer.Option(help="Dynamic batcher's maximum queue delay (µs).")] = 2000,
    instances: Annotated[int, typer.Option(help="Frames pre/post-processed in parallel.")] = 4,
    max_persons: Annotated[int, typer.Option(help="Most boxes one request may carry.")] = 64,
    smpl: Annotated[Path | None, typer.Option("--smpl", help="SMPL model: responses get joints and vertices.")] = None,
    device: Annotated[str, typer.Option(help="ONNX Runtime device: cpu | cuda | tensorrt | auto.")] = "cpu",
    threads: Annotated[int | None, typer.Option(help="ONNX Runtime threads.")] = None,
    precision: Annotated[str | None, typer.Option(help="fp32 | fp16 | int8 graph of the folder.",
                                                  callback=parse_precision)] = None,
    log_verbose: Annotated[int, typer.Option(help="tritonserver's verbose log level (0: off).")] = 0,
    http: Annotated[bool, typer.Option("--http/--no-http", help="Serve HTTP too (--no-http: gRPC only, no HTTP port).")] = True,
    max_side: Annotated[int, typer.Option(help="Largest image side (pixels) a request may carry; bounds request sizes.")] = 8192,
) -> None:
    """Serve a build folder on Triton Inference Server (PyTriton): HTTP, gRPC, health, metrics."""
    from hpsedge.serve.server import ServeConfig, serve

    cfg = ServeConfig(
        host=host, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port, batching=batching,
        max_queue_delay_us=max_queue_delay_us, instances=instances, max_persons=max_persons, device=device,
        threads=threads, precision=precision, log_verbose=log_verbose, http=http, max_side=max_side,
    )

    def ready(summary: dict) -> None:
        console.print(
            f"[green]✓[/green] serving {summary['model']} ({summary['network_model']}, dynamic batching "
            f"{'on' if summary['batching'] else 'off'}, max batch {summary['max_batch']}) on {summary['host']}: "
            f"{'HTTP ' + str(summary['http']) + ', ' if summary['http'] else 'no HTTP, '}gRPC {summary['grpc']}, "
            f"metrics {summary['metrics']}; Ctrl+C stops",
            highlight=False,
        )

    raise typer.Exit(serve(export_dir, cfg, smpl=smpl, on_ready=ready))

"""``bindrt serve``: a bundle behind Triton Inference Server through PyTriton (imports stay inside ``run``)."""

from __future__ import annotations

import argparse

DESCRIPTION = (
    "Serve a bundle on a real Triton Inference Server (nvidia-pytriton): one model per input kind taking raw "
    "inputs (text as UTF-8 BYTES; image, video, depth, thermal and audio files as BYTES; audio also as FP32 "
    "'waveform' + INT32 'sample_rate'; IMU as FP32 (6, N)) and one '<kind>_encoder' model per kind taking the "
    "preprocessed tensor; every model returns the L2-normalised float32 'embedding'; concurrent requests of one "
    "kind are batched (a bad request fails alone, with an error naming what was wrong). "
    "Health at /v2/health/ready, Prometheus metrics on --metrics-port. SIGTERM/SIGINT: accepted requests are "
    "answered, then it exits 0. Listens on 127.0.0.1 unless --host says otherwise. Clients: bindrt.client.Client."
)


def register(sub: argparse._SubParsersAction) -> None:
    from bindrt.serving import protocol, server  # numpy only at import

    p = sub.add_parser("serve", help="serve a bundle on Triton Inference Server (PyTriton)", description=DESCRIPTION)
    p.add_argument("bundle", help="bundle directory with graphs for --backend")
    p.add_argument(
        "--backend",
        default=server.DEFAULT_BACKEND,
        help=f"bindrt backend doing the work (default {server.DEFAULT_BACKEND})",
    )
    p.add_argument("--device", default="cpu", help="default cpu")
    p.add_argument("--precision", default="fp32", help="default fp32")
    p.add_argument("--modalities", help="comma-separated modalities (default: all in the bundle)")
    p.add_argument(
        "--host", default=protocol.DEFAULT_HOST, help=f"address to listen on (default {protocol.DEFAULT_HOST})"
    )
    p.add_argument("--http-port", type=int, default=protocol.DEFAULT_HTTP_PORT)
    p.add_argument("--grpc-port", type=int, default=protocol.DEFAULT_GRPC_PORT)
    p.add_argument("--metrics-port", type=int, default=protocol.DEFAULT_METRICS_PORT)
    p.add_argument(
        "--max-batch",
        type=int,
        default=server.DEFAULT_MAX_BATCH,
        help=f"Triton max_batch_size per model, and the most items batched at once (default {server.DEFAULT_MAX_BATCH})",
    )
    p.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=server.DEFAULT_MAX_QUEUE_DELAY_US,
        help="how long bindrt waits to batch concurrent requests of one kind "
        f"(default {server.DEFAULT_MAX_QUEUE_DELAY_US})",
    )
    p.add_argument(
        "--instances",
        type=int,
        default=server.DEFAULT_INSTANCES,
        help="model instances per model: requests one model decodes at once, batched after that "
        f"(default {server.DEFAULT_INSTANCES})",
    )
    p.add_argument(
        "--max-request-bytes",
        type=int,
        default=protocol.MAX_REQUEST_BYTES,
        help=f"cap on one request's input bytes (default {protocol.MAX_REQUEST_BYTES})",
    )
    p.add_argument(
        "--exit-timeout-s",
        type=int,
        default=server.DEFAULT_EXIT_TIMEOUT_S,
        help="on stop, wait this long for accepted requests",
    )
    p.add_argument("--index", help="also serve a 'search' model over this index (bindrt index) of the same bundle")
    p.add_argument("--ready-file", help="write the URLs as JSON to this file once every model is loaded")
    p.add_argument("--verbose", action="store_true", help="Triton's log on stdout, PyTriton's on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from bindrt.cli import modality_list
    from bindrt.serving.server import serve

    def ready(info: dict) -> None:
        print(
            f"bindrt serve: ready: {len(info['models'])} models, HTTP {info['http']}, gRPC {info['grpc']}, "
            f"metrics {info['metrics']} (SIGTERM or Ctrl-C stops)",
            file=sys.stderr,
            flush=True,
        )

    return serve(
        args.bundle,
        backend=args.backend,
        device=args.device,
        precision=args.precision,
        modalities=modality_list(args.modalities) if args.modalities else None,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        max_batch=args.max_batch,
        max_queue_delay_us=args.max_queue_delay_us,
        instances=args.instances,
        max_request_bytes=args.max_request_bytes,
        exit_timeout_s=args.exit_timeout_s,
        ready_file=args.ready_file,
        on_ready=ready,
        verbose=args.verbose,
        index=args.index,
    )

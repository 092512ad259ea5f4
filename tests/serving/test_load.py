"""The serving load test (benchmarks/serving/load_test.py) as CI runs it: 16 clients for 20 s over HTTP and gRPC."""

from __future__ import annotations

import argparse

import pytest

pytest.importorskip("pytriton", reason="bindrt serve needs nvidia-pytriton (pip install 'bindrt[serve]')")
pytest.importorskip("tritonclient.grpc", reason="the load test needs tritonclient[http,grpc]")
pytest.importorskip("onnxruntime", reason="the served bundle runs on the onnxruntime backend")


def test_sixteen_clients_for_twenty_seconds_no_failed_good_request_every_bad_one_named(serving_bundle):
    from benchmarks.serving.load_test import BAD_REQUESTS, GOOD_REQUESTS, parser, run

    args: argparse.Namespace = parser().parse_args(
        ["--bundle", str(serving_bundle), "--clients", "16", "--seconds", "20", "--bad-fraction", "0.15", "--seed", "7"]
    )
    report = run(args, progress=lambda _: None)
    failures = {k: r["failures"] for k, r in report["rows"].items() if r["failed"]}
    assert report["failed_good_requests"] == 0, failures
    assert report["bad_not_rejected_clearly"] == 0, failures
    assert report["healthy_after"] and report["server_exit_code"] == 0
    kinds = {name.rsplit(" ", 1)[0] for name in report["rows"]}
    protocols = {name.rsplit(" ", 1)[1] for name in report["rows"]}
    assert protocols == {"http", "grpc"}
    assert set(GOOD_REQUESTS) <= kinds  # every modality was served
    assert len(set(BAD_REQUESTS) & kinds) >= 5  # most bad kinds drawn in 20 s (each 15% / 7)
    assert report["good_requests"] > 50 and report["items_per_s"] > 0

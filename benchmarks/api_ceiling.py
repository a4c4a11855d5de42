"""The ceiling of the API's stack for the storm: POST /jobs per second through waitress alone, waitress + our Flask app, and that app + the channel to a scheduler that answers at once.

    python -m benchmarks.api_ceiling [--seconds 3] [--rounds 3] [--connections 4]

The storm scenario (4 keep-alive clients, 201 per acknowledged job) measures the whole
daemon. This splits it: each layer runs in a server process of its own on a free
127.0.0.1 port, driven by the same load generator, so the difference between two rows is
what that layer costs. No job is stored: the "scheduler" answers every request with a
fixed 201 body. Rounds alternate between the layers (noise on a shared machine hits each
alike); the median is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

from benchmarks import loadgen
from benchmarks.daemons import job_body

LAYERS = ("waitress", "waitress+app", "waitress+app+channel")
ANSWER = {"id": 1, "run_name": "gflow-job-1"}


def _raw_app(environ, start_response):
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    body = json.dumps(ANSWER).encode()
    start_response("201 Created", [("Content-Type", "application/json"),
                                   ("Content-Length", str(len(body)))])
    return [body]


class InstantBridge:
    """The scheduler's side of `bridge.request`, answering at once in this process."""

    class Unavailable(Exception):
        pass

    def request(self, op, payload=None, caller=None, timeout=30.0):
        return 201, ANSWER


def _instant_scheduler(address: str, key: bytes) -> None:
    """A hub that answers every request at once (a child process: its own GIL)."""
    from gflow.ipc import Hub
    hub = Hub(address, key)
    while True:
        peer, msg = hub.inbox.get()
        if msg[0] == "req":
            peer.send(("rep", msg[1], 201, ANSWER))


def serve(layer: str) -> None:
    """Run one layer's server in this process; prints its port, then serves forever."""
    from waitress.server import create_server
    if layer == "waitress":
        app = _raw_app
    else:
        from gflow.api.app import create_app
        from gflow.identity import caller_for_uid
        if layer == "waitress+app":
            bridge = InstantBridge()
        else:
            import multiprocessing
            from gflow.ipc import RequestClient
            address, key = f"\0gflow-api-ceiling-{os.getpid()}", os.urandom(16)
            multiprocessing.get_context("fork").Process(
                target=_instant_scheduler, args=(address, key), daemon=True).start()
            bridge = RequestClient(address, key, "api")
            if not bridge.channel.ready.wait(10):
                raise SystemExit("the instant scheduler did not come up")
        flask_app = create_app(bridge)
        caller = caller_for_uid(os.getuid(), "unix").to_wire()

        def app(environ, start_response):     # what api/peers.py sets per connection
            environ["gflow.caller"] = caller
            return flask_app(environ, start_response)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    # The daemon's own settings (gflow/api/service.py) where they matter per request.
    server = create_server(app, sockets=[sock], threads=16, ident="gflowd",
                           channel_timeout=120, connection_limit=1000)
    print(sock.getsockname()[1], flush=True)
    server.run()


def measure(layer: str, seconds: float, connections: int) -> float:
    # Its own session: the scheduler stand-in it forks goes with it (killpg below).
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.api_ceiling", "--serve", layer],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        port = int(proc.stdout.readline())
        body = json.dumps(job_body("true", gpus=64)).encode()
        res = loadgen.run("127.0.0.1", port, "/jobs", body, connections=connections,
                          seconds=seconds, expect_status=201)
        if res["bad"] or not res["ok"]:
            raise SystemExit(f"{layer}: {res['bad']} bad answers, {res['ok']} good")
        return res["ok"] / res["seconds"]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.api_ceiling",
                                description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--serve", choices=LAYERS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    rates: dict[str, list[float]] = {layer: [] for layer in LAYERS}
    for _ in range(args.rounds):
        for layer in LAYERS:
            rates[layer].append(measure(layer, args.seconds, args.connections))
    load = os.getloadavg()[0]
    print(f"POST /jobs per second, {args.connections} keep-alive connections, "
          f"median of {args.rounds} x {args.seconds:g} s, load {load:.2f}")
    for layer in LAYERS:
        med = statistics.median(rates[layer])
        print(f"  {layer:22s} {med:8.0f}/s   {1000 / med:.3f} ms a request   "
              f"(runs: {', '.join(f'{r:.0f}' for r in rates[layer])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A forward worker process: ``python -m roadvision.serving.forward_worker`` (started by
``forward_workers.ForwardPool``, never by hand).

It loads the bundle, says ``("ready", pid)`` over its connection, then answers each
``(tta, layout, inline)`` message with ``("ok", results)`` or ``("error", text)``: the samples
are read from the shared arena (``tensor_arena``) where ``layout`` points, or taken from
``inline`` when the batch did not fit. It exits when the front process closes the connection
(or dies), so a worker never outlives its server.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import traceback
from multiprocessing.connection import Connection

from roadvision.errors import UserError

log = logging.getLogger("roadvision.serving.forward_worker")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m roadvision.serving.forward_worker")
    parser.add_argument("--conn_fd", type=int, required=True)
    parser.add_argument("--arena_fd", type=int, required=True)
    parser.add_argument("--arena_bytes", type=int, required=True)
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    return parser


def serve(conn: Connection, forward, arena) -> None:
    """Answer forward requests until the connection closes."""
    from .tensor_arena import unpack

    while True:
        try:
            tta, layout, inline = conn.recv()
        except (EOFError, OSError):
            return
        samples = inline if layout is None else unpack(arena, layout)
        try:
            results = forward([(sample, tta) for sample in samples])
        except Exception as exc:  # noqa: BLE001 - reported to the front, which answers 500
            traceback.print_exc()
            reply = ("error", f"{type(exc).__name__}: {exc}")
        else:
            reply = ("ok", results)
        del samples  # release the views of the arena before it is written again
        conn.send(reply)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # The front process decides when we stop (it closes our connection); a terminal's Ctrl-C
    # reaches the whole process group and must not kill a forward halfway.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s forward-worker %(message)s")
    conn = Connection(args.conn_fd)
    try:
        import torch

        from roadvision.runtime.inference import load_for_inference

        from .forward import Forward
        from .tensor_arena import map_arena

        torch.set_num_threads(max(1, args.threads))
        forward = Forward(load_for_inference(args.bundle, device=args.device))
        arena = map_arena(args.arena_fd, args.arena_bytes)
    except UserError as exc:  # a bad bundle: the front reports it in one line
        conn.send(("refused", str(exc)))
        return 1
    except Exception as exc:  # noqa: BLE001 - told to the front, which refuses the load
        traceback.print_exc()
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return 1
    conn.send(("ready", os.getpid()))
    with torch.inference_mode():
        serve(conn, forward, arena)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""roadvision serving: a KServe predictor with TTA, micro-batching, a Redis cache, Prometheus
metrics and a safe REST API (``python -m roadvision.serving`` / ``roadvision serve``).

One idea per module:

- ``predictor``: the ``kserve.Model`` subclass (load / preprocess / predict / postprocess);
- ``server``: our routes, limits, error rendering and model reloads on KServe's ModelServer;
- ``kserve_seam``: the only module that touches KServe internals (pinned by
  ``tests/test_kserve_seam.py``);
- ``v2codec``: Open Inference Protocol request decoding, binary tensor extension included;
- ``validation``: request schema (v1/v2 instances, metadata, TTA);
- ``budget``: the compute cost of a request (model windows / views x TTA copies), before decoding;
- ``batching``: the micro-batcher (forward off the event loop);
- ``forward_workers`` + ``forward_worker`` + ``tensor_arena``: the forward in N worker
  processes, samples handed over through shared memory; ``forward``: the model call itself;
- ``cache`` + ``redis_client``: the response cache and the pooled, circuit-broken Redis client;
- ``auth``: API keys and exact sliding-window rate limits; ``errors``: typed 4xx/5xx errors;
- ``metrics``: Prometheus metrics; ``audit``: one JSON log line per request;
- ``openapi``: request/response schemas for ``/openapi.json``; ``config``: limits from env/flags.

Importing this package imports nothing heavy; ``__main__`` does.
"""

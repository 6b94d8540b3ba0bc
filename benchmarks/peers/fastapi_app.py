"""Thin FastAPI + uvicorn: one process, the forward run inline on the event loop (no batching,
no thread hop), KServe v1 JSON in and out at ``/v1/models/roadwork:predict``.

    PEER_BUNDLE=... python -m benchmarks.peers.fastapi_app PORT
"""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from benchmarks.peers import _common

app = FastAPI()
model = _common.load_model()


@app.get("/health")
async def health() -> dict:
    return {"ready": True}


@app.post("/v1/models/roadwork:predict")
async def predict(body: dict) -> dict:
    # Inline on purpose: one request at a time, the least machinery a server can have.
    return _common.v1_answer(_common.infer(model, [_common.v1_image(body)])[0])


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=_common.port(), log_level="warning", workers=1,
                access_log=False)

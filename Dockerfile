# One image for the gateway (`vinr serve`) and the GPU workers (`vinr worker`); checkpoints baked in.
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    VINR_DATA_DIR=/data

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

WORKDIR /app
# torch first (its own index: CUDA build by default, TORCH_INDEX_URL=.../whl/cpu for a CPU image)
RUN pip install "torch==2.13.0" --index-url "$TORCH_INDEX_URL"
COPY pyproject.toml README.md ./
COPY models ./models
COPY worker ./worker
COPY service ./service
RUN pip install . && python -c "from models import registry; print(registry.served())"

RUN useradd --create-home --uid 10001 vinr && mkdir -p /data && chown vinr:vinr /data
USER vinr
VOLUME ["/data"]
EXPOSE 8000
CMD ["vinr", "serve", "--host", "0.0.0.0", "--port", "8000"]

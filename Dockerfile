# One image for the gateway (`vinr serve`) and the workers (`vinr worker`); checkpoints baked in.
# The CUDA build of torch brings its own CUDA runtime as wheels, so the base is plain Python (the
# version requirements.lock was resolved with); the host needs the NVIDIA driver and container toolkit.
# CPU-only image: --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu --build-arg ORT_FLAVOUR=cpu
FROM python:3.11-slim-bookworm

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
# gpu: onnxruntime-gpu (CUDA and TensorRT providers); cpu: onnxruntime, the build the tests run
ARG ORT_FLAVOUR=gpu
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    VINR_DATA_DIR=/data \
    VINR_CACHE_DIR=/data/cache

RUN python -m venv /opt/venv
WORKDIR /app
# torch from its own index (the build matches the hardware), then everything else from the lock
RUN pip install "torch==2.13.0" --index-url "$TORCH_INDEX_URL"
COPY requirements.lock pyproject.toml README.md ./
COPY models ./models
COPY worker ./worker
COPY service ./service
# ONNX Runtime at the version the lock pins for onnxruntime: onnxruntime-gpu (vinr[onnx-gpu]), or the
# lock's onnxruntime itself (vinr[onnx]) with ORT_FLAVOUR=cpu
RUN ORT_VERSION="$(sed -n 's/^onnxruntime==//p' requirements.lock)" \
    && test -n "$ORT_VERSION" \
    && case "$ORT_FLAVOUR" in \
         gpu) pip install -c requirements.lock ".[onnx-gpu]" "onnxruntime-gpu==$ORT_VERSION" ;; \
         cpu) pip install -c requirements.lock ".[onnx]" "onnxruntime==$ORT_VERSION" ;; \
         *) echo "ORT_FLAVOUR must be gpu or cpu, not $ORT_FLAVOUR" >&2; exit 1 ;; \
       esac \
    && pip check \
    && python -c "import onnxruntime; print('onnxruntime', onnxruntime.__version__, onnxruntime.get_available_providers())"

# Fail the build, not a user's job, when a dependency is missing: import every module, --help every command.
COPY .ci/smoke /usr/local/bin/vinr-smoke
RUN bash /usr/local/bin/vinr-smoke && python -c "from models import registry; print(registry.served())"

RUN useradd --create-home --uid 10001 vinr && mkdir -p /data && chown vinr:vinr /data && chmod 0700 /data
USER vinr
VOLUME ["/data"]
EXPOSE 8000
CMD ["vinr", "serve", "--host", "0.0.0.0", "--port", "8000"]

# The platform image: services, stage runner, trainer and operator (one image, several commands).
#   docker build -t ghcr.io/seft-platform/seft:0.1.0 .
#   docker build --target vllm -t ghcr.io/seft-platform/seft-vllm:0.1.0 .   # the vLLM sidecar
# CUDA_IMAGE is the base of the platform image; VLLM_IMAGE the base of the sidecar (vLLM >= 0.11,
# for return_token_ids). Both run as user 1000.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
ARG VLLM_IMAGE=vllm/vllm-openai:v0.11.0

FROM ${VLLM_IMAGE} AS vllm
USER 1000

FROM ${CUDA_IMAGE} AS platform
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/seft PATH=/opt/seft/bin:$PATH HOME=/tmp
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python3-dev g++ ninja-build \
    && rm -rf /var/lib/apt/lists/* && python3 -m venv /opt/seft
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY platform platform
COPY services services
COPY operators operators
RUN pip install ".[deepspeed,operator]" && rm -rf /src
WORKDIR /tmp
USER 1000
ENTRYPOINT []
CMD ["seft", "--help"]

# The mlplat platform image: every KFP component, the TrainJob and the serving/monitoring pods run it.
#   docker build -t ghcr.io/mlplat/mlplat:0.1.0 .
# By default torch comes from PyPI (CUDA-enabled wheels; they also run on CPU nodes). For a smaller
# CPU-only image pass PyTorch's CPU wheel index: --build-arg TORCH_INDEX_URL=<index URL>.
FROM python:3.11-slim

ARG TORCH_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# libgomp1: OpenMP runtime for torch/scikit-learn CPU kernels
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/mlplat
COPY pyproject.toml constraints.txt README.md ./
COPY platform ./platform
COPY plugins ./plugins
# constraints.txt pins every dependency (torch, numpy<2, kfp, ...) to the versions the tests ran with.
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
      pip install --index-url "$TORCH_INDEX_URL" -c constraints.txt "torch==$(sed -n 's/^torch==//p' constraints.txt)"; \
    fi \
 && pip install -c constraints.txt . \
 && mlplat plugins list

# Run as a non-root user; KFP components, kfp.local and TrainJobs need no root.
RUN useradd --create-home --uid 1000 --user-group mlplat
USER 1000:1000
WORKDIR /home/mlplat
ENV MLPLAT_RUNS_DIR=/home/mlplat/runs

CMD ["mlplat", "--help"]

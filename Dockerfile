# The mlplat platform image: every KFP component, the TrainJob and the serving/monitoring pods run it.
#   docker build -t ghcr.io/mlplat/mlplat:0.1.0 .
# By default torch comes from PyPI (CUDA-enabled wheels; they also run on CPU nodes). For a smaller
# CPU-only image pass PyTorch's CPU wheel index:
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Python 3.11 and Debian bookworm: the interpreter and platform constraints.txt was resolved on.
FROM python:3.11-slim-bookworm

ARG TORCH_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# libgomp1: OpenMP runtime for torch/scikit-learn CPU kernels. g++: the trainer's `compile: true`
# (torch.compile) builds C++ kernels on CPU and Triton's launcher with a C compiler on GPUs.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 g++ \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/mlplat
COPY pyproject.toml constraints.txt README.md ./
COPY platform ./platform
COPY plugins ./plugins
# constraints.txt pins every dependency (torch, numpy<2, kfp, ...) to the versions the tests ran with.
# Only torch itself comes from TORCH_INDEX_URL (--no-deps): that index need not carry the pinned versions
# of torch's dependencies, which the next install takes from PyPI under the same constraints.
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
      pip install --no-deps --index-url "$TORCH_INDEX_URL" "torch==$(sed -n 's/^torch==//p' constraints.txt)"; \
    fi \
 && pip install -c constraints.txt . \
 && mlplat plugins list

# Run as a non-root user; KFP components, kfp.local and TrainJobs need no root. KFP's launcher
# writes artifacts under /gcs, /minio and /s3; older backends do not mount emptyDirs there,
# so they exist here and are writable by any user (kubeflow/pipelines#5673).
RUN useradd --create-home --uid 1000 --user-group mlplat \
 && mkdir -p /gcs /minio /s3 && chmod 1777 /gcs /minio /s3
USER 1000:1000
WORKDIR /home/mlplat
ENV MLPLAT_RUNS_DIR=/home/mlplat/runs

CMD ["mlplat", "--help"]

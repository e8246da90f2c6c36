"""The baseline of benchmarks/image_serving.py: a plain `kserve.Model` that decodes and predicts one image per
request, on KServe's own ModelServer. Same decode (mlplat.images) and the same network; no batching.

    python benchmarks/naive_image_model.py MODEL_DIR PORT
"""

from __future__ import annotations

import base64
import sys
from typing import Any

import kserve
import torch
from mlplat import images
from mlplat.modeldir import LoadedModel


class NaiveImageModel(kserve.Model):
    def __init__(self, model_dir: str) -> None:
        self.loaded = LoadedModel.load(model_dir)
        super().__init__(self.loaded.name)
        self.ready = True

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
        tensors = [images.decode(base64.b64decode(i["image"]["b64"]), self.loaded.image_preprocessing)
                   for i in payload["instances"]]
        probabilities = self.loaded.predict_proba_images(torch.stack(tensors))
        return {"predictions": [self.loaded.class_names[k] for k in probabilities.argmax(1)],
                "probabilities": probabilities.tolist()}


if __name__ == "__main__":
    torch.set_num_threads(1)
    kserve.ModelServer(http_port=int(sys.argv[2]), enable_grpc=False, workers=1).start([NaiveImageModel(sys.argv[1])])

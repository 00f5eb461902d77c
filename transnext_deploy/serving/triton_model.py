"""The Triton Python-backend model behind `transnext-deploy serve` (see server.py).

This module runs inside Triton's Python-backend stub process, where `triton_python_backend_utils`
exists; nothing else imports it. Each model instance loads the bundle once (`runtime.load`) and
answers the batches Triton's dynamic batcher forms:

- `transnext` (kind "image"): every request holds (n, 1) encoded image files. The images of the whole
  batch go through `Predictor.predict_each` (predict's own path): each is decoded and preprocessed on
  its own, the good ones run as one batch, and a request with bytes that are not an image gets its
  own one-line error response while the others in the batch are answered.
- `transnext_tensor` (kind "tensor"): requests hold preprocessed (n, 3, H, W) float32 images; they are
  concatenated, run once, and the logits split back.
"""

from __future__ import annotations

import json

import numpy as np

from ..artifacts import IMAGE_INPUT, INPUT_NAME, LOGITS_OUTPUT, TOP_K_OUTPUTS
from ..errors import TransNeXtDeployError, one_line


def _parameters(args: dict) -> dict[str, str]:
    config = json.loads(args["model_config"])
    return {key: value["string_value"] for key, value in config.get("parameters", {}).items()}


class TritonPythonModel:
    """Triton's Python-backend interface: initialize, execute (a list of requests -> one response each), finalize."""

    def initialize(self, args: dict) -> None:
        from ..bundle import runtime

        params = _parameters(args)
        self.kind = params["kind"]
        self.top = int(params.get("top", "5"))
        self.predictor = runtime.load(params["bundle"], device=params.get("device", "auto"),
                                      backend=params.get("backend"))

    def execute(self, requests: list) -> list:
        import triton_python_backend_utils as pb_utils  # exists only inside the stub

        if self.kind == "tensor":
            return self._execute_tensor(requests, pb_utils)
        return self._execute_image(requests, pb_utils)

    def _execute_image(self, requests: list, pb_utils) -> list:
        files = [pb_utils.get_input_tensor_by_name(request, IMAGE_INPUT).as_numpy().reshape(-1) for request in requests]
        try:  # BYTES tensors arrive as bytes objects; bytes() makes sure
            outcomes = iter(self.predictor.predict_each([bytes(data) for request in files for data in request],
                                                        self.top))
        except TransNeXtDeployError as exc:  # the backend refused the batch: every request in it fails
            error = pb_utils.TritonError(f"inference failed: {one_line(exc)}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        responses = []
        for request in files:
            results = [next(outcomes) for _ in request]
            failed = [(i, r) for i, r in enumerate(results) if isinstance(r, TransNeXtDeployError)]
            if failed:
                i, exc = failed[0]
                where = f"image {i} of {len(results)} in this request: " if len(results) > 1 else ""
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(where + one_line(exc))))
                continue
            indices = np.array([[c for c, _, _ in r.top] for r in results], np.int64).reshape(len(results), self.top)
            probabilities = np.array([[p for _, _, p in r.top] for r in results], np.float32).reshape(indices.shape)
            labels = np.array([[label.encode() for _, label, _ in r.top] for r in results],
                              dtype=np.object_).reshape(indices.shape)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(name, value) for name, value in zip(TOP_K_OUTPUTS, (indices, probabilities, labels))]))
        return responses

    def _execute_tensor(self, requests: list, pb_utils) -> list:
        batches = [pb_utils.get_input_tensor_by_name(request, INPUT_NAME).as_numpy() for request in requests]
        try:
            logits = self.predictor.logits(np.concatenate(batches))
        except TransNeXtDeployError as exc:
            error = pb_utils.TritonError(f"inference failed: {one_line(exc)}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        responses, start = [], 0
        for batch in batches:
            rows = logits[start:start + len(batch)]
            start += len(batch)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(LOGITS_OUTPUT, np.ascontiguousarray(rows, dtype=np.float32))]))
        return responses

    def finalize(self) -> None:
        predictor, self.predictor = getattr(self, "predictor", None), None
        if predictor is not None:
            predictor.close()

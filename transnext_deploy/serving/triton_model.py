"""The Triton Python-backend model behind `transnext-deploy serve` (see serve.py).

This module runs inside Triton's Python-backend stub process, where `triton_python_backend_utils`
exists; nothing else imports it. Each model instance loads the bundle once (`runtime.load`) and
answers the batches Triton's dynamic batcher forms:

- `transnext` (kind "image"): every request holds (n, 1) encoded image files. Each image is decoded
  and preprocessed on its own, so a request whose bytes are not an image gets its own one-line error
  response while the others in the batch are answered; the good images of the whole batch then go
  through the backend as one batch, and each row's softmax top-K goes back to its request.
- `transnext_tensor` (kind "tensor"): requests hold preprocessed (n, 3, H, W) float32 images; they are
  concatenated, run once, and the logits split back.
"""

from __future__ import annotations

import json

import numpy as np

from ..errors import TransNeXtDeployError, one_line
from .server import IMAGE_INPUT, LOGITS_OUTPUT, TENSOR_INPUT


class _RequestError(TransNeXtDeployError):
    """One image of a multi-image request could not be used; the message says which."""


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
        self.predictor = runtime.load(params["bundle"], device=params.get("device", "auto"))

    def execute(self, requests: list) -> list:
        import triton_python_backend_utils as pb_utils  # exists only inside the stub

        if self.kind == "tensor":
            return self._execute_tensor(requests, pb_utils)
        return self._execute_image(requests, pb_utils)

    def _execute_image(self, requests: list, pb_utils) -> list:
        from ..bundle.runtime import top_k

        tensors: list[list[np.ndarray] | None] = []  # per request: its preprocessed images, or None if refused
        responses: list = [None] * len(requests)
        for r, request in enumerate(requests):
            files = pb_utils.get_input_tensor_by_name(request, IMAGE_INPUT).as_numpy().reshape(-1)
            try:
                tensors.append([self._preprocess(files, i) for i in range(len(files))])
            except TransNeXtDeployError as exc:
                tensors.append(None)
                responses[r] = pb_utils.InferenceResponse(error=pb_utils.TritonError(one_line(exc)))
        good = [images for images in tensors if images]
        if good:
            try:
                predictions = iter(top_k(self.predictor.logits(np.stack([x for images in good for x in images])),
                                         self.predictor.labels, self.top))
            except TransNeXtDeployError as exc:  # the backend refused the batch: every request in it fails
                error = pb_utils.TritonError(f"inference failed: {one_line(exc)}")
                return [responses[r] or pb_utils.InferenceResponse(error=error) for r in range(len(requests))]
        for r, images in enumerate(tensors):
            if images is None:
                continue
            rows = [next(predictions) for _ in images] if images else []
            indices = np.array([[i for i, _, _ in row.top] for row in rows], np.int64).reshape(len(rows), self.top)
            probabilities = np.array([[p for _, _, p in row.top] for row in rows], np.float32).reshape(indices.shape)
            labels = np.array([[label.encode() for _, label, _ in row.top] for row in rows],
                              dtype=np.object_).reshape(indices.shape)
            responses[r] = pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("indices", indices), pb_utils.Tensor("probabilities", probabilities),
                pb_utils.Tensor("labels", labels)])
        return responses

    def _preprocess(self, files: np.ndarray, i: int) -> np.ndarray:
        data = files[i]
        if not isinstance(data, (bytes, bytearray)):  # BYTES tensors arrive as bytes objects; be sure
            data = bytes(data)
        try:
            return self.predictor.preprocess(bytes(data))
        except TransNeXtDeployError as exc:
            if len(files) == 1:
                raise
            raise _RequestError(f"image {i} of {len(files)} in this request: {one_line(exc)}") from None

    def _execute_tensor(self, requests: list, pb_utils) -> list:
        batches = [pb_utils.get_input_tensor_by_name(request, TENSOR_INPUT).as_numpy() for request in requests]
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

"""Serving bundles with Triton Inference Server: the server `serve` runs (`server`), the Python-backend
model inside it (`triton_model`), and the model repository for a production Triton (`repository`)."""

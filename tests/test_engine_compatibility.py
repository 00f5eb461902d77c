"""engine/compatibility.py: whether an engine (its metadata, or a bundle manifest's entry) runs with
this TensorRT, GPU and plugin library."""

from __future__ import annotations

import pytest

from transnext_deploy.engine.compatibility import engine_problem

ENGINE = {"file": "models/224x224/model.aa_plugin.fp16.engine", "precision": "fp16", "tensorrt_version": "10.3.0.26",
          "compute_capability": "8.7", "sm": "87", "version_compatible": False, "hardware_compatibility": "none",
          "plugin_library": {"file": "lib/libtransnext_aa_plugin.so", "sha256": "a" * 64}}


@pytest.mark.parametrize("changes, trt, cc, plugins, expected", [
    ({}, "10.3.0.26", (8, 7), {"a" * 64}, None),
    ({}, "10.3.0", (8, 7), {"a" * 64}, None),
    ({}, "10.13.3.9", (8, 7), {"a" * 64}, "built by TensorRT 10.3.0.26, this is TensorRT 10.13.3.9"),
    ({"version_compatible": True}, "10.13.3.9", (8, 7), {"a" * 64}, None),
    ({"version_compatible": True}, "10.2.0", (8, 7), {"a" * 64}, "version-compatible from TensorRT 10.3.0.26 on"),
    ({"version_compatible": True}, "11.1.0", (8, 7), {"a" * 64}, "within major version 10"),
    ({}, "10.3.0.26", (8, 6), {"a" * 64}, "built for compute capability 8.7, this GPU is 8.6"),
    ({"hardware_compatibility": "same_compute_capability"}, "10.3.0.26", (9, 0), {"a" * 64},
     "built for compute capability 8.7"),
    ({"hardware_compatibility": "ampere_plus"}, "10.3.0.26", (9, 0), {"a" * 64}, None),
    ({"hardware_compatibility": "ampere_plus"}, "10.3.0.26", (7, 5), {"a" * 64}, "needs an Ampere or later GPU"),
    ({}, "10.3.0.26", (8, 7), {"b" * 64}, "no plugin library with the sha256 the engine was built against"),
    ({}, "10.3.0.26", (8, 7), set(), "no plugin library"),
])
def test_engine_compatibility_rules(changes, trt, cc, plugins, expected):
    problem = engine_problem({**ENGINE, **changes}, trt, cc, plugins)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem, problem
        assert "\n" not in problem

"""engine/compatibility.py: whether an engine (its metadata, or a bundle manifest's entry) runs with
this runtime version, GPU and plugin library."""

from __future__ import annotations

import pytest

from transnext_deploy.engine.compatibility import engine_problem, engine_targets

ENGINE = {"file": "models/224x224/model.aa_plugin.fp16.engine", "precision": "fp16", "runtime": "tensorrt",
          "runtime_version": "10.3.0.26", "compute_capabilities": ["87"], "version_compatible": False,
          "hardware_compatibility": "none", "plugin_library": {"file": "lib/libtransnext_aa_plugin.so", "sha256": "a" * 64}}
RTX_ENGINE = {**ENGINE, "file": "models/224x224/model.aa_plugin.fp16.rtx.engine", "runtime": "tensorrt-rtx",
              "runtime_version": "1.7.1.116", "compute_capabilities": ["86", "89", "120"],
              "plugin_library": {"file": "lib/libtransnext_aa_plugin_dynamic.so", "sha256": "a" * 64}}


@pytest.mark.parametrize("engine, changes, version, cc, plugins, expected", [
    (ENGINE, {}, "10.3.0.26", (8, 7), {"a" * 64}, None),
    (ENGINE, {}, "10.3.0", (8, 7), {"a" * 64}, None),
    (ENGINE, {}, "10.13.3.9", (8, 7), {"a" * 64}, "built by tensorrt 10.3.0.26, this is tensorrt 10.13.3.9"),
    (ENGINE, {"version_compatible": True}, "10.13.3.9", (8, 7), {"a" * 64}, None),
    (ENGINE, {"version_compatible": True}, "10.2.0", (8, 7), {"a" * 64}, "version-compatible from tensorrt 10.3.0.26 on"),
    (ENGINE, {"version_compatible": True}, "11.1.0", (8, 7), {"a" * 64}, "within major version 10"),
    (ENGINE, {}, "10.3.0.26", (8, 6), {"a" * 64}, "built for sm_87, this GPU is sm_86"),
    (ENGINE, {"hardware_compatibility": "same_compute_capability"}, "10.3.0.26", (9, 0), {"a" * 64},
     "built for sm_87, this GPU is sm_90"),
    (ENGINE, {"hardware_compatibility": "ampere_plus"}, "10.3.0.26", (9, 0), {"a" * 64}, None),
    (ENGINE, {"hardware_compatibility": "ampere_plus"}, "10.3.0.26", (7, 5), {"a" * 64}, "needs an Ampere or later GPU"),
    (ENGINE, {}, "10.3.0.26", (8, 7), {"b" * 64}, "no plugin library with the sha256 the engine was built against"),
    (ENGINE, {}, "10.3.0.26", (8, 7), set(), "no plugin library"),
    (ENGINE, {"plugin_library": None}, "10.3.0.26", (8, 7), set(), None),  # the standard graph's engine
    # built ahead of time by TensorRT-RTX for several compute capabilities: runs on each of them
    (RTX_ENGINE, {}, "1.7.1.116", (8, 6), {"a" * 64}, None),
    (RTX_ENGINE, {}, "1.7.1.116", (12, 0), {"a" * 64}, None),
    (RTX_ENGINE, {}, "1.7.1.116", (9, 0), {"a" * 64}, "built for sm_86, sm_89, sm_120, this GPU is sm_90"),
    (RTX_ENGINE, {}, "1.8.0", (8, 6), {"a" * 64}, "built by tensorrt-rtx 1.7.1.116, this is tensorrt-rtx 1.8.0"),
])
def test_engine_compatibility_rules(engine, changes, version, cc, plugins, expected):
    problem = engine_problem({**engine, **changes}, version, cc, plugins)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem, problem
        assert "\n" not in problem


def test_engine_targets_read_both_metadata_forms():
    assert engine_targets(RTX_ENGINE) == ["86", "89", "120"]
    assert engine_targets({"gpu": {"compute_capability": "8.7"}}) == ["87"]  # a TensorRT engine's GPU
    assert engine_targets({}) == []

"""Whether an engine runs here: TensorRT's compatibility rules, beside the code that builds engines.

An engine runs on the TensorRT version that built it, or, when built version-compatible, on that
version or a later one of the same major version; on GPUs of the compute capability it was built
for (hardware compatibility "none" or "same_compute_capability"), or on any Ampere or later GPU
("ampere_plus"); and with the very plugin library it was built against (its sha256).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import InvalidArgumentError

# TensorRT's HardwareCompatibilityLevel names, lower case; "same_compute_capability" from TensorRT 10.13.
HARDWARE_COMPATIBILITY = ("none", "ampere_plus", "same_compute_capability")
# Which engine to run when several can: fp16 engines are validated (ENGINE_TOLERANCES) and faster.
PRECISION_PREFERENCE = ("fp16", "fp32")


def by_preference(engines: Iterable[dict]) -> list[dict]:
    """Engine entries (bundle manifest or metadata, with a "precision") in the order to try them."""
    rank = {p: i for i, p in enumerate(PRECISION_PREFERENCE)}
    return sorted(engines, key=lambda e: rank.get(e.get("precision"), len(rank)))


def check_hardware_compatibility(level: str) -> str:
    """`level` when it is one of HARDWARE_COMPATIBILITY, else a one-line InvalidArgumentError."""
    if level not in HARDWARE_COMPATIBILITY:
        raise InvalidArgumentError(f"hardware compatibility must be one of {', '.join(HARDWARE_COMPATIBILITY)}, "
                                   f"got {level!r}")
    return level


def version_tuple(version: str) -> tuple[int, ...]:
    """'10.13.3.9' -> (10, 13, 3, 9); stops at the first piece without digits."""
    parts = []
    for piece in str(version).split("."):
        digits = "".join(c for c in piece if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def engine_targets(engine: dict) -> list[str]:
    """The compute capabilities an engine was built for ("86"...), from its metadata or manifest entry."""
    if engine.get("compute_capabilities"):
        return [str(cc) for cc in engine["compute_capabilities"]]
    cc = str(engine.get("compute_capability") or (engine.get("gpu") or {}).get("compute_capability") or "")
    return [cc.replace(".", "")] if cc else []


def engine_version(engine: dict) -> str:
    """The version of the runtime that built an engine, from its metadata or manifest entry (format 1
    bundles name it tensorrt_version)."""
    return str(engine.get("runtime_version") or engine.get("tensorrt_version"))


def engine_problem(engine: dict, runtime_version: str, compute_capability: tuple[int, int],
                   plugin_sha256s: Iterable[str], plugins_looked_in: str = "the places searched") -> str | None:
    """Why the engine described by `engine` (its metadata, or a bundle manifest's entry) cannot run
    with this version of its runtime, GPU compute capability and these plugin libraries (their
    sha256), or None. `plugins_looked_in` names where the plugin libraries were looked for."""
    runtime = engine.get("runtime", "tensorrt")
    built = engine_version(engine)
    here, there = version_tuple(runtime_version), version_tuple(built)
    if engine.get("version_compatible"):
        if not there or here[:1] != there[:1] or here < there:
            return (f"{runtime} {runtime_version} here; the engine is version-compatible from {runtime} {built} on, "
                    f"within major version {there[:1][0] if there else '?'}")
    elif here[:3] != there[:3]:
        return f"built by {runtime} {built}, this is {runtime} {runtime_version} (not a version-compatible engine)"
    major, minor = compute_capability
    targets = engine_targets(engine)
    level = engine.get("hardware_compatibility") or "none"
    if level == "ampere_plus":
        if major < 8:
            return (f"the engine needs an Ampere or later GPU (hardware compatibility ampere_plus), "
                    f"this is sm_{major}{minor}")
    elif f"{major}{minor}" not in targets:
        return (f"built for sm_{', sm_'.join(targets) or '?'}, this GPU is sm_{major}{minor} "
                f"(hardware compatibility {level})")
    library = engine.get("plugin_library")
    if library and library.get("sha256") not in set(plugin_sha256s):
        return (f"no plugin library with the sha256 the engine was built against ({library.get('sha256', '?')[:12]}…) "
                f"in {plugins_looked_in}")
    return None


__all__ = ["HARDWARE_COMPATIBILITY", "PRECISION_PREFERENCE", "by_preference", "check_hardware_compatibility",
           "engine_problem", "engine_targets", "version_tuple"]

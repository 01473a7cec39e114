"""ONNX Runtime: the CPU engine, and the CUDA one where onnxruntime-gpu is installed.

Session options chosen by measurement on 2 cores (`python -m loadtests.bench_engines --tune`,
loadtests/reports/engines/tuning.md): the full graph optimisation level is what makes ONNX Runtime
fast here (its NCHWc layout transform; basic and extended ran 2.5-3.3x slower); one intra-op
thread per core (1 thread: 0.52-0.59x); the memory arena and pattern planner on (off: down to
0.64x and 0.87x); sequential execution (the parallel executor: 0.45-0.59x on these chain-like
graphs); spinning on (off: 0.79-0.99x on a quiet machine, but up to 2x faster when other processes
take the cores: the `ort_threads` and `ort_spinning` settings).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from lookalike.engines.base import Engine

log = logging.getLogger(__name__)
_PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
_LEVELS = {"basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


@dataclass(frozen=True, kw_only=True)
class OrtOptions:
    """The session options that mattered here; see the module docstring for the measurements."""

    threads: int = 0  # intra-op threads; 0: ONNX Runtime's default, one per physical core
    spinning: bool = True  # threads spin between ops: faster alone, burns CPU when services share cores
    optimization: Literal["basic", "extended", "all"] = "all"
    arena: bool = True
    mem_pattern: bool = True
    parallel: bool = False  # inter-op parallel executor (2 inter-op threads)

    @classmethod
    def from_settings(cls) -> OrtOptions:
        from lookalike.settings import get_settings

        settings = get_settings()
        return cls(threads=settings.ort_threads, spinning=settings.ort_spinning)

    def session_options(self):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[self.optimization])
        options.enable_cpu_mem_arena = self.arena
        options.enable_mem_pattern = self.mem_pattern
        if self.parallel:
            options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
            options.inter_op_num_threads = 2
        if not self.spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return options


def available_providers(gpu: bool = True) -> list[str]:
    """ONNX Runtime's execution providers to use, best first (CUDA only where the build has it)."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    return [p for p in _PREFERRED_PROVIDERS if p in available and (gpu or p == "CPUExecutionProvider")]


class OnnxModel(Engine):
    """An exported model run by ONNX Runtime: uint8 pixels (n, h, w, 3) -> its named outputs, float32."""

    backend = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        providers: list[str] | None = None,
        threads: int | None = None,
        options: OrtOptions | None = None,
    ):
        import onnxruntime as ort

        options = options or OrtOptions.from_settings()
        if threads is not None:
            options = replace(options, threads=threads)
        self.path, self.options = Path(path), options
        self.session = ort.InferenceSession(
            str(path), options.session_options(), providers=providers or available_providers()
        )
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [output.name for output in self.session.get_outputs()]
        self.item_shapes = {
            output.name: tuple(size if isinstance(size, int) else 0 for size in output.shape[1:])
            for output in self.session.get_outputs()
        }
        self.provider = self.session.get_providers()[0]
        log.info("loaded %s on ONNX Runtime %s", path, self.provider)

    def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.session.run(self.output_names, {self.input_name: pixels})
        return dict(zip(self.output_names, outputs))


class OnnxEmbedder(OnnxModel):
    """uint8 pixels (n, h, w, 3) -> {"shape": (n, d), "color": (n, d)} float32, L2-normalised."""


class OnnxDetector(OnnxModel):
    """Letterboxed uint8 pixels (n, S, S, 3) -> {"boxes": (n, A, 4), "scores": (n, A, classes)} float32.

    Raw per-anchor outputs: `lookalike.detection.postprocess` turns one image's rows into detections.
    """

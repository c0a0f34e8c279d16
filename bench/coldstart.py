"""Cold import time of every function's handler module, against `import boto3` alone.

Each figure is the median of fresh interpreters importing the module the way Lambda does: the
function's code folder first on sys.path, then the shared layer, with the environment the template
gives the function. Two figures each:

- from source: no bytecode cache is read or written (an empty pycache prefix and -B), so every module
  imported is compiled; boto3 is measured the same way. The target (<= 1.5x boto3) is on this figure.
- with bytecode: every module's bytecode is already there, as in the layer `sam build` packs
  (layers/agentplane/Makefile precompiles it, since /opt is read-only and nothing can be cached there).
  This is what a deployed function's cold start pays; boto3 is measured the same way again.

The runs go round-robin (boto3, then every function, then again), so a change in the machine's load
while the figures are taken weighs on the baseline and on each function alike.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from devstack import aws, template
from devstack.lambdas import LAYER_PATH

RUNS = 5
TARGET_RATIO = 1.5
BOTO3 = "boto3"

PROBE = """
import importlib, sys, time
sys.path[:0] = [{code!r}, {layer!r}]
started = time.perf_counter()
importlib.import_module({module!r})
print(time.perf_counter() - started)
"""


@dataclass(frozen=True)
class ColdStart:
    name: str
    seconds: float  # from source
    ratio: float
    compiled_seconds: float  # with bytecode, as deployed
    compiled_ratio: float

    @property
    def meets_target(self) -> bool:
        return self.ratio <= TARGET_RATIO


def function_environment(logical_id: str | None) -> dict[str, str]:
    """The Globals and the function's own variables, with intrinsics resolved to local names."""
    resources = aws.Resources()
    for resource_id in template.resources():
        resources.names[resource_id] = f"agentplane-{resource_id.lower()}"
        resources.arns[resource_id] = f"arn:aws:local:{aws.REGION}:{aws.ACCOUNT}:{resource_id}"
    resources.names["SigningSecret"] = "bench-signing-secret-0123456789abcdef"
    variables = dict(template.global_environment())
    if logical_id:
        variables.update(template.function_environment(logical_id))
    environment = {name: aws.resolve(value, resources) for name, value in variables.items()}
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_REGION": aws.REGION,
        "AWS_DEFAULT_REGION": aws.REGION,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        **environment,
    }


@dataclass(frozen=True)
class Probe:
    module: str
    code: str
    environment: dict[str, str]

    def seconds(self, pycache: str, *, compiled: bool = False) -> float:
        """One fresh interpreter importing the module: with `compiled`, reading the bytecode kept in
        `pycache` (written there when missing); otherwise with no bytecode read or written."""
        probe = PROBE.format(code=self.code, layer=str(LAYER_PATH), module=self.module)
        no_writes = [] if compiled else ["-B"]
        command = [sys.executable, "-I", *no_writes, "-X", f"pycache_prefix={pycache}", "-c", probe]
        result = subprocess.run(command, env=self.environment, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"importing {self.module} from {self.code} failed:\n{result.stderr[-2000:]}")
        return float(result.stdout.strip().splitlines()[-1])


def median_seconds(probes: list[Probe], runs: int = RUNS, *, compiled: bool = False) -> list[float]:
    """The median import time of each probe, its runs interleaved with the others' (round-robin);
    with `compiled`, from bytecode compiled beforehand (the unmeasured first run writes it)."""
    samples: list[list[float]] = [[] for _ in probes]
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as pycache:
        for probe in probes:
            probe.seconds(pycache, compiled=compiled)  # warms the disk cache (and compiles); not measured
        for _ in range(runs):
            for probe, taken in zip(probes, samples, strict=True):
                taken.append(probe.seconds(pycache, compiled=compiled))
    return [statistics.median(taken) for taken in samples]


FLOOR = "libraries_only"  # bench/libraries_only.py: the libraries alone, no agentplane code


@dataclass(frozen=True)
class Baseline:
    seconds: float  # import boto3 from source
    compiled_seconds: float  # import boto3 from bytecode


def measure(runs: int = RUNS) -> tuple[Baseline, list[ColdStart], list[str]]:
    """(boto3, one figure per function with code, names of functions without code); the first
    figure is the floor (the libraries every HTTP function imports, nothing of ours)."""
    probes = [
        Probe(BOTO3, str(template.ROOT), function_environment(None)),
        Probe(FLOOR, str(Path(__file__).parent), function_environment(None)),
    ]
    names, missing = [FLOOR], []
    for logical_id, function in template.functions().items():
        module = function.handler.rsplit(".", 1)[0]
        if not (function.code_uri / f"{module}.py").is_file():
            missing.append(logical_id)
            continue
        names.append(logical_id)
        probes.append(Probe(module, str(function.code_uri), function_environment(logical_id)))
    baseline, *seconds = median_seconds(probes, runs)
    compiled_baseline, *compiled = median_seconds(probes, runs, compiled=True)
    figures = [
        ColdStart(name, source, source / baseline, built, built / compiled_baseline)
        for name, source, built in zip(names, seconds, compiled, strict=True)
    ]
    return Baseline(baseline, compiled_baseline), figures, missing


def report(runs: int = RUNS) -> bool:
    baseline, (floor, *figures), missing = measure(runs)
    print(f"Cold import of each handler module (median of {runs} fresh interpreters)")
    print(
        f"  baseline: import boto3 = {baseline.seconds:.3f} s from source, {baseline.compiled_seconds:.3f} s "
        f"from bytecode; target <= {TARGET_RATIO}x from source"
    )
    print(
        "  floor: pynamodb + Powertools resolver (validation), Logger, Metrics, no agentplane code = "
        f"{floor.seconds:.3f} s = {floor.ratio:.2f}x from source, {floor.compiled_seconds:.3f} s from bytecode\n"
    )
    print(f"  {'function':<24}{'source s':>10}{'x boto3':>9}  {'target':<8}{'bytecode s':>11}{'x boto3':>9}")
    for figure in figures:
        verdict = "ok" if figure.meets_target else "OVER"
        print(
            f"  {figure.name:<24}{figure.seconds:>10.3f}{figure.ratio:>9.2f}  {verdict:<8}"
            f"{figure.compiled_seconds:>11.3f}{figure.compiled_ratio:>9.2f}"
        )
    for name in missing:
        print(f"  {name:<24}{'-':>10}{'-':>9}  skipped (no code yet)")
    deployed = max(figure.compiled_seconds for figure in figures)
    print(f"\n  slowest function as deployed (bytecode in the layer): {deployed:.3f} s\n")
    return all(figure.meets_target for figure in figures)

"""The TensorRT and cuda-python API that hpsedge.runtime.trt uses, checked against the real Python bindings.

No TensorRT can be installed on these machines (NVIDIA's libraries come from NVIDIA's own index or
JetPack), but the Python bindings are small standalone wheels on PyPI (``tensorrt-cu12-bindings``,
~1.2 MB). Their ``tensorrt.so`` needs only ten C symbols from ``libnvinfer`` / ``libnvonnxparser`` /
``libnvinfer_plugin`` (the ``create*_INTERNAL`` factories, the plugin registries,
``initLibNvInferPlugins``, ``getNvOnnxParserVersion``). This test downloads the 10.13 (JetPack 6 era) and
11.4 wheels with pip, compiles stub libraries exporting those symbols (each factory returns NULL) with
gcc, imports the real bindings in a subprocess with ``LD_LIBRARY_PATH`` on the stubs, and checks every
entry of :mod:`hpsedge.runtime.trt.api` (classes, method signatures, properties, enum members and values)
plus the glue that touches the module (see ``tests/trt_contract_probe.py``). The cuda-python names are
checked against the real ``cuda-bindings`` 12.9 and 13.0 wheels, which import without a driver, and against
cuda-python 12.6.2, whose calls raise ``RuntimeError`` without a driver (hpsedge must still give one error).

Downloads are cached in ``tmp/cache/trt-contract`` (or ``$HPSEDGE_TEST_CACHE``). The test skips, saying
why, only where a wheel cannot be fetched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hpsedge.runtime.trt import api

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("HPSEDGE_TEST_CACHE") or ROOT / "tmp" / "cache") / "trt-contract"
PROBE = Path(__file__).with_name("trt_contract_probe.py")
PY_TAG = f"cp{sys.version_info.major}{sys.version_info.minor}"

#: the C symbols tensorrt.so (10.13 and 11.4) imports from each TensorRT library (`nm -D --undefined-only`),
#: as stub C definitions: every factory returns NULL, so the bindings' constructors see "no TensorRT here"
STUB_SOURCES = {
    "libnvinfer": """
        void *createInferBuilder_INTERNAL(void *logger, int version) { return 0; }
        void *createInferRuntime_INTERNAL(void *logger, int version) { return 0; }
        void *createInferRefitter_INTERNAL(void *engine, void *logger, int version) { return 0; }
        void *getPluginRegistry(void) { return 0; }
        void *getBuilderPluginRegistry(int capability) { return 0; }
    """,
    "libnvonnxparser": """
        void *createNvOnnxParser_INTERNAL(void *network, void *logger, int version) { return 0; }
        void *createNvOnnxParserRefitter_INTERNAL(void *refitter, void *logger, int version) { return 0; }
        int getNvOnnxParserVersion(void) { return 0; }
    """,
    "libnvinfer_plugin": """
        int initLibNvInferPlugins(void *logger, const char *ns) { return 1; }
    """,
}


def _pip_download(requirement: str, pattern: str) -> Path:
    """The cached wheel matching ``pattern``, else ``pip download --no-deps`` it; skip if it cannot be fetched."""
    wheels = CACHE / "wheels"
    found = sorted(wheels.glob(pattern))
    if found:
        return found[0]
    wheels.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "--disable-pip-version-check", "-q", requirement, "-d", str(wheels)],
                       capture_output=True, text=True, timeout=600)
    found = sorted(wheels.glob(pattern))
    if r.returncode != 0 or not found:
        reason = (r.stderr.strip().splitlines() or ["no wheel for this Python"])[-1]
        pytest.skip(f"cannot fetch {requirement} for {PY_TAG} with pip ({reason})")
    return found[0]


def _unpack(wheel: Path) -> Path:
    site = CACHE / "site" / wheel.stem
    marker = site / ".unpacked"
    if not marker.exists():
        with zipfile.ZipFile(wheel) as z:
            z.extractall(site)
        marker.touch()
    return site


def _needed(so: Path) -> list[str]:
    """The DT_NEEDED sonames of ``so`` (readelf, from binutils beside gcc)."""
    out = subprocess.run(["readelf", "-d", str(so)], capture_output=True, text=True, check=True).stdout
    return [line.split("[", 1)[1].split("]", 1)[0] for line in out.splitlines() if "(NEEDED)" in line]


def _build_stubs(so: Path, dest: Path) -> Path:
    """Compile the stub libraries under the sonames ``so`` asks for (e.g. libnvinfer.so.10)."""
    if shutil.which("gcc") is None or shutil.which("readelf") is None:
        pytest.fail("gcc and readelf are needed to build the stub TensorRT libraries (apt-get install gcc binutils)")
    dest.mkdir(parents=True, exist_ok=True)
    sonames = {name.split(".so")[0]: name for name in _needed(so)}
    missing = sorted(set(STUB_SOURCES) - set(sonames))
    assert not missing, f"{so.name} no longer links {missing}; update STUB_SOURCES"
    for lib, source in STUB_SOURCES.items():
        soname = sonames[lib]
        if (dest / soname).exists():
            continue
        src = dest / f"{lib}.c"
        src.write_text(source)
        subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(dest / soname), f"-Wl,-soname,{soname}", str(src)],
                       check=True, capture_output=True)
    return dest


def _probe(kind: str, pythonpath: list[Path], env_extra: dict[str, str]) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, pythonpath), str(ROOT / "src")])
    env.update(env_extra)
    r = subprocess.run([sys.executable, str(PROBE), kind], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, f"probe failed:\n{r.stdout}\n{r.stderr}"
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module", params=api.CONTRACT_TRT_VERSIONS)
def trt_bindings(request: pytest.FixtureRequest) -> tuple[str, Path, Path]:
    version = request.param
    wheel = _pip_download(f"tensorrt-cu12-bindings=={version}", f"tensorrt_cu12_bindings-{version}-{PY_TAG}-*.whl")
    site = _unpack(wheel)
    so = site / "tensorrt_bindings" / "tensorrt.so"
    assert so.is_file(), f"{wheel.name} has no tensorrt_bindings/tensorrt.so"
    return version, site, _build_stubs(so, CACHE / "stubs" / version)


def test_trt_bindings_match_api(trt_bindings: tuple[str, Path, Path]) -> None:
    version, site, stubs = trt_bindings
    res = _probe("trt", [site], {"LD_LIBRARY_PATH": os.pathsep.join(
        [str(stubs), *filter(None, [os.environ.get("LD_LIBRARY_PATH")])])})
    assert res["version"] == version
    assert res["problems"] == [], "\n".join(res["problems"])
    # everything in api.py was looked at, plus the live glue checks
    n_api = len(api.TRT_MODULE_ATTRS) + len(api.TRT_CALLS) + sum(map(len, api.TRT_ENUMS[int(version.split('.')[0])].values()))
    assert res["checked"] > n_api
    # the fact behind defect 1: the constructors raise TypeError, they never return None
    raised = res["raised"]
    assert api.TRT_NULL_FACTORY_ERROR in raised["a builder"] and api.TRT_NULL_FACTORY_ERROR in raised["a runtime"]
    # ... and hpsedge turns that into one error line (build_engine: ExportError, the backend: BackendError)
    assert raised["build_engine"].startswith("TensorRT could not create a builder")
    assert raised["TensorRTBackend"].startswith("TensorRT could not create a runtime")


@pytest.fixture(scope="module", params=[*(("cuda-bindings", v) for v in api.CONTRACT_CUDA_BINDINGS),
                                        ("cuda-python", api.CONTRACT_CUDA_PYTHON_RAISING)])
def cuda_bindings(request: pytest.FixtureRequest) -> tuple[str, str, Path]:
    package, version = request.param
    wheel = _pip_download(f"{package}=={version}", f"{package.replace('-', '_')}-{version}-{PY_TAG}-*.whl")
    return package, version, _unpack(wheel)


def test_cuda_bindings_match_api(cuda_bindings: tuple[str, str, Path]) -> None:
    package, version, site = cuda_bindings
    res = _probe("cuda", [site], {})
    assert res["problems"] == [], "\n".join(res["problems"])
    assert res["checked"] == (len(api.CUDA_CALLS) + sum(map(len, api.CUDA_ENUMS.values()))
                              + len(api.CUDA_DEVICE_PROP_FIELDS) + 3)
    major = int(version.split(".")[0])
    assert res["runtime"] // 1000 == major  # cuda-bindings N.x is built for CUDA N
    if not res["driver"]:  # no NVIDIA driver on this machine (CI): one error, and the hint names the fix
        assert res["error"].startswith("CUDA call cudaGetDeviceCount failed")
        if package == "cuda-python":  # 12.6.2 raises RuntimeError from the call itself ("Failed to dlopen
            # libcuda.so.1" the first time, 'Function "cuInit" not found' after that)
            assert "(cuda-python: " in res["error"] and "cudaError" not in res["error"]
        else:  # 12.9 and 13.x return the error code
            assert "cudaErrorInsufficientDriver" in res["error"]
        assert "no NVIDIA driver" in res["hint"]

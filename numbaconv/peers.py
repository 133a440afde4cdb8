"""The peer libraries that ``numbaconv bench`` times beside numbaconv: PyTorch, ONNX Runtime and
OpenVINO, each in NCHW and in NHWC (channels-last) data, each given the same threads.

Each peer runs in a process of its own (`PeerProcess`): ONNX Runtime's workers spin for ~0.1 s after
a session is built or run, and in one process they halved numbaconv's speed on 2 cores, and torch,
ORT and OpenVINO each bring a thread pool.  Alone in its process, every contender has the cores to
itself while it is timed, as in a user's program that runs one of them.

Every peer is optional (``pip install -e '.[peers]'`` installs ONNX Runtime and OpenVINO; torch is
installed on its own).  `calls` builds, for one convolution, a no-argument call per (peer, layout)
that is installed and able to run it; each call returns the peer's output in its own layout.  A peer
that is missing, cannot express the problem (float64, a padding mode other than zeros) or fails to
build is left out with a one-line note saying why, never an exception: the bench goes on without it.

How each is set up, so that it runs at its best:

- **torch**: ``torch.nn.functional.conv2d`` under ``no_grad``; NHWC is ``channels_last`` memory format
  (the weight follows the input), ``torch.set_num_threads`` = our threads.
- **ONNX Runtime**: a one-node ``Conv`` model (weight and bias as initializers); NHWC wraps it in two
  ``Transpose`` nodes, which ORT's layout optimizer folds into its channels-last kernels.  The graph
  optimization level matters 5-10x on some layers, so both ``ORT_ENABLE_ALL`` and
  ``ORT_ENABLE_EXTENDED`` sessions are built and `time_calls` keeps the faster; input and
  output are bound once (``IOBinding``), so a call is the session's run alone.
  ``intra_op_num_threads`` = our threads.
- **OpenVINO**: ``Convolution`` / ``GroupConvolution`` + ``Add`` (bias) compiled for the CPU plugin with
  ``INFERENCE_PRECISION_HINT=f32`` (it would otherwise run bf16 on AVX-512 CPUs), ``PERFORMANCE_HINT=
  LATENCY``, ``INFERENCE_NUM_THREADS`` = our threads; NHWC as for ORT, two ``Transpose`` nodes around
  it.  The input tensor shares the NumPy array's memory.  Building a graph with the opset API does not
  load OpenVINO's telemetry (only its model converters do).
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from multiprocessing.connection import Connection

import numpy as np

from . import runtime, timing
from .spec import ConvSpec

NAMES = ("torch", "onnxruntime", "openvino")
LAYOUTS = ("NCHW", "NHWC")


def available() -> dict:
    """peer -> its version, for the peers installed here.  Nothing is imported: a peer's libraries
    and thread pools are loaded only in its own process."""
    from importlib import metadata, util

    found = {}
    for name in NAMES:
        needed = ("onnx", "onnxruntime") if name == "onnxruntime" else (name,)
        if all(util.find_spec(module) is not None for module in needed):
            try:
                found[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                found[name] = "?"
    return found


def _module(name: str):
    try:
        if name == "torch":
            import torch as module
        elif name == "onnxruntime":
            import onnx  # noqa: F401  (ORT runs the model, onnx builds it)
            import onnxruntime as module
        else:
            import openvino as module
    except ImportError:
        return None
    return module


def _spec(x, weight, kwargs: dict) -> ConvSpec:
    """The problem's geometry as numbaconv validates it: stride, dilation and padding as pairs (padding
    top, bottom, left, right) and the output size, for the peers' graphs."""
    return ConvSpec.from_shapes(x.shape, weight.shape, None, kwargs.get("stride", 1), kwargs.get("padding", 0),
                                kwargs.get("dilation", 1), kwargs.get("groups", 1), dtype=x.dtype)


def calls(x, weight, bias, kwargs: dict, threads: int, peers=NAMES) -> tuple[dict, dict]:
    """``({'<peer>_<layout>': call}, {'<peer>': note})`` for one NCHW problem ``x``, ``weight``,
    ``bias`` (NumPy, float32) with conv2d's ``kwargs`` (stride, padding as int/pair, dilation, groups).
    ``call()`` returns the peer's output: NCHW for ``*_nchw`` and NHWC for ``*_nhwc`` (its input is
    the same data channels-last).  ORT gives two calls per layout, ``onnxruntime_<layout>_all`` and
    ``_extended`` (one per graph optimization level)."""
    found, notes = {}, {}
    unsupported = _unsupported(x, kwargs)
    for name in peers:
        if name not in NAMES:
            raise ValueError(f"peers: unknown peer {name!r}; known: {NAMES}")
        module = _module(name)
        if module is None:
            notes[name] = "not installed" + (" (pip install -e '.[peers]')" if name != "torch" else "")
            continue
        if unsupported and name != "torch":
            notes[name] = unsupported
            continue
        try:
            found.update(_BUILDERS[name](module, x, weight, bias, kwargs, threads))
        except Exception as error:  # a peer that cannot build this layer is a note, not a failed run
            notes[name] = f"could not build the layer: {type(error).__name__}: {str(error).splitlines()[0][:160]}"
    return found, notes


def _unsupported(x, kwargs) -> str | None:
    if x.dtype != np.float32:
        return f"float32 only here (got {x.dtype})"
    if kwargs.get("padding_mode", "zeros") != "zeros" or isinstance(kwargs.get("padding", 0), str):
        return "explicit zero padding only"
    return None


def _torch(torch, x, weight, bias, kwargs, threads):
    torch.set_num_threads(threads)
    tx, tw, tb = torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(bias)
    found = {}
    for layout in LAYOUTS:
        if layout == "NHWC":
            tx, tw = (t.contiguous(memory_format=torch.channels_last) for t in (tx, tw))

        def call(tx=tx, tw=tw, layout=layout):
            with torch.no_grad():
                y = torch.nn.functional.conv2d(tx, tw, tb, **kwargs)
            return y.numpy() if layout == "NCHW" else y.permute(0, 2, 3, 1).numpy()

        found[f"torch_{layout.lower()}"] = call
    return found


def _onnxruntime(ort, x, weight, bias, kwargs, threads):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    spec = _spec(x, weight, kwargs)
    top, bottom, left, right = spec.padding
    n, c, h, w = x.shape
    co, oh, ow = spec.out_channels, spec.out_height, spec.out_width
    found = {}
    for layout in LAYOUTS:
        conv = helper.make_node("Conv", ["xc", "W", "B"], ["yc"], strides=list(spec.stride),
                                dilations=list(spec.dilation), pads=[top, left, bottom, right], group=spec.groups,
                                kernel_shape=[spec.kernel_height, spec.kernel_width])
        if layout == "NCHW":
            nodes, x_shape, y_shape = [conv], [n, c, h, w], [n, co, oh, ow]
            conv.input[0], conv.output[0] = "X", "Y"
            data = x
        else:
            nodes = [helper.make_node("Transpose", ["X"], ["xc"], perm=[0, 3, 1, 2]), conv,
                     helper.make_node("Transpose", ["yc"], ["Y"], perm=[0, 2, 3, 1])]
            x_shape, y_shape = [n, h, w, c], [n, oh, ow, co]
            data = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape)],
                                  [helper.make_tensor_value_info("Y", TensorProto.FLOAT, y_shape)],
                                  [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = min(model.ir_version, 9)  # readable by older runtimes too
        onnx.checker.check_model(model)
        payload = model.SerializeToString()
        for level_name in ("all", "extended"):
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if level_name == "all"
                                                else ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)
            options.log_severity_level = 3
            session = ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
            out = np.empty(y_shape, np.float32)
            binding = session.io_binding()
            binding.bind_cpu_input("X", data)
            binding.bind_output("Y", "cpu", 0, np.float32, y_shape, out.ctypes.data)

            def call(session=session, binding=binding, out=out, data=data):
                session.run_with_iobinding(binding)
                return out

            found[f"onnxruntime_{layout.lower()}_{level_name}"] = call
    return found


def _openvino(ov, x, weight, bias, kwargs, threads):
    from openvino import opset13 as ops

    spec = _spec(x, weight, kwargs)
    groups = spec.groups
    top, bottom, left, right = spec.padding
    core = ov.Core()
    found = {}
    for layout in LAYOUTS:
        data = x if layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        parameter = ops.parameter(list(data.shape), np.float32, name="X")
        value = parameter if layout == "NCHW" else ops.transpose(parameter, ops.constant(np.array([0, 3, 1, 2])))
        conv_args = (list(spec.stride), [top, left], [bottom, right], list(spec.dilation))
        if groups == 1:
            y = ops.convolution(value, ops.constant(weight), *conv_args)
        else:
            grouped = weight.reshape(groups, weight.shape[0] // groups, *weight.shape[1:])
            y = ops.group_convolution(value, ops.constant(grouped), *conv_args)
        y = ops.add(y, ops.constant(bias.reshape(1, -1, 1, 1)))
        if layout == "NHWC":
            y = ops.transpose(y, ops.constant(np.array([0, 2, 3, 1])))
        model = ov.Model([y], [parameter], "conv")
        compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                     "INFERENCE_PRECISION_HINT": "f32",
                                                     "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        request.set_input_tensor(ov.Tensor(data, shared_memory=True))

        def call(request=request, data=data):
            request.infer()
            return request.get_output_tensor().data

        found[f"openvino_{layout.lower()}"] = call
    return found


_BUILDERS = {"torch": _torch, "onnxruntime": _onnxruntime, "openvino": _openvino}


def verify(output, expected) -> float:
    """The largest error relative to the largest magnitude of the float64 reference."""
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    error = float(np.abs(np.asarray(output, np.float64) - expected).max()) if expected.size else 0.0
    return error / scale if scale > 0 else error


def tolerance(dtype) -> float:
    """What a correct float32 (float64) convolution stays within, relative to the output's largest
    magnitude: far above any summation order's error, far below bf16's (~4e-3)."""
    return 1e-4 if np.dtype(dtype) == np.float32 else 1e-10


def time_calls(found: dict, expected, dtype, repeat: int, gap_rounds: int, gap_s: float) -> dict:
    """Verify then time each call of `calls` (``expected``: the float64 NCHW reference; ``dtype``:
    the problem's, which sets the `tolerance`).  Returns
    ``{'<peer>_<layout>': {'median_s', 'p99_s', 'gap_median_s', 'gap_p99_s', 'error', 'setting'}}``;
    ORT's two optimization levels are timed back to back and the faster is kept (its level in
    ``setting``).  A call whose output is wrong is not timed: its entry has ``median_s`` None and the
    error."""
    results = {}
    limit = tolerance(dtype)
    for name, call in found.items():
        peer, layout, *setting = name.split("_")
        output = np.asarray(call())
        if layout == "nhwc":
            output = output.transpose(0, 3, 1, 2)
        error = verify(output, expected)
        key = f"{peer}_{layout}"
        entry = {"error": error, "setting": setting[0] if setting else None, "median_s": None, "p99_s": None,
                 "gap_median_s": None, "gap_p99_s": None, "dispersion": None}
        if error <= limit:  # NaN fails too
            measured = timing.measure(call, repeat)
            entry.update(median_s=measured.median_s, p99_s=measured.p99_s, dispersion=measured.dispersion)
        best = results.get(key)
        if best is None or (entry["median_s"] is not None and (best["median_s"] is None
                                                               or entry["median_s"] < best["median_s"])):
            entry["call"] = call
            results[key] = entry
    for entry in results.values():
        call = entry.pop("call")
        if entry["median_s"] is not None and gap_rounds:
            entry["gap_median_s"], entry["gap_p99_s"] = timing.summary(timing.after_gap(call, gap_rounds, gap_s))
    return results


def _serve(requests, replies, name: str, threads: int, cpus=None) -> None:
    """A peer's process: load the library, say so, then answer timing requests until told to stop
    (None) or the parent goes."""
    for key in runtime.ENVIRONMENT_SET:  # importing numbaconv here set them; the peer runs as the user set it up
        os.environ.pop(key, None)
    if cpus and hasattr(os, "sched_setaffinity"):  # every CPU the bench had before its pool bound the caller
        try:
            os.sched_setaffinity(0, cpus)
        except OSError:
            pass
    module = _module(name)  # (the torch builder sets its threads per layer)
    replies.send(module is not None)
    while True:
        try:
            request = requests.recv()
        except EOFError:
            return
        if request is None:
            return
        x, weight, bias, kwargs, expected, repeat, gap_rounds, gap_s = request
        found, notes = calls(x, weight, bias, kwargs, threads, peers=[name])
        try:
            results = time_calls(found, expected, x.dtype, repeat, gap_rounds, gap_s)
        except Exception as error:  # a peer failing mid-run is a note, never the bench's end
            results, notes = {}, {name: f"failed: {type(error).__name__}: {str(error).splitlines()[0][:160]}"}
        del found
        gc.collect()  # drop the sessions and their thread pools before the next contender runs
        replies.send((results, notes.get(name)))


def peer_environment() -> dict:
    """The environment a peer runs in (its process also gets every CPU the bench started with, not the
    one core latency mode binds the caller to): the user's, without what numbaconv set for its own pools
    (`runtime.ENVIRONMENT_SET`: a short GOMP_SPINCOUNT would slow torch's OpenMP pool) and without
    numbaconv's latency mode."""
    return {key: value for key, value in os.environ.items()
            if key not in runtime.ENVIRONMENT_SET and key != "NUMBACONV_LATENCY"}


class PeerProcess:
    """One peer library in a process of its own: a fresh interpreter (``python -m numbaconv.peers``,
    so that nothing of ours is inherited and the caller's script is not re-run), spoken to over two
    pipes of its own (so that a library printing to stdout cannot break the exchange)."""

    def __init__(self, name: str, threads: int):
        if name not in NAMES:
            raise ValueError(f"peers: unknown peer {name!r}; known: {NAMES}")
        self.name = name
        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "numbaconv.peers", name, str(threads), str(to_child), str(from_child),
             ",".join(map(str, runtime.INITIAL_AFFINITY or ()))],
            pass_fds=(to_child, from_child), stdin=subprocess.DEVNULL, env=peer_environment())
        os.close(to_child)
        os.close(from_child)
        self._send = Connection(from_parent, readable=False)
        self._receive = Connection(to_parent, writable=False)
        self._ready = None

    def ready(self) -> bool:
        """Wait until the peer's library is loaded (so that its start-up does not share the cores with
        a timed call); False when it could not be."""
        if self._ready is None:
            try:
                self._ready = bool(self._receive.recv())
            except (EOFError, OSError):
                self._ready = False
        return self._ready

    def time(self, x, weight, bias, kwargs: dict, expected, repeat: int, gap_rounds: int = 0,
             gap_s: float = timing.GAP_S) -> tuple[dict, str | None]:
        """`time_calls`'s results for this peer on one problem, and a note (why it is missing)."""
        if not self.ready():
            return {}, f"its process could not load {self.name} (exit code {self._process.poll()})"
        try:
            self._send.send((x, weight, bias, kwargs, expected, repeat, gap_rounds, gap_s))
            return self._receive.recv()
        except (EOFError, OSError):
            return {}, f"its process ended (exit code {self._process.poll()})"

    def close(self) -> None:
        try:
            self._send.send(None)
        except OSError:
            pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._send.close()
        self._receive.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


if __name__ == "__main__":
    _name, _threads, _in, _out, _cpus = sys.argv[1:6]
    _serve(Connection(int(_in), writable=False), Connection(int(_out), readable=False), _name, int(_threads),
           [int(cpu) for cpu in _cpus.split(",") if cpu])

# Sourced by run_gpu.sh and gpu_session.sh: the repository on PYTHONPATH, unbuffered output, and
# a NumPy alias numba-cuda needs. numba-cuda 0.30.4 registers np.row_stack when it first compiles
# a kernel; NumPy 2.5 removed it (seen on this workplace's CUDA image, 2026-11-26: every CUDA test
# failed). For such a NumPy, a sitecustomize.py in a temporary folder gives this run's Python
# processes the alias np.row_stack = np.vstack, and a line says so.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ! python3 -c "import numpy; numpy.row_stack" 2>/dev/null; then
    numpy_shim=$(mktemp -d)
    printf 'import numpy\nif not hasattr(numpy, "row_stack"):\n    numpy.row_stack = numpy.vstack\n' \
        > "$numpy_shim/sitecustomize.py"
    export PYTHONPATH="$PYTHONPATH:$numpy_shim"
    echo "NumPy $(python3 -c 'import numpy; print(numpy.__version__)') has no row_stack: aliased to vstack"
fi

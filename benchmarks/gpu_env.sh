# Sourced by run_gpu.sh, gpu_session.sh and gpu_check.sh: the repository on PYTHONPATH, unbuffered
# output, `step` (a command under a time limit, logged to $log), and a NumPy alias numba-cuda needs. numba-cuda 0.30.4 registers np.row_stack when it first compiles
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
# step LIMIT NAME command...: run under a time limit, its output appended to $log, one line of status
step() {
    local limit=$1 name=$2 start=$SECONDS
    shift 2
    echo "=== $name (limit ${limit}s)" >> "$log"
    timeout "$limit" "$@" >> "$log" 2>&1
    local rc=$?
    echo "=== $name: rc=$rc in $((SECONDS - start))s" | tee -a "$log"
}

"""Packed weights kept with the weight array they came from, for weights that cannot change.

The packed GEMM (`gemm.matmul`) reads the weights as panels laid out for its register tile; packing them
reads and writes every weight, which for a 2 MiB layer costs as much as a fifth of the product on a
2-core machine (a memory-bound copy).  Inference engines pack once, when the model is compiled; numbaconv
has no compile step, so it packs once per *frozen* weight array: one whose values cannot change while it
lives -- it and every array it views are read-only (``weight.setflags(write=False)``), ending in an array
that owns its memory (or in ``bytes``).  Any other weight is packed on every call, exactly as before.

Entries are keyed by the weight array (its ``id``) and the packing, hold only a weak reference to the
array (the entry goes when the array does, so an ``id`` is never reused while its entry lives), and are
evicted least recently used beyond PACKED_WEIGHTS_BYTES.
A frozen array made writeable again (``setflags(write=True)`` on an array owning its memory) and changed
breaks the promise: pass a copy instead.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict

import numpy as np

from ..config import PACKED_WEIGHTS_BYTES

_lock = threading.Lock()
_entries: OrderedDict = OrderedDict()  # key -> (weak reference to the weight, packed array)
_held = [0]  # bytes of packed arrays held


def frozen(array) -> bool:
    """Whether ``array``'s values cannot change while it lives: it and every array it views are read-only,
    down to an array owning its memory or to ``bytes``."""
    node = array
    while isinstance(node, np.ndarray):
        if node.flags.writeable:
            return False
        if node.base is None:
            return node.flags.owndata
        node = node.base
    return isinstance(node, bytes)


def packed(weight: np.ndarray, packing, pack):
    """``pack()`` (the packed form of ``weight`` for the packing named by the hashable ``packing``) where
    ``weight`` is `frozen`: from the cache, or computed now and kept.  None for any other weight (the
    caller packs as it always does)."""
    key = (id(weight), packing)  # unique while the array lives, and its entry goes with it
    entry = _entries.get(key)
    if entry is not None and entry[0]() is weight and not weight.flags.writeable:
        with _lock:
            if key in _entries:
                _entries.move_to_end(key)
        return entry[1]
    if not frozen(weight):
        return None
    result = pack()
    if result.nbytes > PACKED_WEIGHTS_BYTES:
        return result
    result.setflags(write=False)
    with _lock:
        _drop(key)
        _entries[key] = (weakref.ref(weight, lambda reference, key=key: _forget(key, reference)), result)
        _held[0] += result.nbytes
        while _held[0] > PACKED_WEIGHTS_BYTES:
            _drop(next(iter(_entries)))
    return result


def _drop(key) -> None:
    entry = _entries.pop(key, None)
    if entry is not None:
        _held[0] -= entry[1].nbytes


def _forget(key, reference) -> None:
    """The weight behind ``reference`` is gone: drop its entry (not a newer one under the same key)."""
    with _lock:
        entry = _entries.get(key)
        if entry is not None and entry[0] is reference:
            _drop(key)


def clear() -> None:
    """Empty the cache."""
    with _lock:
        _entries.clear()
        _held[0] = 0


def held_bytes() -> int:
    """Bytes of packed weights the cache holds."""
    return _held[0]

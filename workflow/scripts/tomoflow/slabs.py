"""Splitting the slice axis into independent slabs (scatter/gather), and the memory of a slab job.

Light on imports (NumPy only inside functions) so that rule files can size ``resources: mem_mb`` with
:func:`slab_job_mem_mb` at DAG time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy.typing as npt

#: Non-zeros per unit ray length and pixel crossed, relative to the ``line`` projector (see
#: :func:`matrix_nnz_estimate`); projectors absent here (``distance_driven``, ``cuda``) have no matrix.
NNZ_FACTOR = {"line": 1.0, "linear": 1.35, "strip": 2.45}


def slab_ranges(n: int, n_slabs: int) -> list[tuple[int, int]]:
    """Contiguous, near-equal ``[start, stop)`` ranges covering ``range(n)``.

    Parameters
    ----------
    n : int
        Number of slices (axis 0 of a volume / axis 1 of a tilt series).
    n_slabs : int
        Requested number of slabs; more slabs than slices gives empty trailing ranges so that
        the number of Snakemake jobs never depends on the data.

    Returns
    -------
    list of (int, int)
        ``n_slabs`` ranges; the first ``n % n_slabs`` are one slice longer.

    Examples
    --------
    >>> slab_ranges(10, 3)
    [(0, 4), (4, 7), (7, 10)]
    """
    if n < 0 or n_slabs < 1:
        raise ValueError(f"need n >= 0 and n_slabs >= 1, got n={n}, n_slabs={n_slabs}")
    base, extra = divmod(n, n_slabs)
    out, start = [], 0
    for i in range(n_slabs):
        stop = start + base + (1 if i < extra else 0)
        out.append((start, stop))
        start = stop
    return out


def gather_slabs(
    parts: Sequence[str],
    read: Callable[[str], tuple[npt.ArrayLike, float | None]],
    shape_of: Callable[[str], Sequence[int]],
    *,
    dtype: npt.DTypeLike,
    n_slices: int | None = None,
    fix: str = "delete the slab outputs and re-run",
) -> tuple[npt.NDArray[Any], float | None]:
    """Concatenate slab files along axis 0 into one preallocated stack (the gather step).

    Used by both gathers (reconstruction slabs, prediction slabs): the stack is allocated once from
    the slabs' headers and each slab is copied in and released, so peak memory is the stack plus one
    slab, and the result is bit-identical to a single job's output (values are only copied, cast to
    ``dtype``).

    Parameters
    ----------
    parts : sequence of str
        Slab files in slice order.
    read : callable(path) -> (ndarray, voxel_size_nm or None)
        Reads one slab, shape (n_i, ...) (e.g. :func:`tomoflow.io.read_volume`).
    shape_of : callable(path) -> tuple of int
        Shape from the header only (e.g. :func:`tomoflow.io.volume_shape`).
    dtype : dtype
        Dtype of the gathered stack.
    n_slices : int, optional
        Expected total slices (e.g. of the volume the slabs were cut from); checked.
    fix : str
        The "Fix:" part of the error message for slabs that do not fit.

    Returns
    -------
    stack : ndarray, shape (Σ n_i, ...), ``dtype``
    voxel_size_nm : float or None
        The first slab's voxel size that is not None.

    Raises
    ------
    InputError
        Slabs of different slice shapes, a slab whose data disagree with its header, or a total
        that differs from ``n_slices``.
    """
    import numpy as np

    from .errors import InputError

    if not parts:
        raise InputError("slabs", "no slab files to gather", fix)
    shapes = [tuple(int(v) for v in shape_of(p)) for p in parts]
    tails = {s[1:] for s in shapes}
    if len(tails) != 1:
        raise InputError(parts[0], f"slabs have different slice shapes {sorted(tails)}", fix)
    total = sum(s[0] for s in shapes)
    if n_slices is not None and total != n_slices:
        raise InputError(parts[0], f"the slabs hold {total} slices but the volume has {n_slices}", fix)
    out = np.empty((total,) + shapes[0][1:], dtype=dtype)
    voxel, a = None, 0
    for path, shape in zip(parts, shapes):
        block, vs = read(path)
        block = np.asarray(block)
        if block.shape != shape:
            raise InputError(path, f"data of shape {block.shape} but header shape {shape}", fix)
        out[a:a + shape[0]] = block
        a += shape[0]
        voxel = vs if voxel is None else voxel
    return out, voxel


def matrix_nnz_estimate(n_z: int, n_x: int, angles_deg: Sequence[float] | npt.ArrayLike, n_det: int,
                        projector: str = "line") -> int:
    """Upper estimate of the non-zeros of one slice's ASTRA system matrix, without building it.

    A line through a pixel grid crosses ``|cos θ| + |sin θ|`` pixels per unit length (one more per
    ray for the entry pixel); rays one pixel apart sweep at most the slice's area, so angle ``θ``
    contributes at most ``n_z n_x (|cos θ| + |sin θ|) + n_det`` pairs for the ``line`` projector
    (about 8 % above ASTRA's count at 69 tilts over ±68°, where rays miss the slice's corners).
    ``linear`` and ``strip`` touch up to 1.31 and 2.39 times as many pixels as that bound
    (:data:`NNZ_FACTOR` adds ~3 %; measured against ASTRA's matrices from 48² to 128², 69 tilts).

    Parameters
    ----------
    n_z, n_x : int
        Slice rows (thickness) and columns, pixels.
    angles_deg : sequence of float, shape (n_tilts,)
    n_det : int
    projector : {'line', 'linear', 'strip'}

    Returns
    -------
    int
    """
    import numpy as np

    t = np.deg2rad(np.asarray(angles_deg, np.float64))
    per_angle = n_z * n_x * (np.abs(np.cos(t)) + np.abs(np.sin(t))) + n_det
    return math.ceil(NNZ_FACTOR.get(projector, 3.0) * float(per_angle.sum()))


def matrix_memory_mb(nnz: int, n_rows: int, n_cols: int) -> float:
    """Memory of ``A`` and ``Aᵀ`` as CSR (float32 weights, int32 indices): ``2 × nnz × 8`` bytes plus
    the row pointers, MB (10⁶ bytes).  Building them needs one more copy of ``A`` at the peak."""
    return (2 * nnz * 8 + 4 * (n_rows + 1) + 4 * (n_cols + 1)) / 1e6


def batched_memory_mb(n_tilts: int, n_slices: int, n_det: int, thickness: int, nnz: int) -> float:
    """Peak memory of a batched reconstruction of ``n_slices`` slices, MB: the matrix at its build peak
    (``A`` twice + ``Aᵀ``) plus float32 buffers (input stack, sinograms, forward projection, ratio;
    volume, back projection, output) of ``4 n_slices (4 n_tilts n_det + 3 thickness n_det)`` bytes."""
    m, p = n_tilts * n_det, thickness * n_det
    return 1.5 * matrix_memory_mb(nnz, m, p) + 4.0 * n_slices * (4 * m + 3 * p) / 1e6


def slab_job_mem_mb(shape: Sequence[int] | None, thickness_px: int | None, recon: Mapping[str, Any],
                    angles_deg: Sequence[float] | None = None) -> int:
    """``resources: mem_mb`` of one ``reconstruct_slab`` job (MB).

    Parameters
    ----------
    shape : (n_tilts, n_slices, n_det) or None
        Shape of the aligned stack (from its header); None before it exists (gives 1000).
    thickness_px : int or None
        The sample's thickness (None = ``n_det``).
    recon : mapping
        The ``recon`` config section (``slabs``, ``projector``, ``method``, ``algorithm``).
    angles_deg : sequence of float, optional
        Tilt angles; default 69 tilts over ±68° (the estimate barely depends on them).

    Returns
    -------
    int
        MB, at least 1000: the per-slice path's ``6 ×`` the float32 stack + 500 MB (stack rows, slab
        sinograms and volume, with headroom) plus, unless ``method`` is ``per_slice`` (or the
        algorithm/projector has no matrix), :func:`batched_memory_mb` for the largest slab with the
        matrix estimated by :func:`matrix_nnz_estimate`.
    """
    if shape is None:
        return 1000
    n_tilts, n_slices, n_det = (int(v) for v in shape)
    thick = int(thickness_px or n_det)
    mem = max(1000.0, 6 * 4.0 * n_tilts * n_slices * n_det / 1e6 + 500)
    if recon.get("method", "auto") != "per_slice" and recon.get("algorithm") != "fbp" and \
            recon.get("projector", "line") in NNZ_FACTOR:
        angles = list(angles_deg) if angles_deg is not None else [-68.0 + 136.0 * i / max(1, n_tilts - 1)
                                                                  for i in range(n_tilts)]
        nnz = matrix_nnz_estimate(thick, n_det, angles, n_det, recon.get("projector", "line"))
        mem += batched_memory_mb(n_tilts, -(-n_slices // max(1, int(recon.get("slabs", 1)))), n_det, thick, nnz)
    return math.ceil(mem)

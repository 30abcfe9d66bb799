"""Splitting the slice axis into independent slabs (scatter/gather)."""

from __future__ import annotations


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

"""Scatter/gather over slabs of slices: one slab's reconstruction, misfit tables, the whole volume's misfit."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InputError
from ..slabs import slab_ranges
from ..validate import check_signal, check_tilt_series
from .settings import ReconResult, ReconSettings

log = logging.getLogger("tomoflow.recon")

RowReader = Callable[[int, int], npt.ArrayLike]


def reconstruct_slab(
    read_rows: RowReader,
    n_slices: int,
    slab: int,
    n_slabs: int,
    angles_deg: npt.ArrayLike,
    settings: ReconSettings | None = None,
    **overrides: Any,
) -> tuple[tuple[int, int], ReconResult]:
    """Reconstruct one slab of slices (the scatter step).

    Parameters
    ----------
    read_rows : callable(start, stop) -> ndarray, shape (n_tilts, stop - start, n_det)
        Reads slices ``[start, stop)`` of the tilt series (rows along the tilt axis); supplied by
        the rule script (file I/O stays in :mod:`tomoflow.io`).
    n_slices : int
        Slices of the whole tilt series (axis 1).
    slab, n_slabs : int
        This slab's index and the number of slabs (:func:`tomoflow.slabs.slab_ranges`).
    angles_deg : array_like, shape (n_tilts,)
    settings : ReconSettings, optional
        Default: ``ReconSettings(signal_check=False)`` (a slab of vacuum is legitimate; check the
        whole stack with :func:`tomoflow.validate.check_signal`).
    **overrides
        :class:`ReconSettings` fields replacing those of ``settings``.

    Returns
    -------
    (start, stop), ReconResult
        The slice range and its reconstruction, shape (stop - start, thickness_px, n_det).  Empty
        slabs (more slabs than slices) give a volume with 0 slices.
    """
    from .dispatch import reconstruct

    s = replace(settings or ReconSettings(signal_check=False), **overrides)
    start, stop = slab_ranges(int(n_slices), int(n_slabs))[int(slab)]
    log.info("slab %d/%d: slices [%d, %d)", slab, n_slabs, start, stop)
    if stop <= start:
        probe = np.asarray(read_rows(0, min(1, n_slices)))
        n_det = probe.shape[2]
        check_tilt_series(probe, angles_deg, where=s.where, min_tilts=s.min_tilts, max_abs_deg=None)
        n_it = 0 if s.algorithm == "fbp" else int(s.iterations)
        return (start, stop), ReconResult(np.zeros((0, int(s.thickness_px or n_det), n_det), np.float32),
                                          np.zeros(0), np.zeros(n_it + 1 if n_it else 0), 0.0, {"empty": True})
    return (start, stop), reconstruct(read_rows(start, stop), angles_deg, s)


def reconstruct_slab_job(read_rows: RowReader, shape: Sequence[int], angles_deg: npt.ArrayLike, slab: int,
                         n_slabs: int, settings: ReconSettings) -> tuple[tuple[int, int], ReconResult, Any]:
    """One ``reconstruct_slab`` rule job: checks of the whole stack, the slab, its misfit table.

    Parameters
    ----------
    read_rows : callable(start, stop) -> ndarray, shape (n_tilts, stop - start, n_det)
    shape : (n_tilts, n_slices, n_det)
        Shape of the whole tilt series (from its header).
    angles_deg : array_like, shape (n_tilts,)
    slab, n_slabs : int
    settings : ReconSettings
        ``where`` names the stack in messages; ``signal_check`` is applied to a central band of 32
        rows of the whole stack (a slab of vacuum is legitimate), never to the slab itself.

    Returns
    -------
    (start, stop), ReconResult, pandas.DataFrame
        Slice range, reconstruction and :func:`misfit_table`.
    """
    n_tilts, n_slices, n_det = (int(v) for v in shape)
    angles = np.asarray(angles_deg, np.float64)
    if angles.size != n_tilts:
        raise InputError(settings.where, f"{angles.size} tilt angles for the {n_tilts} images of {settings.where}",
                         "re-run the alignment so that the .tlt and the stack match")
    if n_slabs > n_slices:
        raise InputError("config recon.slabs", f"{n_slabs} slabs for {n_slices} slices leaves slab(s) empty",
                         f"set recon.slabs <= {n_slices}")
    if settings.signal_check:
        mid = n_slices // 2
        band = np.asarray(read_rows(max(0, mid - 16), min(n_slices, mid + 16)), np.float32)
        corr = check_signal(band, angles, where=settings.where)
        log.info("%s: %d tilts (%.1f..%.1f deg), %d slices x %d px; neighbour correlation %.3f",
                 settings.where, n_tilts, angles.min(), angles.max(), n_slices, n_det, corr)
    (start, stop), res = reconstruct_slab(read_rows, n_slices, slab, n_slabs, angles,
                                          replace(settings, signal_check=False))
    return (start, stop), res, misfit_table(res, slab, start, stop)


def combine_misfit(residual_ss: Sequence[npt.ArrayLike], data_ss: Sequence[float]) -> npt.NDArray[np.float64]:
    """Misfit of the whole volume from per-slab residuals (the gather step).

    Parameters
    ----------
    residual_ss : sequence of array_like, each shape (n_iterations + 1,)
        ``ReconResult.residual_ss`` of each slab (empty slabs may pass an empty array).
    data_ss : sequence of float

    Returns
    -------
    ndarray, shape (n_iterations,)
        ``sqrt(Σ residual_ss[k] / Σ data_ss)`` for iterations 1..n.
    """
    arrs = [np.asarray(r, np.float64) for r in residual_ss if np.asarray(r).size]
    total = float(np.sum(data_ss))
    if not arrs or total <= 0:
        return np.zeros(0)
    return np.sqrt(np.sum(arrs, axis=0)[1:] / total)


def misfit_table(result: ReconResult, slab: int | str, start: int, stop: int) -> Any:
    """Per-iteration misfit of one slab as a table (written as ``recon/slab_{i}_misfit.tsv``).

    Parameters
    ----------
    result : ReconResult
    slab : int or str
        Slab index (``"all"`` for a whole volume).
    start, stop : int
        The slab's slice range.

    Returns
    -------
    pandas.DataFrame
        Columns ``slab, start, stop, iteration`` (0 = start estimate), ``misfit`` (relative),
        ``residual_ss``, ``data_ss``; no rows for FBP.
    """
    import pandas as pd

    rss = np.asarray(result.residual_ss, np.float64)
    dss = float(result.data_ss)
    rel = np.sqrt(rss / dss) if dss > 0 else np.zeros_like(rss)
    return pd.DataFrame({"slab": [slab] * rss.size, "start": start, "stop": stop, "iteration": np.arange(rss.size),
                         "misfit": rel, "residual_ss": rss, "data_ss": dss})


def gather_misfit(tables: Sequence[Any]) -> Any:
    """Concatenate per-slab misfit tables and append the whole volume's rows (``slab = "all"``).

    Parameters
    ----------
    tables : sequence of pandas.DataFrame
        Outputs of :func:`misfit_table`.

    Returns
    -------
    pandas.DataFrame
        Same columns; the ``all`` rows hold ``sqrt(Σ residual_ss / Σ data_ss)`` per iteration.
    """
    import pandas as pd

    parts = [t for t in tables if len(t)]
    if not parts:
        return pd.DataFrame(columns=["slab", "start", "stop", "iteration", "misfit", "residual_ss", "data_ss"])
    df = pd.concat(parts, ignore_index=True)
    df["slab"] = df["slab"].astype(str)
    dss = float(df.groupby("slab")["data_ss"].first().sum())
    agg = df.groupby("iteration", sort=True)["residual_ss"].sum()
    whole = pd.DataFrame({"slab": "all", "start": int(df["start"].min()), "stop": int(df["stop"].max()),
                          "iteration": agg.index.to_numpy(), "residual_ss": agg.to_numpy(), "data_ss": dss})
    whole["misfit"] = np.sqrt(whole["residual_ss"] / dss) if dss > 0 else 0.0
    return pd.concat([df, whole[df.columns]], ignore_index=True)




def tomogram_outputs(volume: npt.NDArray[np.float32], voxel_size_nm: float, tables: Sequence[Any],
                     title: str) -> tuple[Any, Any, Any]:
    """The gather step's products besides the volume: whole-volume misfit table and the two figures.

    Parameters
    ----------
    volume : ndarray, shape (n_slices, n_z, n_x)
        The gathered volume (:func:`tomoflow.slabs.gather_slabs`).
    voxel_size_nm : float
    tables : sequence of pandas.DataFrame
        Per-slab misfit tables (:func:`misfit_table`).
    title : str
        Figure title prefix (sample and algorithm).

    Returns
    -------
    table : pandas.DataFrame
        :func:`gather_misfit`.
    misfit_fig, orthoslices_fig : matplotlib.figure.Figure
    """
    from .figures import misfit_figure, orthoslices_figure

    table = gather_misfit(tables)
    whole = table[(table["slab"] == "all") & (table["iteration"] > 0)]
    if len(whole):
        log.info("volume %s, voxel %.4g nm; misfit %.5f after %d iterations", volume.shape, voxel_size_nm,
                 float(whole["misfit"].iloc[-1]), int(whole["iteration"].iloc[-1]))
    else:
        log.info("volume %s, voxel %.4g nm (non-iterative)", volume.shape, voxel_size_nm)
    return (table, misfit_figure(table, title=f"{title} convergence"),
            orthoslices_figure(volume, voxel_size_nm, title=f"{title} reconstruction"))

"""ASTRA CUDA backend: MLEM with ASTRA's ``EM_CUDA`` slice by slice (GPU only).

Follows ASTRA's documented API (``EM_CUDA`` continues from the volume it is given, so one ``run``
call per iteration gives the per-iteration misfit); not run on a GPU by the authors.  The other
algorithms on an ASTRA GPU use the per-slice worker of :mod:`tomoflow.recon.astra_cpu` with
``FP_CUDA``/``BP_CUDA``.
"""

from __future__ import annotations

import logging

import astra
import numpy as np

from ..projector import projection_geometry
from .sensitivity import sensitivities
from .settings import ProgressFn, report

log = logging.getLogger("tomoflow.recon")


def mlem_cuda(data: np.ndarray, angles: np.ndarray, thickness: int, iterations: int, center: float,
              progress: ProgressFn | None) -> tuple[np.ndarray, np.ndarray, float]:
    """MLEM with ``EM_CUDA``, one iteration per ``run`` call; arguments and returns as
    :func:`tomoflow.recon.astra_cpu.reconstruct_per_slice`."""
    n_tilts, n_slices, n_det = data.shape
    sino = np.ascontiguousarray(data.transpose(1, 0, 2))
    vol = np.zeros((n_slices, thickness, n_det), np.float32)
    vg = astra.create_vol_geom(thickness, n_det)
    pg = projection_geometry(angles, n_det, center)
    vol[:] = sensitivities(thickness, n_det, angles, [0, n_tilts], n_det, center, "cuda").em_start(sino)[:, None, None]
    dss = float(np.einsum("ijk,ijk->", sino, sino, dtype=np.float64))
    rss = np.zeros((n_slices, iterations + 1))
    pf = np.zeros((n_tilts, n_det), np.float32)
    for y in range(n_slices):
        vid = astra.data2d.link("-vol", vg, vol[y])
        sid = astra.data2d.link("-sino", pg, sino[y])
        fid = astra.data2d.link("-sino", pg, pf)
        cfg = astra.astra_dict("EM_CUDA")
        cfg["ReconstructionDataId"], cfg["ProjectionDataId"] = vid, sid
        em = astra.algorithm.create(cfg)
        cfg = astra.astra_dict("FP_CUDA")
        cfg["VolumeDataId"], cfg["ProjectionDataId"] = vid, fid
        fp = astra.algorithm.create(cfg)
        try:
            astra.algorithm.run(fp)
            rss[y, 0] = float(np.sum((pf - sino[y]) ** 2, dtype=np.float64))
            for k in range(iterations):
                astra.algorithm.run(em, 1)
                astra.algorithm.run(fp)
                rss[y, k + 1] = float(np.sum((pf - sino[y]) ** 2, dtype=np.float64))
        finally:
            astra.algorithm.delete([em, fp])
            astra.data2d.delete([vid, sid, fid])
        if (y + 1) % max(1, n_slices // 10) == 0:
            log.info("EM_CUDA: %d/%d slices", y + 1, n_slices)
    total = rss.sum(axis=0)
    for k in range(1, iterations + 1):
        report(k, iterations, float(total[k]), dss, progress)
    return vol, total, dss

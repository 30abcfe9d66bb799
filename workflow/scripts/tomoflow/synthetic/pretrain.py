"""Annotated slices of a synthetic specimen for pre-training (``snakemake pretrain``) and benchmarks."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .specimen import PAPER_TEXTURE, make_specimen
from .tilt_series import simulate_tilt_series

log = logging.getLogger("tomoflow.synthetic")


@dataclass
class AnnotatedSlices:
    """Reconstructed slices of a synthetic specimen with their true labels.

    Attributes
    ----------
    images : ndarray float32, shape (n, n_z, n_x)
        MLEM reconstruction of the chosen slices from the perfectly aligned noisy tilt series.
    labels : ndarray uint8, shape (n, n_z, n_x)
        Generator's labels of those slices.
    density : ndarray float32, shape (n, n_z, n_x)
        Specimen density of those slices.
    index : ndarray int64, shape (n,)
        Slice indices along the tilt axis.
    info : dict
        Timings (``simulate_s``, ``recon_s``), class fractions, particle count.
    """

    images: npt.NDArray[np.float32]
    labels: npt.NDArray[np.uint8]
    density: npt.NDArray[np.float32]
    index: npt.NDArray[np.int64]
    info: dict[str, Any] = field(default_factory=dict)


def annotated_slices(config: Mapping[str, Any], index: Sequence[int] | None = None, *, n_slices: int = 30,
                     slice_seed: int = 11, iterations: int = 50, threads: int = 1) -> AnnotatedSlices:
    """Simulate a ``synthetic:`` config's specimen, perfectly aligned, and reconstruct some of its slices.

    Parameters
    ----------
    config : mapping
        A ``synthetic:`` section (``preset``, ``seed``, ``shape``, ``pixel_size_nm``, tilt range/step, ``dose``,
        ``read_noise``, particle and support keys; the misalignment keys are ignored: the aligned series is used).
    index : sequence of int, optional
        Slices to reconstruct; default: ``n_slices`` chosen by :func:`tomoflow.annotations.choose_slices`
        with ``slice_seed`` (as ``extract_annotations`` does).
    iterations : int
        MLEM iterations (ASTRA ``line`` projector, :func:`tomoflow.recon.reconstruct`).
    threads : int

    Returns
    -------
    AnnotatedSlices
    """
    from ..annotations import choose_slices
    from ..recon import reconstruct

    c = dict(config)
    t0 = time.perf_counter()
    spec = make_specimen(seed=int(c["seed"]), shape=c["shape"], pixel_size_nm=c["pixel_size_nm"],
                         particle_diameter_nm=c["particle_diameter_nm"], particle_fraction=c["particle_fraction"],
                         support_fraction=c["support_fraction"], particle_contrast=c["particle_contrast"],
                         margin_px=4, texture=PAPER_TEXTURE if c.get("preset", "none") == "paper" else None)
    ts = simulate_tilt_series(spec, seed=int(c["seed"]), tilt_range_deg=c["tilt_range_deg"],
                              tilt_step_deg=c["tilt_step_deg"], dose=c["dose"], read_noise=c["read_noise"],
                              shift_sigma_px=0.0, tilt_axis_deg=0.0, center_offset_px=0.0, threads=threads)
    t1 = time.perf_counter()
    ny, nz, _ = spec.labels.shape
    idx = np.asarray(choose_slices(ny, n_slices, slice_seed) if index is None else index, np.int64)
    res = reconstruct(np.ascontiguousarray(ts.aligned[:, idx, :]), ts.angles_deg, thickness_px=nz,
                      iterations=int(iterations), threads=threads)
    info = {"simulate_s": round(t1 - t0, 1), "recon_s": round(time.perf_counter() - t1, 1), "slices": int(ny),
            "recon_slices": int(idx.size), "class_fractions": spec.info["class_fractions"],
            "n_particles": len(spec.particles), "seed": int(c["seed"])}
    log.info("annotated slices: %s", info)
    return AnnotatedSlices(np.asarray(res.volume, np.float32), spec.labels[idx], spec.density[idx], idx, info)

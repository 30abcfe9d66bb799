"""Minimum particle size and the small-object clean-up of a predicted segmentation.

A particle (connected component of the particle label) is *below the minimum size* when its
equivalent diameter (6V/π)^(1/3), V = voxel count × voxel volume, is smaller than
``min_particle_diameter_nm``; that is, when it has fewer than :func:`min_particle_voxels` voxels.

:func:`remove_specks` relabels every such component ("speck") with the label most common among its
non-particle neighbours (the voxels that touch it under the same connectivity; background when it has
none), so that a one-voxel false positive inside the support becomes support and one in a pore becomes
background.  Components at or above the size are untouched, and so are the other classes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from .measure import PARTICLES, _check_labels, _structure, min_particle_voxels

log = logging.getLogger(__name__)


def remove_specks(labels: npt.ArrayLike, voxel_size_nm: float | Sequence[float], min_diameter_nm: float, *,
                  connectivity: int = 3, particle_label: int = PARTICLES) -> tuple[np.ndarray, int]:
    """Relabel particle components smaller than ``min_diameter_nm`` with their neighbourhood's label.

    Parameters
    ----------
    labels : array_like, shape (n_y, n_z, n_x), integer
        Label volume (e.g. the predicted segmentation).
    voxel_size_nm : float or (dy, dz, dx)
        Voxel size (nm).
    min_diameter_nm : float
        Minimum equivalent diameter (nm) of a particle (see :func:`min_particle_voxels`).
    connectivity : {1, 2, 3}
        Neighbourhood of one particle, and of a speck's neighbours (as ``quantify.connectivity``).
    particle_label : int
        Label value of particles.

    Returns
    -------
    labels : ndarray, shape (n_y, n_z, n_x), same dtype
        A copy with the specks relabelled (the input is not modified).
    n_removed : int
        Number of components relabelled.
    """
    lab = np.array(labels, copy=True)
    _check_labels(lab)
    structure = _structure(connectivity)
    n_min = min_particle_voxels(min_diameter_nm, voxel_size_nm)
    if n_min <= 1:
        return lab, 0
    comp, n = ndimage.label(lab == particle_label, structure=structure)
    counts = np.bincount(comp.ravel(), minlength=n + 1)
    small = counts < n_min
    small[0] = False
    n_removed = int(small.sum())
    if n_removed == 0:
        return lab, 0
    specks = np.where(small[comp], comp, 0)
    # neighbours of a speck: non-particle voxels within one step; where two specks compete, the larger id wins
    near = ndimage.grey_dilation(specks, footprint=structure)
    shell = (near > 0) & (lab != particle_label)
    n_labels = int(lab.max()) + 1
    votes = np.bincount(near[shell].astype(np.int64) * n_labels + lab[shell].astype(np.int64),
                        minlength=(n + 1) * n_labels).reshape(n + 1, n_labels)
    fill = votes.argmax(axis=1).astype(lab.dtype)  # ties: the lower label; no neighbours: 0 (background)
    inside = specks > 0
    lab[inside] = fill[specks[inside]]
    log.info("removed %d particle specks below %.3g nm (< %d voxels) of %d particles", n_removed, min_diameter_nm,
             n_min, n)
    return lab, n_removed

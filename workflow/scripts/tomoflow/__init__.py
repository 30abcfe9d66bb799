"""tomoflow: electron tomography from raw HAADF-STEM tilt series to segmentation, metrics and meshes.

Conventions shared by every module (arrays are NumPy, float32 unless stated):

* Tilt series: shape ``(n_tilts, n_slices, n_det)`` = (tilt, y, x).  The tilt axis runs along the image
  y axis (axis 1), so row ``y`` of every image is the sinogram of reconstruction slice ``y``
  (TomoPy's ``(angle, slice, detector)`` order).  Data read from a microscope whose tilt axis is at
  another in-plane angle is rotated into this frame by the alignment stage.
* Tilt angles: degrees everywhere in files, config and public APIs; they are converted to radians only
  when calling ASTRA/TomoPy.  Angle ``θ`` is ASTRA's ``parallel`` projection angle (= TomoPy's ``theta``).
* Volumes: shape ``(n_slices, n_z, n_x)`` = (y along the tilt axis, z along the beam at 0° tilt, x along
  the detector).  A reconstruction slice ``volume[y]`` is the ASTRA 2-D volume for sinogram
  ``tilt_series[:, y, :]``; at 0° tilt the projection is ``volume.sum(axis=1)``.
* Lengths: nanometres (``*_nm``); pixels (``*_px``) where stated.  Voxels are cubic unless a per-axis
  ``(dy, dz, dx)`` tuple is given.
* Labels: uint8, 0 = background/pores, 1 = support, 2 = particles (names configurable).
* Bad input raises :class:`tomoflow.errors.InputError` whose message is one line naming the file, the
  problem and the fix.
* No module imports ``snakemake``; file I/O lives in :mod:`tomoflow.io`.
"""

__version__ = "0.1.0"

#: Default class names, index = label value.
DEFAULT_CLASSES = ("background", "support", "particles")

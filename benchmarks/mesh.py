"""Accuracy and speed of tomoflow's surfaces on voxelised spheres, side by side with the usual estimators.

For spheres of radius r (in voxels, random sub-voxel centre offsets, isotropic and anisotropic voxels)
prints the relative error of the surface area against 4πr² and of the volume against 4/3πr³ for

* ``tomoflow``: :func:`tomoflow.mesh.isosurface` (flying edges + windowed sinc + volume restoration),
* ``tomoflow→V``: the same scaled to the voxel-count volume (what :mod:`tomoflow.quantify` reports),
* ``MC raw``: unsmoothed marching cubes (scikit-image, Lewiner) at 0.5,
* ``faces``: voxel-face count (the naive estimate),

and the time per mesh; then, on the synthetic demo catalyst (``tomoflow.synthetic.make_specimen``), the
time of ``class_meshes`` / ``render`` / ``quantify`` beside plain scikit-image marching cubes.  Usage::

    python benchmarks/mesh.py [--repeats 6] [--no-demo]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))

from skimage import measure

from tomoflow.mesh import class_meshes, isosurface, mesh_stats, render, signed_volume
from tomoflow.quantify import quantify


def sphere(r_nm: float, vs: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    v = np.asarray(vs)
    n = (np.ceil(r_nm / v) * 2 + 6).astype(int)
    off = rng.uniform(-0.5, 0.5, 3)
    g = [(np.arange(k) - (k - 1) / 2 + o) * d for k, d, o in zip(n, v, off)]
    y, z, x = np.meshgrid(*g, indexing="ij")
    return y**2 + z**2 + x**2 <= r_nm**2


def face_area(mask: np.ndarray, vs: tuple[float, float, float]) -> float:
    m = np.pad(mask, 1).astype(np.int8)
    dy, dz, dx = vs
    return float(np.abs(np.diff(m, axis=0)).sum() * dz * dx + np.abs(np.diff(m, axis=1)).sum() * dy * dx
                 + np.abs(np.diff(m, axis=2)).sum() * dy * dz)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--no-demo", action="store_true", help="skip the demo-catalyst timings")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'voxel (dy,dz,dx) nm':>20} {'r/vox':>6} | area error %: {'tomoflow':>9} {'tomoflow→V':>10} {'MC raw':>7} {'faces':>6}"
          f" | volume error %: {'tomoflow':>9} {'voxels':>7} | ms/mesh")
    for vs in [(0.4, 0.4, 0.4), (0.4, 0.3, 0.5)]:
        for r_vox in (1.25, 1.875, 2.5, 3.75, 5.0, 7.5, 10.0, 20.0):
            r = r_vox * max(vs)
            a0, v0 = 4 * np.pi * r * r, 4 / 3 * np.pi * r**3
            rows = []
            t_mesh = 0.0
            for _ in range(args.repeats):
                m = sphere(r, vs, rng)
                vvox = m.sum() * float(np.prod(vs))
                t0 = time.perf_counter()
                s = isosurface(m, vs)
                t_mesh += time.perf_counter() - t0
                sv = isosurface(m, vs, volume_nm3=vvox)  # = object_surfaces of one object
                verts, faces, _, _ = measure.marching_cubes(np.pad(m, 2).astype(np.float32), 0.5, spacing=vs)
                rows.append([s.area / a0 - 1, sv.area / a0 - 1, measure.mesh_surface_area(verts, faces) / a0 - 1,
                             face_area(m, vs) / a0 - 1, signed_volume(s) / v0 - 1, vvox / v0 - 1])
            e = 100 * np.mean(rows, axis=0)
            print(f"{str(vs):>20} {r_vox:6.2f} | {'':14}{e[0]:+9.2f} {e[1]:+10.2f} {e[2]:+7.2f} {e[3]:+6.1f}"
                  f" | {'':16}{e[4]:+9.2f} {e[5]:+7.2f} | {1000 * t_mesh / args.repeats:7.1f}")

    if not args.no_demo:
        demo()


def demo() -> None:
    from tomoflow.synthetic import make_specimen  # render() sets up offscreen rendering in its child process

    spec = make_specimen()
    lab, vs = spec.labels, spec.pixel_size_nm
    print(f"\ndemo catalyst {lab.shape} voxels of {vs} nm, {len(spec.particles)} particles")
    t0 = time.perf_counter()
    meshes = class_meshes(lab, vs, ["background", "support", "particles"])
    t_mesh = time.perf_counter() - t0
    t0 = time.perf_counter()
    for k in (1, 2):
        measure.marching_cubes(np.pad(lab == k, 1).astype(np.float32), 0.5, spacing=(vs,) * 3)
    t_mc = time.perf_counter() - t0
    t0 = time.perf_counter()
    render(meshes, "iso", (800, 600))
    t_render = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, summary = quantify(lab, vs)
    t_q = time.perf_counter() - t0
    for name, m in meshes.items():
        st = mesh_stats(m)
        print(f"  {name:10s} {st['n_triangles']:8d} triangles, area {st['area_nm2']:9.1f} nm², {st['n_boundary_edges']} boundary edges")
    print(f"  class_meshes (both classes) {t_mesh:6.2f} s | scikit-image marching cubes alone (no smoothing) {t_mc:6.2f} s")
    print(f"  render 800×600 (incl. OSMesa start) {t_render:6.2f} s | quantify {t_q:6.2f} s "
          f"({summary['n_particles']} particles, generator {len(spec.particles)})")


if __name__ == "__main__":
    main()

"""Rule export_meshes: segmentation -> results/{sample}/meshes/{class}.vtp, {class}.stl, render_{view}.png.

Meshes are in nm with mesh (X, Y, Z) = volume (x, y, z) (see tomoflow.mesh.AXIS_MAPPING); renders are made
offscreen (OSMesa), support light grey and particles red.
"""

import os

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkOSOpenGLRenderWindow")  # before VTK is imported

import logging  # noqa: E402
from pathlib import Path  # noqa: E402

from tomoflow.runner import run_rule  # noqa: E402

log = logging.getLogger("tomoflow.export_meshes")


def main(smk) -> None:  # noqa: ANN001 - Snakemake's injected object
    import pyvista as pv

    pv.OFF_SCREEN = True
    from tomoflow import io
    from tomoflow.errors import InputError
    from tomoflow.io.meshes import write_mesh, write_render
    from tomoflow.mesh import class_meshes, mesh_stats, render_views

    p = smk.params
    classes = [str(c) for c in p.classes]
    labels, voxel = io.read_labels(smk.input.labels, len(classes))
    vs = io.voxel_size_or(smk.input.labels, voxel, p.pixel_size_nm)
    log.info("labels %s, voxel %.4g nm; meshing classes %s", labels.shape, vs, classes[1:])
    meshes = class_meshes(labels, vs, classes, smoothing_iterations=int(p.smoothing_iterations),
                          pass_band=float(p.pass_band), target_reduction=float(p.target_reduction),
                          connectivity=int(p.connectivity))
    for path in list(smk.output.vtp) + list(smk.output.stl):
        name = Path(path).stem
        if name not in meshes:
            raise InputError(path, f"no class named {name!r} in {classes}", "keep the output names in mesh.smk in sync with `classes`")
        write_mesh(path, meshes[name], name)
    for name, m in meshes.items():
        st = mesh_stats(m)
        log.info("%s: %d connected surface pieces, %d triangles, area %.6g nm², volume %.6g nm³, %d boundary edges",
                 name, st["n_pieces"], st["n_triangles"], st["area_nm2"], st["volume_nm3"], st["n_boundary_edges"])
    size = [int(v) for v in p.render_size]
    views = {Path(path).stem.removeprefix("render_"): path for path in smk.output.renders}
    for view, img in render_views(meshes, list(views), size).items():
        write_render(views[view], img)
        log.info("render %s -> %s", view, views[view])


run_rule(snakemake, main)  # noqa: F821

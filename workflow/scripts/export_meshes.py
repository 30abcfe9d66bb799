"""Rule export_meshes: segmentation -> results/{sample}/meshes/{class}.vtp/.stl, render_{view}.png (tomoflow.mesh.mesh_sample)."""

from pathlib import Path

from tomoflow.runner import run_rule


def main(smk) -> None:
    from tomoflow.errors import InputError
    from tomoflow.io.meshes import write_mesh, write_render
    from tomoflow.mesh import MeshSettings, mesh_sample

    p = smk.params
    settings = MeshSettings(
        smoothing_iterations=int(p.smoothing_iterations), pass_band=float(p.pass_band),
        target_reduction=float(p.target_reduction), render_size=(int(p.render_size[0]), int(p.render_size[1])),
        connectivity=int(p.connectivity), min_particle_diameter_nm=float(p.min_particle_diameter_nm),
        remove_specks=bool(p.remove_specks),
    )
    views = {Path(path).stem.removeprefix("render_"): path for path in smk.output.renders}
    res = mesh_sample(smk.input.labels, p.classes, settings, list(views), pixel_size_nm=p.pixel_size_nm)
    for path in map(Path, list(smk.output.vtp) + list(smk.output.stl)):
        if path.stem not in res.meshes:
            raise InputError(path, f"no class named {path.stem!r} in {list(p.classes)}", "keep mesh.smk's outputs in sync with `classes`")
        write_mesh(path, res.meshes[path.stem], path.stem)
    for view, path in views.items():
        write_render(path, res.renders[view])


run_rule(snakemake, main)

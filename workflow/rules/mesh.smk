# Surface meshes and catalyst quantification (tomoflow.mesh, tomoflow.quantify, tomoflow.io.meshes):
# Both rules first apply the same clean-up to the predicted labels (tomoflow.quantify.clean_segmentation:
#   particle specks below quantify.min_particle_diameter_nm relabelled when quantify.remove_specks), so the
#   meshes and the numbers describe the same labels.
# export_meshes: segmentation -> one closed, smoothed surface per non-background class in nm (.vtp with
#   class/voxel-size/axis metadata and per-object component_id, .stl) + offscreen renders from 4 viewpoints;
# quantify: segmentation (+ true labels and the generator's particle list where the sample has them) ->
#   per-particle table, summary with predicted / true / generator numbers side by side, size histogram.

#: Render viewpoints (tomoflow.mesh.VIEWS): xy = along the beam, xz = along the tilt axis, yz = along x.
MESH_VIEWS = ["xy", "xz", "yz", "iso"]


rule export_meshes:
    input:
        labels="results/{sample}/segmentation.tif",
    output:
        vtp=expand("results/{{sample}}/meshes/{cls}.vtp", cls=CLASSES[1:]),
        stl=expand("results/{{sample}}/meshes/{cls}.stl", cls=CLASSES[1:]),
        renders=report(expand("results/{{sample}}/meshes/render_{view}.png", view=MESH_VIEWS), category="6. Meshes", subcategory="{sample}", caption="../report/renders.rst"),
    log:
        "logs/export_meshes/{sample}.log",
    benchmark:
        "benchmarks/results/export_meshes/{sample}.tsv"
    params:
        classes=CLASSES,
        views=MESH_VIEWS,
        smoothing_iterations=config["mesh"]["smoothing_iterations"],
        pass_band=config["mesh"]["pass_band"],
        target_reduction=config["mesh"]["target_reduction"],
        render_size=config["mesh"]["render_size"],
        connectivity=config["quantify"]["connectivity"],
        min_particle_diameter_nm=config["quantify"]["min_particle_diameter_nm"],
        remove_specks=config["quantify"]["remove_specks"],
        pixel_size_nm=sample_float("pixel_size_nm"),
    threads: 2
    resources:
        # per-class mask + int32 component labels + surfaces: ~20 bytes per (uint8) label voxel
        mem_mb=lambda wildcards, input: max(4000, int(20 * input.size_mb)),
        runtime=30,
    conda:
        "../../envs/mesh.yaml"
    script:
        "../scripts/export_meshes.py"


rule quantify:
    input:
        unpack(quantify_inputs),
    output:
        particles="results/{sample}/quantification/particles.tsv",
        summary="results/{sample}/quantification/summary.json",
        size_hist=report("results/{sample}/quantification/size_hist.png", category="7. Quantification", subcategory="{sample}", caption="../report/size_hist.rst"),
    log:
        "logs/quantify/{sample}.log",
    benchmark:
        "benchmarks/results/quantify/{sample}.tsv"
    params:
        classes=CLASSES,
        connectivity=config["quantify"]["connectivity"],
        contact_distance_nm=config["quantify"]["contact_distance_nm"],
        envelope_closing_nm=config["quantify"]["envelope_closing_nm"],
        min_particle_diameter_nm=config["quantify"]["min_particle_diameter_nm"],
        remove_specks=config["quantify"]["remove_specks"],
        smoothing_iterations=config["mesh"]["smoothing_iterations"],
        pass_band=config["mesh"]["pass_band"],
        pixel_size_nm=sample_float("pixel_size_nm"),
    threads: 2
    resources:
        # labels, int32 components, EDT feature indices (3 × int32) and float64 distances: ~40 bytes per voxel
        mem_mb=lambda wildcards, input: max(4000, int(40 * input.size_mb)),
        runtime=30,
    conda:
        "../../envs/mesh.yaml"
    script:
        "../scripts/quantify.py"

"""Rule predict_slab: U-Net prediction of one slab of results/{sample}/volume.mrc (tomoflow.predict)."""

from tomoflow.runner import run_rule


def main(smk) -> None:
    from tomoflow.predict import predict_slab_file  # imports NumPy/Keras after run_rule pinned the threads

    p = smk.params
    predict_slab_file(
        str(smk.input.volume),
        str(smk.input.model),
        str(smk.output.labels),
        [str(f) for f in getattr(smk.output, "probabilities", [])],
        slab=int(smk.wildcards.i),
        n_slabs=int(p.slabs),
        classes=list(p.classes),
        patch_size=list(p.patch_size),
        batch_size=int(p.batch_size),
        tta=p.tta,
        mode=str(p.mode),
        memory_budget_mb=float(p.memory_budget_mb),
        pixel_size_nm=p.pixel_size_nm,
        resample=str(p.resample),
        pixel_size_tolerance=float(p.pixel_size_tolerance),
    )


run_rule(snakemake, main)

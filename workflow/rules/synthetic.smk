rule simulate_tilt_series:
    """Synthetic γ-Al2O3/Pt catalyst: specimen, true labels, misaligned noisy HAADF tilt series."""
    output:
        tilt_series="results/synthetic/{name}/tilt_series.mrc",
        angles="results/synthetic/{name}/tilt_series.rawtlt",
        aligned="results/synthetic/{name}/tilt_series_aligned.mrc",
        labels="results/synthetic/{name}/labels.tif",
        density="results/synthetic/{name}/density.mrc",
        alignment_tsv="results/synthetic/{name}/true_alignment.tsv",
        alignment_json="results/synthetic/{name}/true_alignment.json",
        specimen="results/synthetic/{name}/specimen.json",
        figure=report(
            "results/synthetic/{name}/figures/specimen.png",
            category="1. Synthetic specimen",
            caption="../report/specimen.rst",
        ),
    params:
        synthetic=config["synthetic"],
    log:
        "logs/simulate_tilt_series/{name}.log",
    benchmark:
        "benchmarks/results/simulate_tilt_series/{name}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../../envs/synthetic.yaml"
    script:
        "../scripts/simulate_tilt_series.py"

# tomoflow: raw HAADF-STEM tilt series -> aligned MLEM volume -> U-Net segmentation -> metrics,
# quantification and surface meshes.  Run `snakemake --cores 8 --use-conda` (conda) or
# `snakemake --cores 2` inside the pip environment (see README.md).

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


wildcard_constraints:
    sample=r"[A-Za-z0-9_.-]+",
    name=r"[A-Za-z0-9_.-]+",
    i=r"\d+",


include: "workflow/rules/common.smk"
include: "workflow/rules/synthetic.smk"
include: "workflow/rules/align.smk"
include: "workflow/rules/recon.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/annotate.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/mesh.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/targets.smk"


rule all:
    default_target: True
    input:
        all_targets(),
        REPORT_SUMMARY,

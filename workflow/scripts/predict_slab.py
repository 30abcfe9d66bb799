"""Rule predict_slab: blended U-Net prediction of one slab of results/{sample}/volume.mrc."""


import logging

from tomoflow.runner import run_rule

log = logging.getLogger("tomoflow.predict_slab")


def _flag(value, key: str) -> bool:  # noqa: ANN001
    """A config boolean; strings from `--config key=false` are parsed, not taken as truthy."""
    if isinstance(value, str):
        if value.strip().lower() in ("true", "1", "yes", "on"):
            return True
        if value.strip().lower() in ("false", "0", "no", "off", ""):
            return False
        from tomoflow.errors import InputError

        raise InputError(key, f"{value!r} is not a boolean", "use true or false")
    return bool(value)


def main(smk) -> None:  # noqa: ANN001 - Snakemake's injected object
    from tomoflow.io.models import load_model  # imports Keras: after run_rule has pinned the thread pools

    from tomoflow import io
    from tomoflow.errors import InputError
    from tomoflow.predict import predict_volume_slab
    from tomoflow.slabs import slab_ranges

    volume = str(smk.input.volume)
    n_slices = io.volume_shape(volume)[0]
    i = int(smk.wildcards.i)
    start, stop = slab_ranges(n_slices, int(smk.params.slabs))[i]
    if stop <= start:
        raise InputError("predict.slabs", f"{smk.params.slabs} slabs for a volume of {n_slices} slices leaves slab {i} empty", f"set predict.slabs <= {n_slices}")
    voxel: list[float | None] = []

    def read(a: int, b: int):  # noqa: ANN202
        data, vs = io.read_slab(volume, start + a, start + b)
        voxel.append(vs)
        return data

    model = load_model(smk.input.model, compile=False)
    tta, save_probs = _flag(smk.params.tta, "predict.tta"), _flag(smk.params.save_probabilities, "predict.save_probabilities")
    log.info("slab %d: slices [%d, %d) of %d, model %s, patch %s, batch %s, tta %s",
             i, start, stop, n_slices, smk.input.model, list(smk.params.patch_size), smk.params.batch_size, tta)
    labels, probs = predict_volume_slab(
        model, read, 0, stop - start,
        patch_size=tuple(smk.params.patch_size), batch_size=int(smk.params.batch_size), tta=tta, return_probabilities=save_probs,
    )
    vs = io.voxel_size_or(volume, voxel[0] if voxel else None, smk.params.pixel_size_nm or None)
    io.write_labels(smk.output.labels, labels, vs)
    if save_probs:
        for c, path in enumerate(smk.output.probabilities):
            io.write_volume(path, probs[..., c], vs)


run_rule(snakemake, main)  # noqa: F821

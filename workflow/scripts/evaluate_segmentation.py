"""Rule evaluate_segmentation: DSC/precision/recall and (robust) Hausdorff distances of one sample.

(a) the sample's validation patches of the training split (when the model/split are inputs), and
(b) the predicted volume against the true labels, slice by slice and in 3-D (when true labels are inputs).
Writes results/{sample}/metrics/metrics.json, table1.tsv, rhd.tsv, rhd.png and errors.png.
"""

import logging

import numpy as np

from tomoflow.runner import optional, run_rule

log = logging.getLogger("tomoflow.evaluate_segmentation")


def main(smk) -> None:  # noqa: ANN001 - Snakemake's injected object
    from tomoflow import evaluation as ev
    from tomoflow import io
    from tomoflow.errors import InputError
    from tomoflow.metrics import aggregate_metrics

    sample = str(smk.wildcards.sample)
    class_names = [str(c) for c in smk.params.classes]
    classes = list(range(len(class_names)))
    percentiles = [float(p) for p in smk.params.percentiles]
    fallback_px = smk.params.pixel_size_nm or None
    n_examples = int(smk.params.error_examples)
    rare = classes[-1]  # the sparse class (particles): examples are chosen where it is most present

    sets, validation, volume, examples, pixel_nm = {}, None, None, None, None

    split_path = optional(smk.input, "split")
    if split_path is not None:
        records = ev.validation_records(io.read_json(split_path), sample, where=split_path)
        if records:
            img_path, lab_path = str(smk.input.images), str(smk.input.labels)
            images, vox = io.read_volume(img_path)
            labels, _ = io.read_labels(lab_path, len(class_names))
            if images.shape != labels.shape:
                raise InputError(lab_path, f"labels {labels.shape} and images {images.shape} differ in shape", "re-run extract_annotations")
            pixel_nm = io.voxel_size_or(img_path, vox, fallback_px)
            from tomoflow.io.models import load_model

            model = load_model(smk.input.model, compile=False)
            pred = ev.predict_validation_patches(
                model, images, records, n_classes=len(class_names), patch_size=smk.params.patch_size,
                batch_size=int(smk.params.batch_size), tta=bool(smk.params.tta),
            )
            truth = ev.cut_patches(labels, records, where=lab_path)
            per_patch = ev.evaluate_stack(truth, pred, pixel_size_nm=pixel_nm, classes=classes, percentiles=percentiles, what="validation patch")
            agg = aggregate_metrics(per_patch, classes)
            sets["validation_patches"] = agg
            validation = {"records": records, "per_patch": per_patch, "aggregate": agg}
            pick = ev.select_examples(truth, n_examples, rare)
            examples = dict(
                truth=truth[pick], prediction=pred[pick], images=ev.cut_patches(images, records)[pick],
                titles=[f"slice {records[k]['index']} y{records[k]['y0']} x{records[k]['x0']}" for k in pick],
            )
        else:
            log.info("no validation patches of sample %s in %s", sample, split_path)

    truth_path = optional(smk.input, "true_labels")
    if truth_path is not None:
        seg_path = str(smk.input.segmentation)
        truth_vol, vt = io.read_labels(truth_path, len(class_names))
        pred_vol, vp = io.read_labels(seg_path, len(class_names))
        vox_nm = io.voxel_size_or(seg_path, vp, vt if vt is not None else fallback_px)
        if vt is not None and abs(vt - vox_nm) > 1e-3 * vox_nm:
            log.warning("voxel size of %s (%.4g nm) differs from %s (%.4g nm); using %.4g nm", truth_path, vt, seg_path, vox_nm, vox_nm)
        per_slice, vol3d = ev.evaluate_volume(truth_vol, pred_vol, voxel_size_nm=vox_nm, classes=classes, percentiles=percentiles)
        agg = aggregate_metrics(per_slice, classes)
        sets["volume_slices"] = agg
        sets["volume_3d"] = aggregate_metrics([vol3d], classes)
        volume = {"shape": truth_vol.shape, "per_slice": per_slice, "aggregate": agg, "volume_3d": vol3d}
        pixel_nm = pixel_nm if pixel_nm is not None else vox_nm
        if examples is None:
            pick = ev.select_examples(truth_vol, n_examples, rare)
            examples = dict(truth=truth_vol[pick], prediction=pred_vol[pick], images=None, titles=[f"slice {k}" for k in pick])

    if not sets:
        raise InputError(
            f"sample {sample}",
            "nothing to evaluate: no validation patches of this sample and no true labels",
            "list the sample in train.samples or give a true_labels volume in config/samples.tsv",
        )

    doc = ev.metrics_document(sample=sample, class_names=class_names, percentiles=percentiles, pixel_size_nm=pixel_nm,
                              validation=validation, volume=volume)
    io.write_json(smk.output.metrics, doc)
    t1 = ev.table1(sets, class_names)
    io.write_tsv(smk.output.table1, t1)
    log.info("Table 1 (%s):\n%s", sample, t1.to_string(index=False))
    rhd = ev.rhd_table(sets, class_names)
    io.write_tsv(smk.output.rhd, rhd)
    io.save_figure(ev.rhd_figure(rhd, class_names, title=f"{sample}: robust Hausdorff distance"), smk.output.rhd_png)
    fig = ev.error_maps_figure(examples["truth"], examples["prediction"], class_names, images=examples["images"],  # type: ignore[index]
                               titles=examples["titles"], pixel_size_nm=pixel_nm)  # type: ignore[index]
    io.save_figure(fig, smk.output.errors)
    for name, agg in sets.items():
        log.info("%s: %s", name, ", ".join(f"{class_names[c]} DSC {a['dsc']['mean']:.3f}" for c, a in agg.items() if np.isfinite(a["dsc"]["mean"])))


run_rule(snakemake, main)  # noqa: F821

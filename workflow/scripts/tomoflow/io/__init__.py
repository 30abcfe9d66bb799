"""All file input/output of tomoflow.

Submodules by data kind; the names most rules need are re-exported here.

* :mod:`tomoflow.io.volumes` - tilt series, angles, volumes and label stacks (MRC, TIFF), JSON/TSV tables.
"""

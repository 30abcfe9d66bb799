"""Surfaces and renders (tomoflow.mesh, tomoflow.io.meshes) against analytic shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest

pv = pytest.importorskip("pyvista")

from tomoflow.errors import InputError  # noqa: E402
from tomoflow.io.meshes import read_mesh, write_mesh, write_render  # noqa: E402
from tomoflow.mesh import (  # noqa: E402
    VIEWS,
    class_meshes,
    index_to_nm,
    isosurface,
    mesh_stats,
    n_boundary_edges,
    object_surfaces,
    render,
    signed_volume,
)

CLASSES = ["background", "support", "particles"]


def ball(shape, vs, centre_nm, r_nm):
    """Voxels (voxel centre at index·voxel size) within r_nm of centre_nm (y, z, x)."""
    g = [np.arange(n) * d - c for n, d, c in zip(shape, vs, centre_nm)]
    y, z, x = np.meshgrid(*g, indexing="ij")
    return y**2 + z**2 + x**2 <= r_nm**2


@pytest.mark.parametrize("vs", [(0.4, 0.4, 0.4), (0.4, 0.3, 0.5), (0.25, 0.5, 0.4)])
def test_sphere_area_volume_closed_and_in_nm(vs):
    r = 10 * max(vs)  # >= 10 voxels along every axis
    shape = tuple(int(math.ceil(2 * r / d)) + 8 for d in vs)
    centre = tuple((n - 1) / 2 * d + 0.13 * d for n, d in zip(shape, vs))  # off the voxel grid
    lab = ball(shape, vs, centre, r).astype(np.uint8) * 2
    meshes = class_meshes(lab, vs, CLASSES)
    m = meshes["particles"]
    st = mesh_stats(m)
    assert abs(st["area_nm2"] / (4 * math.pi * r * r) - 1) < 0.02
    assert abs(st["volume_nm3"] / (4 / 3 * math.pi * r**3) - 1) < 0.02
    assert st["n_boundary_edges"] == 0 and st["n_pieces"] == 1
    assert m.is_manifold
    # nm and axis mapping: mesh (X, Y, Z) = volume (x, y, z); centre and extent of the sphere
    expect_centre = np.array([centre[2], centre[0], centre[1]])
    got_centre = np.asarray(m.bounds).reshape(3, 2).mean(axis=1)
    np.testing.assert_allclose(got_centre, expect_centre, atol=0.25 * max(vs))
    np.testing.assert_allclose(np.ptp(np.asarray(m.points), axis=0), 2 * r, rtol=0.03)
    # plain isosurface (no voxel-volume offset) is also within 2 %
    s = isosurface(lab == 2, vs)
    assert abs(s.area / (4 * math.pi * r * r) - 1) < 0.02
    assert abs(signed_volume(s) / (4 / 3 * math.pi * r**3) - 1) < 0.02
    assert meshes["support"].n_cells == 0


def test_axis_mapping_box_is_not_mirrored():
    """A box with different extents along y, z, x lands on mesh Y, Z, X at the voxel boundaries."""
    vs = (0.5, 0.3, 0.4)
    lab = np.zeros((30, 24, 40), np.uint8)
    sl = (slice(3, 21), slice(5, 13), slice(4, 34))  # 18 × 8 × 30 voxels
    lab[sl] = 1
    m = isosurface(lab == 1, vs, smoothing_iterations=0)
    lo = index_to_nm([s.start - 0.5 for s in sl], vs)
    hi = index_to_nm([s.stop - 0.5 for s in sl], vs)
    b = np.asarray(m.bounds).reshape(3, 2)
    np.testing.assert_allclose(b[:, 0], lo, atol=1e-4)
    np.testing.assert_allclose(b[:, 1], hi, atol=1e-4)
    # unsmoothed: the voxel box with chamfered edges; outward orientation gives a positive enclosed volume
    assert signed_volume(m) == pytest.approx(18 * 8 * 30 * np.prod(vs), rel=0.05)
    assert signed_volume(m) < 18 * 8 * 30 * np.prod(vs)
    # the mapping is a rotation (cyclic permutation): right-handed, determinant +1
    perm = np.zeros((3, 3))
    axes = {np.ptp(b[k]): k for k in range(3)}
    vol_ext = {18 * 0.5: 0, 8 * 0.3: 1, 30 * 0.4: 2}
    for ext, mesh_axis in axes.items():
        vol_axis = next(v for e, v in vol_ext.items() if abs(e - ext) < 0.01)
        perm[mesh_axis, vol_axis] = 1
    assert round(np.linalg.det(perm)) == 1


def test_border_objects_are_closed_and_fov_area_excludes_cut_faces():
    vs = (0.4, 0.4, 0.4)
    r = 4.0
    shape = (16, 28, 28)
    centre = (-0.5 * vs[0], 5.4, 5.4)  # centre on the volume's outer voxel boundary: half the sphere inside
    mask = ball(shape, vs, centre, r)
    closed = isosurface(mask, vs)
    assert n_boundary_edges(closed) == 0
    # closed surface = hemisphere + the cut disc
    assert closed.area == pytest.approx(2 * math.pi * r * r + math.pi * r * r, rel=0.03)
    fov = isosurface(mask, vs, closed=False)
    assert fov.area == pytest.approx(2 * math.pi * r * r, rel=0.02)
    assert fov.bounds[2] >= -0.5 * vs[0] - 1e-4  # clipped at the volume's voxel boundary (mesh Y = volume y)


def test_small_objects_keep_their_voxel_volume_and_ids():
    vs = (0.4, 0.4, 0.4)
    shape = (24, 24, 40)
    a = ball(shape, vs, (4.6, 4.5, 4.4), 1.0)  # r = 2.5 voxels
    b = ball(shape, vs, (6.0, 4.5, 11.0), 2.0)  # r = 5 voxels, later in scan order (y first) -> id 2
    mesh, areas = object_surfaces(a | b, vs)
    assert sorted(np.unique(mesh.cell_data["component_id"])) == [1, 2]
    faces = mesh.faces.reshape(-1, 4)
    for cid, m in ((1, a), (2, b)):
        piece = pv.PolyData(mesh.points, faces[mesh.cell_data["component_id"] == cid].ravel())
        assert signed_volume(piece) == pytest.approx(m.sum() * 0.4**3, rel=1e-3)
        assert areas[cid - 1] == pytest.approx(piece.area, rel=1e-6)
    # isoperimetric bound: at least the area of the sphere of the same (voxel) volume, and close to it
    for cid, m in ((1, a), (2, b)):
        a_eq = (36 * math.pi) ** (1 / 3) * (m.sum() * 0.4**3) ** (2 / 3)
        assert a_eq < areas[cid - 1] < 1.05 * a_eq
    assert areas[1] == pytest.approx(4 * math.pi * 2.0**2, rel=0.02)
    # the sinc filter alone shrinks the small sphere; the volume offsets give it back
    raw = isosurface(a, vs, preserve_volume=False)
    assert signed_volume(raw) < 0.97 * a.sum() * 0.4**3


def test_decimation_keeps_surface_closed_and_area():
    vs = (0.4, 0.4, 0.4)
    mask = ball((30, 30, 30), vs, (5.9, 5.8, 5.7), 4.0)
    full = isosurface(mask, vs)
    half = isosurface(mask, vs, target_reduction=0.5)
    assert 0.4 < half.n_cells / full.n_cells < 0.6
    assert n_boundary_edges(half) == 0
    assert half.area == pytest.approx(full.area, rel=0.01)


def test_empty_class_gives_valid_empty_files(tmp_path):
    lab = np.zeros((10, 12, 14), np.uint8)
    lab[2:8, 3:6, 2:12] = 1
    meshes = class_meshes(lab, 0.4, CLASSES)
    assert meshes["particles"].n_cells == 0 and meshes["support"].n_cells > 0
    for name, m in meshes.items():
        write_mesh(tmp_path / f"{name}.vtp", m)
        write_mesh(tmp_path / f"{name}.stl", m, name)
    assert read_mesh(tmp_path / "particles.vtp").n_cells == 0
    assert read_mesh(tmp_path / "particles.stl").n_cells == 0
    assert (tmp_path / "particles.stl").stat().st_size == 84
    assert mesh_stats(meshes["particles"])["area_nm2"] == 0.0
    img = render(meshes, "iso", (120, 90))
    assert img.shape == (90, 120, 3)


def test_mesh_files_round_trip_through_vtk_readers(tmp_path):
    vs = (0.4, 0.4, 0.4)
    lab = np.zeros((20, 20, 20), np.uint8)
    lab[ball(lab.shape, vs, (3.8, 3.8, 3.8), 2.5)] = 2
    m = class_meshes(lab, vs, CLASSES)["particles"]
    write_mesh(tmp_path / "p.vtp", m)
    write_mesh(tmp_path / "p.stl", m, "particles")
    back = pv.read(tmp_path / "p.vtp")
    assert back.n_cells == m.n_cells and back.area == pytest.approx(m.area, rel=1e-6)
    assert str(back.field_data["units"][0]) == "nm"
    assert str(back.field_data["class_name"][0]) == "particles"
    stl = pv.read(tmp_path / "p.stl")  # VTK's own STL reader
    assert stl.n_cells == m.n_cells and stl.area == pytest.approx(m.area, rel=1e-5)
    assert read_mesh(tmp_path / "p.stl").area == pytest.approx(m.area, rel=1e-5)
    with pytest.raises(InputError):
        write_mesh(tmp_path / "p.obj", m)


def _scene():
    vs = (0.4, 0.4, 0.4)
    lab = np.zeros((40, 40, 60), np.uint8)
    lab[4:36, 18:30, 4:56] = 1  # support slab, z in [18, 30)
    # particles: one on the low-z face at low y / high x, one on the high-z face near the middle
    lab[ball(lab.shape, vs, (3.2, 6.4, 19.0), 1.2) & (lab == 0)] = 2
    lab[ball(lab.shape, vs, (8.0, 12.4, 12.0), 1.0) & (lab == 0)] = 2
    return lab, vs


def _red(img):
    i = img.astype(int)
    return (i[..., 0] > 120) & (i[..., 1] < 90) & (i[..., 2] < 90)


def _grey(img):
    i = img.astype(int)
    return (np.ptp(i, axis=2) < 16) & (i[..., 0] > 40) & (i[..., 0] < 245)


def test_render_offscreen_shows_both_classes_unmirrored(tmp_path):
    lab, vs = _scene()
    meshes = class_meshes(lab, vs, CLASSES)
    w, h = 240, 180
    for view in VIEWS:
        img = render(meshes, view, (w, h))
        assert img.shape == (h, w, 3) and img.dtype == np.uint8
        grey = _grey(img).sum()
        assert grey > 0.05 * w * h, view
        assert _red(img).sum() > 30, view
        write_render(tmp_path / f"render_{view}.png", img)
        assert (tmp_path / f"render_{view}.png").stat().st_size > 1000
    # xy view: x to the right, y down (like the 0° image): the big particle (high x, low y) is top right
    img = render(meshes, "xy", (w, h))
    red = np.argwhere(_red(img))
    big = red[red[:, 1] > w / 2]
    assert len(big) > 30
    sup = np.argwhere(_grey(img))
    assert big[:, 0].mean() < sup[:, 0].mean()  # above the support's centre (low y)
    assert big[:, 1].mean() > sup[:, 1].mean()  # right of it (high x)


def test_bad_inputs_raise_input_error():
    with pytest.raises(InputError):
        isosurface(np.ones((4, 4)), 0.4)
    with pytest.raises(InputError):
        isosurface(np.ones((4, 4, 4)), (0.4, -1.0, 0.4))
    with pytest.raises(InputError):
        isosurface(np.ones((4, 4, 4)), 0.4, target_reduction=1.0)
    with pytest.raises(InputError):
        render({}, "left")


def test_object_touching_only_at_a_corner_keeps_a_bounded_surface():
    """A voxel joined to its particle by one corner (26-connected, two surface pieces) once made the
    volume-matching offset run away (areas of 1e5 nm² for a 60-voxel particle)."""
    from tomoflow.mesh import object_surfaces

    m = np.zeros((8, 8, 8), bool)
    m[2:5, 2:6, 2:6] = True  # 48 voxels
    m[1, 1, 1] = True  # corner contact only
    _, areas = object_surfaces(m, 0.4, connectivity=3)
    assert areas.shape == (1,)
    box = 2 * (3 * 4 + 3 * 4 + 4 * 4) * 0.4**2  # faces of the 3×4×4 block, nm²
    assert 0.6 * box < areas[0] < 1.3 * box


def test_render_with_tensorflow_loaded_in_the_same_process():
    """Mesa's offscreen VTK and TensorFlow crash together in one process; render() must still work."""
    import pyvista as pv
    import tensorflow  # noqa: F401

    from tomoflow.mesh import render

    img = render({"support": pv.Sphere(radius=5.0), "particles": pv.Sphere(radius=1.5, center=(5.0, 0, 0))}, "iso", (160, 120))
    assert img.shape == (120, 160, 3)
    red = (img[..., 0] > 120) & (img[..., 1] < 80)
    assert red.mean() > 0.002


def test_offscreen_environment_is_set_in_one_place_and_keeps_user_values():
    from tomoflow.mesh import OFFSCREEN_ENV, offscreen_environment

    env = offscreen_environment({"PATH": "/bin"})
    assert env == {"PATH": "/bin", **OFFSCREEN_ENV}
    assert OFFSCREEN_ENV == {"VTK_DEFAULT_OPENGL_WINDOW": "vtkOSOpenGLRenderWindow"}
    # a value chosen by the user (e.g. EGL on a GPU node) wins
    assert offscreen_environment({"VTK_DEFAULT_OPENGL_WINDOW": "vtkEGLRenderWindow"})["VTK_DEFAULT_OPENGL_WINDOW"] == "vtkEGLRenderWindow"


def test_mesh_sample_cleans_specks_like_quantify_and_keeps_ids(tmp_path):
    """Meshes and particles.tsv describe the same cleaned labels: same particle count, component_id =
    particle_id, and the specks are gone from the particle surface."""
    from tomoflow import io
    from tomoflow.mesh import MeshSettings, mesh_sample
    from tomoflow.quantify import QuantifySettings, quantify_sample

    vs = (0.4, 0.4, 0.4)
    shape = (20, 24, 28)
    lab = np.zeros(shape, np.uint8)
    lab[:, 14:, :] = 1
    lab[ball(shape, vs, (3.0, 4.4, 3.0), 1.2)] = 2
    lab[ball(shape, vs, (4.0, 4.0, 8.0), 1.0)] = 2
    specks = [(15, 2, 20), (2, 18, 20), (17, 3, 3)]  # two in the background, one inside the support
    for p in specks:
        lab[p] = 2
    io.write_labels(tmp_path / "seg.tif", lab, 0.4)
    res = mesh_sample(tmp_path / "seg.tif", CLASSES, MeshSettings(smoothing_iterations=10, render_size=(64, 48)),
                      views=["iso"])
    assert res.n_specks_removed == 3 and res.renders["iso"].shape == (48, 64, 3)
    ids = np.unique(np.asarray(res.meshes["particles"].cell_data["component_id"]))
    q = quantify_sample("s", CLASSES, tmp_path / "seg.tif", QuantifySettings(smoothing_iterations=10))
    assert q.summary["n_specks_removed"] == 3 and q.summary["predicted"]["n_particles"] == 2
    assert ids.tolist() == q.particles["particle_id"].tolist() == [1, 2]
    # the particle surface encloses the two balls' voxels only (no speck pieces)
    n_vox = int(((lab == 2).sum()) - len(specks))
    assert mesh_stats(res.meshes["particles"])["n_pieces"] == 2
    assert signed_volume(res.meshes["particles"]) == pytest.approx(n_vox * 0.064, rel=0.02)
    # without the clean-up the specks are meshed (5 pieces) but still not counted as particles
    raw = mesh_sample(tmp_path / "seg.tif", CLASSES, MeshSettings(smoothing_iterations=10, remove_specks=False), views=[])
    assert mesh_stats(raw.meshes["particles"])["n_pieces"] == 5 and raw.n_specks_removed == 0

import numpy as np

from poolformer_hf.tasks.segmentation.shapes import LABEL_NAMES, make_scene, make_scenes


def test_scenes_are_deterministic_and_seeds_differ():
    first, again, other = make_scene(3, seed=0), make_scene(3, seed=0), make_scene(3, seed=1)
    assert np.array_equal(first.image, again.image) and np.array_equal(first.label_map, again.label_map)
    assert not np.array_equal(first.image, other.image)


def test_boxes_are_the_exact_extent_of_each_shapes_pixels():
    for scene in make_scenes(20, size=48):
        assert 1 <= len(scene.classes) <= 3
        labelled = np.zeros_like(scene.label_map, dtype=bool)
        for (x_min, y_min, x_max, y_max), kind in zip(scene.boxes.astype(int), scene.classes):
            inside = scene.label_map[y_min:y_max, x_min:x_max] == kind + 1
            # The box is tight: its border rows and columns each touch the shape.
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            labelled[y_min:y_max, x_min:x_max] |= inside
        # Every shape pixel lies in its own box (shapes do not overlap).
        assert np.array_equal(labelled, scene.label_map > 0)
        assert scene.label_map.max() < len(LABEL_NAMES)


def test_colour_does_not_give_the_class_away():
    scenes = make_scenes(60)
    mean_colours = {kind: [] for kind in range(1, 4)}
    for scene in scenes:
        for kind in mean_colours:
            if (scene.label_map == kind).any():
                mean_colours[kind].append(scene.image[scene.label_map == kind].mean(0))
    centres = np.array([np.mean(colours, 0) for colours in mean_colours.values()])
    spreads = np.array([np.std(colours, 0) for colours in mean_colours.values()])
    # Class means are close together compared with how much colours vary within a class.
    assert np.abs(centres - centres.mean(0)).max() < spreads.min()

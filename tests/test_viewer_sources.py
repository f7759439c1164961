"""Input sources: image folders and lists, video files, a camera that disappears, the digit
canvas, and the fetcher's freeze / toggle / next / previous / stretch keys."""
import os

import cv2
import numpy as np
import pytest

from caffevis.errors import InputError
from caffevis.images import read_image
from caffevis.viewer.sources import (ArrayImages, Camera, DigitCanvas, FileList, InputFetcher, VideoFile,
                                     camera_frame, mnist_normalise)
from conftest import shared_path


@pytest.fixture(scope="module")
def toolbox_images():
    return shared_path("data", "images", "dvt_input_images")


def test_directory_is_sorted_and_filtered(toolbox_images, tmp_path):
    files = FileList.from_directory(toolbox_images)
    names = [os.path.basename(p) for p in files.paths]
    assert names == sorted(names) and len(names) == 12
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="no images"):
        FileList.from_directory(str(tmp_path))


def test_list_file_first_token_and_relative_names(toolbox_images, tmp_path):
    names = sorted(os.listdir(toolbox_images))[:3]
    lst = tmp_path / "list.txt"
    lst.write_text(f"{names[2]} 7\n\n{names[0]},3\n{os.path.join(toolbox_images, names[1])}\t1\n")
    files = FileList.from_list_file(str(lst), base_dir=toolbox_images)
    assert [os.path.basename(p) for p in files.paths] == [names[2], names[0], names[1]]
    frame = files.load(1)
    assert frame.name == names[0] and frame.image.shape[0] == frame.image.shape[1]
    with pytest.raises(InputError, match="not found"):
        FileList.from_list_file(str(tmp_path / "missing.txt"))


def test_next_key_relists_the_folder_as_deepvis(toolbox_images, tmp_path):
    import shutil

    names = sorted(os.listdir(toolbox_images))
    shutil.copy(os.path.join(toolbox_images, names[0]), tmp_path / "b.jpg")
    fetcher = InputFetcher(static=FileList.from_directory(str(tmp_path)))
    assert len(fetcher.static) == 1
    shutil.copy(os.path.join(toolbox_images, names[1]), tmp_path / "c.jpg")  # added while the viewer runs
    fetcher.handle("static_file_increment")
    fetcher.step()
    assert len(fetcher.static) == 2 and fetcher.get_frame()[1].name == "c.jpg"
    shutil.rmtree(tmp_path)  # the folder vanishes: the old listing stays, no crash
    fetcher.handle("static_file_decrement")
    assert len(fetcher.static) == 2 and fetcher.static_idx == 0


def test_crop_and_stretch(toolbox_images):
    files = FileList.from_directory(toolbox_images)
    raw = read_image(files.paths[0])
    crop = files.load(0).image
    stretch = files.load(0, stretch=True).image
    assert crop.shape[:2] == (min(raw.shape[:2]),) * 2
    assert stretch.shape == raw.shape


def _video(path, frames):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()


def test_video_file_plays_and_loops(tmp_path):
    frames = [np.full((48, 64, 3), v, np.uint8) for v in (20, 120, 220)]
    path = tmp_path / "clip.avi"
    _video(path, frames)
    video = VideoFile(str(path))
    means = [video.read().image.mean() for _ in range(5)]
    assert [round(m / 10) for m in means] == [2, 12, 22, 2, 12]  # loops at the end
    assert video.read().image.shape == (48, 48, 3)  # centre-cropped square
    with pytest.raises(InputError, match="video file not found"):
        VideoFile(str(tmp_path / "none.avi"))
    (tmp_path / "bad.avi").write_bytes(b"garbage")
    with pytest.raises(InputError):
        VideoFile(str(tmp_path / "bad.avi")).read()


class FakeCapture:
    """A camera that delivers some frames, then is unplugged."""

    def __init__(self, frames):
        self.frames = list(frames)
        self.released = False

    def isOpened(self):
        return True

    def read(self):
        if not self.frames:
            return False, None
        return True, self.frames.pop(0)

    def release(self):
        self.released = True


def test_camera_frames_are_mirrored_stretched_and_cropped():
    bgr = np.zeros((4, 6, 3), np.uint8)
    bgr[:, 0] = (10, 20, 30)  # left column, BGR
    bgr[:, 5] = (50, 60, 70)
    out = camera_frame(bgr)
    assert out.shape == (4, 4, 3)  # centre square of the mirrored frame
    full = camera_frame(np.pad(bgr, ((1, 1), (0, 0), (0, 0))))
    assert full.max() == pytest.approx(255) and full.min() == pytest.approx(0)  # per-frame min-max
    # mirrored: the right column of the sensor shows on the left, as RGB
    square = camera_frame(np.repeat(bgr, 2, axis=0)[:6])  # 6x6: nothing cropped
    assert square[0, 0].tolist() == pytest.approx([255.0, 255 * 60 / 70, 255 * 50 / 70], rel=1e-5)


def test_camera_that_disappears_is_reported_and_skipped(toolbox_images):
    img = cv2.imread(os.path.join(toolbox_images, sorted(os.listdir(toolbox_images))[0]))
    cam = Camera(0, capture=FakeCapture([img, img[::-1]]))
    fetcher = InputFetcher(static=None, live=cam)
    assert not fetcher.static_mode
    assert fetcher.step() and fetcher.step()
    idx, frame = fetcher.get_frame()
    assert idx == 2 and frame.name == "camera 0"
    assert not fetcher.step()  # unplugged
    assert fetcher.error == "camera 0: no frame (camera gone?)"
    assert fetcher.get_frame()[0] == 2  # the last good frame stays
    fetcher.stop()
    assert cam.capture.released


def test_fetcher_keys(toolbox_images):
    files = FileList.from_directory(toolbox_images)
    canvas = DigitCanvas(size=100)
    f = InputFetcher(static=files, live=canvas)
    assert f.static_mode
    f.step()
    assert f.get_frame()[1].name == os.path.basename(files.paths[0])
    assert not f.step()  # the same file is not reloaded
    f.handle("static_file_decrement")
    f.step()
    assert f.get_frame()[1].name == os.path.basename(files.paths[-1])  # wraps around
    f.handle("static_file_increment")
    f.handle("static_file_increment")
    f.step()
    assert f.describe().startswith(os.path.basename(files.paths[1])) and f.describe().endswith("(2/12)")
    f.handle("stretch_mode")  # forces a reload: the whole image, not its centre square
    assert f.step() and f.get_frame()[1].image.shape == read_image(files.paths[1]).shape
    f.handle("toggle_input_mode")
    assert not f.static_mode and f.step() and f.get_frame()[1].name == "digit canvas"
    assert not f.step()  # an unchanged canvas is not a new frame
    canvas.pen_down(50, 50)
    assert f.step()
    assert f.handle("freeze_cam") == "live input frozen"
    canvas.pen_move(60, 80)
    assert not f.step()
    f.handle("freeze_cam")
    assert f.step()
    f.handle("static_file_increment")  # from live input: only switches to the files
    assert f.static_mode and f.step() and f.describe().endswith("(2/12)")
    no_live = InputFetcher(static=files)
    assert no_live.handle("toggle_input_mode").startswith("no live input") and no_live.static_mode


def test_canvas_is_normalised_like_mnist():
    canvas = DigitCanvas(size=280, net_hw=(28, 28))
    assert canvas.read().net_image.max() == 0  # empty
    canvas.pen_down(60, 30)
    canvas.pen_move(60, 250)  # a tall stroke at the far left
    digit = canvas.read().net_image
    ys, xs = np.nonzero(digit > 30)
    assert ys.max() - ys.min() + 1 in (19, 20, 21)  # fitted into the 20-pixel box
    cy = (digit.sum(axis=1) * np.arange(28)).sum() / digit.sum()
    cx = (digit.sum(axis=0) * np.arange(28)).sum() / digit.sum()
    assert abs(cy - 13.5) < 1 and abs(cx - 13.5) < 1  # centred by its centre of mass
    np.testing.assert_array_equal(mnist_normalise(np.zeros((10, 10), np.uint8)), np.zeros((28, 28)))
    canvas.clear()
    assert canvas.canvas.max() == 0


def test_mnist_digits_as_static_images():
    shared_path("data", "mnist", "t10k-images-idx3-ubyte.gz")
    digits = ArrayImages.mnist_test(count=5)
    assert len(digits) == 5 and digits.name(0) == "mnist test 0 (label 7)"
    assert digits.load(1).image.shape == (28, 28)


def test_frozen_live_frame_comes_back_after_the_static_files(toolbox_images):
    files = FileList.from_directory(toolbox_images)
    sensor = [cv2.imread(files.paths[k]) for k in (3, 4)]
    cam = Camera(0, capture=FakeCapture(sensor))
    f = InputFetcher(static=files, live=cam)
    f.handle("toggle_input_mode")
    assert f.step()
    live = f.get_frame()[1]
    f.handle("freeze_cam")
    f.handle("toggle_input_mode")  # to the files
    assert f.step() and f.get_frame()[1].name == os.path.basename(files.paths[0])
    f.handle("toggle_input_mode")  # back to the frozen camera: its frozen frame again, not a new one
    assert f.step() and f.get_frame()[1] is live
    assert not f.step()
    f.handle("freeze_cam")
    assert f.step()
    assert not np.array_equal(f.get_frame()[1].image, live.image)  # the second sensor frame

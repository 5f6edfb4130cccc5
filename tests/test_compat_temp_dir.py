"""lib_lcm_webui.compat.temp_dir: the folder of the host's unsaved images, which Forge Neo names by default
(`<data dir>/tmp`) but creates only when its option changes (every Live image failed on a fresh data dir)."""
from __future__ import annotations

from tests.fake_webui import fake_webui


def test_the_named_folder_is_created_once_and_an_empty_option_creates_nothing(tmp_path):
    folder = tmp_path / "data" / "tmp"
    with fake_webui() as host:
        from lib_lcm_webui.compat import temp_dir

        host.shared.opts.temp_dir = str(folder)
        temp_dir.ensure_unsaved_images_folder()
        assert folder.is_dir()
        (folder / "kept.png").write_bytes(b"x")
        temp_dir.ensure_unsaved_images_folder()
        assert (folder / "kept.png").read_bytes() == b"x"
        host.shared.opts.temp_dir = ""  # A1111's default: the system's temp folder
        temp_dir.ensure_unsaved_images_folder()
        del host.shared.opts.temp_dir  # a host without the option
        temp_dir.ensure_unsaved_images_folder()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["data", "kept.png", "tmp"]

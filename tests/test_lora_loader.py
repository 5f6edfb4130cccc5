"""The host's LoRA loader and SDXL's up-block-0 upsampler (lib_lcm_webui.compat.lora_loader), against a stand-in of A1111's
`extensions-builtin/Lora/networks.py` naming rule; the real loader runs in tests/e2e/test_lora_modules.py."""
from __future__ import annotations

import sys
import types

import pytest

from lib_lcm.params import INFOTEXT_WARNING
from tests.fake_webui import FakeP, fake_webui

KEY = "lora_unet_up_blocks_0_upsamplers_0_conv"


def a1111_convert(key, is_sd2):
    """A1111 1.6-1.10's rule for the keys used here (SD 1.x's upsampler naming)."""
    if key == KEY:
        return "diffusion_model_output_blocks_2_1_conv"
    if key == "lora_unet_up_blocks_1_upsamplers_0_conv":
        return "diffusion_model_output_blocks_5_2_conv"
    return key.replace("lora_unet", "diffusion_model")


SD1_LAYERS = {"diffusion_model_output_blocks_2_1_conv": "sd1-up0", "diffusion_model_output_blocks_5_2_conv": "up1"}
SDXL_LAYERS = {"diffusion_model_output_blocks_2_2_conv": "sdxl-up0", "diffusion_model_output_blocks_5_2_conv": "up1",
               "diffusion_model_output_blocks_2_1_proj_in": "attention"}


@pytest.fixture
def host():
    networks = types.ModuleType("networks")
    networks.convert_diffusers_name_to_compvis = a1111_convert
    networks.module_types = [object()]  # A1111's loader builds each network's modules with these
    networks.loaded_networks = []
    with fake_webui() as fake:
        sys.modules["networks"] = networks
        try:
            from lib_lcm_webui import processing
            from lib_lcm_webui.compat import lora_loader

            fake.lora_loader, fake.processing, fake.networks = lora_loader, processing, networks
            yield fake
        finally:
            del sys.modules["networks"]


def convert(host, layers, key):
    host.shared.sd_model = types.SimpleNamespace(network_layer_mapping=layers)
    return host.networks.convert_diffusers_name_to_compvis(key, False)


def test_sdxls_up_block_0_upsampler_gets_the_name_of_the_loaded_unet(host):
    assert host.lora_loader.map_lora_upsamplers() is True
    assert convert(host, SDXL_LAYERS, KEY) == "diffusion_model_output_blocks_2_2_conv"


def test_names_the_host_maps_are_never_changed(host):
    host.lora_loader.map_lora_upsamplers()
    assert convert(host, SD1_LAYERS, KEY) == "diffusion_model_output_blocks_2_1_conv"
    assert convert(host, SDXL_LAYERS, "lora_unet_up_blocks_1_upsamplers_0_conv") == "diffusion_model_output_blocks_5_2_conv"
    other = "lora_unet_output_blocks_2_1_proj_in"
    assert convert(host, SDXL_LAYERS, other) == a1111_convert(other, False)


def test_the_patch_is_undone_and_never_stacked(host):
    host.lora_loader.map_lora_upsamplers()
    host.lora_loader.map_lora_upsamplers()  # Reload UI: replaced, not wrapped twice
    host.lora_loader.unmap_lora_upsamplers()
    assert host.networks.convert_diffusers_name_to_compvis is a1111_convert
    host.lora_loader.unmap_lora_upsamplers()  # nothing to undo: no error


def test_a_host_without_a1111s_loader_is_left_alone(host):
    del host.networks.convert_diffusers_name_to_compvis  # Forge names modules from the model's own config
    assert host.lora_loader.map_lora_upsamplers() is False


def reforge_stub(key, is_sd2):
    """reForge's `networks.convert_diffusers_name_to_compvis`: kept by name, does nothing."""


def test_reforges_stubs_of_the_a1111_loader_are_left_alone_and_no_module_count_is_read(host, tmp_path):
    # reForge loads LoRAs through ldm_patched: no `module_types`, a no-op name converter, `modules` always empty
    host.networks.convert_diffusers_name_to_compvis = reforge_stub
    del host.networks.module_types
    assert host.lora_loader.map_lora_upsamplers() is False
    assert host.networks.convert_diffusers_name_to_compvis is reforge_stub
    path = lora_file(tmp_path, ["lora_unet_a", KEY])
    loaded(host, path, [])
    p = FakeP()
    host.processing.check_lora_modules(p)
    assert INFOTEXT_WARNING not in p.extra_generation_params


def lora_file(tmp_path, modules):
    import torch

    from tests.fixtures.tiny import save_safetensors

    tensors = {}
    for module in modules:
        tensors[f"{module}.lora_down.weight"] = torch.zeros(1, 2)
        tensors[f"{module}.lora_up.weight"] = torch.zeros(2, 1)
        tensors[f"{module}.alpha"] = torch.tensor(1.0)
    path = tmp_path / "lcm-lora-sdxl.safetensors"
    save_safetensors(tensors, path)
    return path


def loaded(host, path, applied):
    net = types.SimpleNamespace(name="lcm-lora-sdxl", modules=dict.fromkeys(applied),
                                network_on_disk=types.SimpleNamespace(filename=str(path)))
    host.networks.loaded_networks[:] = [net]


def test_a_module_the_host_left_out_is_reported_in_the_infotext_and_once_in_the_console(host, tmp_path, capsys):
    path = lora_file(tmp_path, ["lora_unet_a", "lora_unet_b", KEY])
    loaded(host, path, ["lora_unet_a", "lora_unet_b"])
    for _ in range(2):
        p = FakeP()
        host.processing.check_lora_modules(p)
        assert "applied 2 of the 3 modules of lcm-lora-sdxl" in p.extra_generation_params[INFOTEXT_WARNING]
    assert capsys.readouterr().out.count("applied 2 of the 3 modules") == 1


def test_nothing_is_said_when_every_module_is_applied(host, tmp_path):
    path = lora_file(tmp_path, ["lora_unet_a", KEY])
    loaded(host, path, ["lora_unet_a", KEY])
    p = FakeP()
    host.processing.check_lora_modules(p)
    assert INFOTEXT_WARNING not in p.extra_generation_params

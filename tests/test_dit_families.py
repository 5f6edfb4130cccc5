"""The Forges' model families without an LCM-LoRA (lib_lcm.dit_families and lib_lcm.architecture), against Forge
Neo's own model-detection keys: the released layouts written from Neo's classes and checked by Neo's detection
(tests/fixtures/released_layouts/neo_*.txt), and the marker keys of `detect_unet_config` for the rest. With one
of them loaded, the status line and a generation say that LCM-LoRA is for SD 1.5, SDXL and SSD-1B."""
from __future__ import annotations

import types

import pytest

from lib_lcm import architecture, dit_families
from lib_lcm.architecture import detect_architecture, detect_checkpoint
from tests.fake_webui import fake_webui
from tests.fixtures import dit_layouts, layouts

# Parameter counts (billions, one decimal) of the released diffusion models: the layouts are theirs, not a sketch.
RELEASED_BILLIONS = {
    "flux-dev": 11.9, "flux-schnell": 11.9, "chroma": 8.9, "flux2-klein-4b": 3.9, "lumina2": 2.6, "z-image": 6.2,
    "wan2.1-t2v-1.3b": 1.4, "qwen-image": 20.4, "anima": 2.0,
}


def prefixed(shapes, prefix):
    return {prefix + k: v for k, v in shapes.items()}


@pytest.mark.parametrize("stem", dit_layouts.NEO_FAMILIES)
def test_neos_released_layouts_get_their_family(stem):
    label, _ = dit_layouts.NEO_FAMILIES[stem]
    shapes = dit_layouts.neo_layout(stem)
    assert round(dit_layouts.n_params(shapes) / 1e9, 1) == RELEASED_BILLIONS[stem]
    assert detect_architecture(shapes) == label  # bare keys, as the released files store them
    assert detect_architecture(prefixed(shapes, "model.diffusion_model.")) == label  # an all-in-one file
    with_vae = {**prefixed(shapes, "model.diffusion_model."), "vae.decoder.conv_in.weight": (512, 16, 3, 3)}
    assert detect_architecture(with_vae) == label


def test_every_label_is_declared_and_none_gets_an_lcm_lora():
    from lib_lcm.weights import registry

    labels = {label for label, _ in dit_layouts.NEO_FAMILIES.values()}
    assert labels <= set(dit_families.DIT_FAMILIES) <= set(architecture.ARCHITECTURES)
    shipped = registry.current_registry()
    assert [registry.variant_for_architecture(label, shipped) for label in (*dit_families.DIT_FAMILIES, "mugen")] \
        == [None] * (len(dit_families.DIT_FAMILIES) + 1)


# Neo's marker keys (modules_forge/packages/huggingface_guess/detection.py) for the families and file kinds
# without a layout above; each with the other keys its test reads.
MARKERS = {
    "krea2": {"txtfusion.projector.weight": (3072, 36), "first.weight": (3072, 64)},
    "ernie-image": {"layers.0.mlp.linear_fc2.weight": (3072, 8192)},
    "pid": {"lq_proj.latent_proj.0.weight": (1024, 16, 1, 1)},
    "sd3": {"x_embedder.proj.weight": (1536, 16, 2, 2), "joint_blocks.0.x_block.attn.qkv.weight": (4608, 1536)},
    "flux": {"single_transformer_blocks.0.mlp_fc1.qweight": (3072, 1536)},  # Nunchaku SVDQuant
}


@pytest.mark.parametrize("label", MARKERS)
def test_neos_marker_keys(label):
    assert detect_architecture(MARKERS[label]) == label
    assert detect_architecture(prefixed(MARKERS[label], "model.diffusion_model.")) == label


def test_quantised_and_diffusers_format_flux_and_z_image():
    flux = dit_layouts.neo_layout("flux-dev")
    nf4 = {**flux, "double_blocks.0.img_attn.proj.weight.quant_state.bitsandbytes__nf4": (1,)}
    assert detect_architecture(nf4) == "flux"
    diffusers_flux = {"x_embedder.weight": (3072, 64), "x_embedder.bias": (3072,),
                      "transformer_blocks.0.attn.to_q.weight": (3072, 3072),
                      "single_transformer_blocks.0.proj_out.weight": (3072, 15360)}
    assert detect_architecture(diffusers_flux) == "flux"
    diffusers_z_image = {"noise_refiner.0.attention.norm_k.weight": (128,),
                         "noise_refiner.0.attention.to_k.weight": (3840, 3840)}
    assert detect_architecture(diffusers_z_image) == "z-image"
    # under a UNet prefix a diffusers file is not what Neo converts
    assert detect_architecture(prefixed(diffusers_flux, "model.diffusion_model.")) == "unknown"


def test_the_families_neo_tells_apart_by_their_markers():
    flux = dit_layouts.neo_layout("flux-dev")
    chroma_marker = {**flux, "distilled_guidance_layer.norms.0.scale": (5120,)}
    assert detect_architecture(chroma_marker) == "chroma"  # Chroma's marker wins over Flux's, as in Neo
    no_key_norm = {k: v for k, v in flux.items() if ".norm.key_norm." not in k}
    assert detect_architecture(no_key_norm) == "unknown"  # Neo's Flux test needs the QK-norm key
    lumina = dit_layouts.neo_layout("lumina2")
    other_width = {**lumina, "cap_embedder.1.weight": (3072, 2304)}
    assert detect_architecture(other_width) == "unknown"  # Neo matches Lumina 2 and Z-Image by width alone


def test_mugen_is_sdxls_unet_on_a_32_channel_latent_never_sdxl():
    sdxl = layouts.real_checkpoint_shapes("sdxl")
    mugen = {**sdxl, "model.diffusion_model.input_blocks.0.0.weight": (320, 32, 3, 3),
             "model.diffusion_model.out.2.weight": (32, 320, 3, 3), "model.diffusion_model.out.2.bias": (32,)}
    assert detect_architecture(mugen) == "mugen"
    out_only = {**sdxl, "model.diffusion_model.out.2.weight": (32, 320, 3, 3)}
    assert detect_architecture(out_only) == "mugen"
    sd1 = layouts.real_checkpoint_shapes("sd1")
    assert detect_architecture({**sd1, "model.diffusion_model.out.2.weight": (8, 320, 3, 3)}) == "unknown"
    assert detect_architecture(sdxl) == "sdxl"


def test_a_sparse_checkpoint_is_a_complete_file_read_from_its_header(tmp_path):
    path = dit_layouts.write_sparse_checkpoint(tmp_path / "flux1-dev.safetensors", dit_layouts.neo_layout("flux-dev"))
    assert path.stat().st_size > 23e9 and path.stat().st_blocks * 512 < 10e6
    assert detect_checkpoint(path) == "flux"


# -- what the panel and a generation say ----------------------------------------------------------------------


def loaded(path, **flags):
    info = types.SimpleNamespace(filename=str(path), name_for_extra=path.stem)
    return types.SimpleNamespace(sd_checkpoint_info=info, **flags)


@pytest.mark.parametrize("stem", ["flux-dev", "qwen-image", "wan2.1-t2v-1.3b", "chroma", "lumina2"])
def test_with_such_a_checkpoint_loaded_the_status_and_a_generation_say_what_lcm_lora_is_for(stem, tmp_path):
    path = dit_layouts.write_sparse_checkpoint(tmp_path / f"{stem}.safetensors", dit_layouts.neo_layout(stem))
    label, _ = dit_layouts.NEO_FAMILIES[stem]
    with fake_webui() as host:
        from lib_lcm_webui import checkpoint, processing, status
        from lib_lcm_webui.state import LcmLoraError

        family = architecture.ARCHITECTURE_NAMES[label]
        found = checkpoint.detect_loaded_checkpoint(loaded(path))
        assert (found.architecture, found.variant, found.stem) == (label, None, None)
        assert found.family == family and family != architecture.ARCHITECTURE_NAMES["unknown"]
        line = status.status_html(status.panel_status(loaded(path), tmp_path / "Lora"))
        with pytest.raises(LcmLoraError) as raised:
            processing.supported_checkpoint(loaded(path))
        del host
    assert f"({family})" in line and 'data-lcm-stem=""' in line
    assert "not supported for this model" in line and "SD 1.5, SDXL and SSD-1B" in line
    assert f"'{stem}' is {family}; LCM-LoRA exists for SD 1.5, SDXL and SSD-1B" in str(raised.value)


def test_a_headerless_file_takes_the_family_of_the_hosts_own_detection(tmp_path):
    """A .gguf (Neo loads them) has no safetensors header: Neo's `sd_model.model_config` (its guess's class) names
    the family, before the A1111 flags, which Neo's Mugen engine sets to `is_sdxl`."""
    with fake_webui():
        from lib_lcm_webui import checkpoint

        def engine(config_class, **flags):
            model = loaded(tmp_path / "model.gguf", **flags)
            model.model_config = type(config_class, (), {})()
            return checkpoint.detect_loaded_checkpoint(model)

        assert engine("Mugen", is_sdxl=True).architecture == "mugen"
        assert engine("Flux").architecture == "flux" and engine("QwenImage").variant is None
        assert (engine("SDXL", is_sdxl=True).architecture, engine("SDXL", is_sdxl=True).variant) == ("sdxl", "sdxl")
        assert engine("SD15", is_sd1=True).variant == "sd15"

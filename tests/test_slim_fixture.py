"""The bench's slim model: SD1.5's UNet, detected as SD1.5, with an LCM-LoRA that fits it.

Only layouts are checked here (the 1.8 GB file is built by bench/, not by the test suite)."""
from __future__ import annotations

from lib_lcm.architecture import detect_architecture
from lib_lcm.weights.registry import default_registry_path, load_registry, variant_for_architecture
from tests.fixtures import layouts, slim


def test_slim_model_is_detected_as_sd15_and_gets_the_sd15_lora():
    shapes = layouts.checkpoint_shapes(slim.slim_layout(real_clip=False, real_vae=False))
    assert detect_architecture(shapes) == "sd1"
    assert variant_for_architecture("sd1", load_registry(default_registry_path())) == "sd15"


def test_slim_unet_is_sd15s_and_its_lora_has_the_released_rank():
    assert slim.SLIM_SD15_UNET == layouts.SD15_UNET
    assert slim.LCM_LORA_RANK == 64


def test_slim_text_encoder_is_clip_l_wide_so_the_unet_cross_attention_fits():
    layout = slim.slim_layout(real_clip=False, real_vae=False)
    assert layout.clip_l.hidden_size == layout.unet.context_dim == 768


def test_real_clip_has_clip_ls_full_shapes_for_hosts_that_build_it_from_their_own_config():
    """Forge builds CLIP-L (vocabulary 49408) itself and refused the tiny-vocabulary embedding."""
    layout = slim.slim_layout(real_clip=True, real_vae=True)
    assert layout.clip_l == layouts.CLIP_L
    shapes = layouts.checkpoint_shapes(layout)
    assert shapes["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] == (49408, 768)

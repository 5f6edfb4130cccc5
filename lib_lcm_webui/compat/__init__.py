"""What differs between the hosts we support (A1111 1.6.0 - 1.10.1, Forge 2.x, reForge, Forge Classic, Forge Neo),
and the host tricks, filed by topic:

- `forge`: the Forges' sampling module, CFG denoiser, UNet patcher, hires CFG and placeholder model.
- `cfg_skip`: one UNet row per step at CFG 1 on A1111, through the host's own uncond-skip path.
- `lora_loader`: the built-in Lora extension (SDXL's up-block upsamplers it drops; modules it applied).
- `sampler_api`: the sampler API by A1111 release (1.6 extra noise, 1.8 `add_infotext`, 1.9 schedule types).
- `taesd`: the host's TAESD decoder, for Live's fast decode.
- `temp_dir`: the folder the host writes unsaved images (Live's) to, missing on a fresh Forge Neo data dir.
- `host_page`: the host's page seen from Python: its controls' element ids, its Generate event (gradio 3.41 / 4).

Each feature-tests (hasattr, a guarded import) rather than comparing version strings, so forks that backport a
feature get it too. Host differences that belong to one caller live with it: `InputAccordion` (1.6+) in `panel`,
the 1.6 infotext key pattern in `processing`, `Options.add_option`'s 1.6 default in `settings`.
"""

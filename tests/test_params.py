"""The parameter table and the script-argument parser (API positional order, dict form, clear errors)."""
import pytest

from lib_lcm.params import PARAM_KEYS, PARAMS, SettingsError, parse_script_args


def test_positional_order_is_the_public_api_order():
    # Live's fields were appended: every earlier position is unchanged for existing callers.
    assert PARAM_KEYS == ("enabled", "steps", "cfg_scale", "weight", "mode", "gamma", "live", "fast_decode",
                          "live_seed", "family")


def test_defaults_match_the_table_and_are_off():
    settings = parse_script_args([])
    assert settings.as_dict() == {p.key: p.default for p in PARAMS}
    assert settings.enabled is False


def test_positional_and_dict_forms_agree():
    positional = parse_script_args([True, 6, 1.5, 0.8, "TCD", 0.5])
    keyword = parse_script_args([{"gamma": 0.5, "mode": "tcd", "weight": 0.8, "cfg_scale": 1.5, "steps": 6,
                                  "enabled": True}])
    assert positional == keyword
    assert positional.mode == "TCD"


def test_dict_form_ignores_the_defaults_the_api_fills_in_after_it():
    # The WebUI's API pads a script's args with the UI defaults; with a dict first, those are not the user's.
    settings = parse_script_args([{"enabled": True, "steps": 6}, False, 4, 1.0, 1.0, "LCM", 0.3])
    assert settings.enabled is True and settings.steps == 6


def test_partial_positional_args_fill_from_defaults():
    settings = parse_script_args([True, 8], defaults={"cfg_scale": 1.2, "weight": 0.9})
    assert (settings.steps, settings.cfg_scale, settings.weight) == (8, 1.2, 0.9)


def test_numbers_as_strings_and_whole_floats_are_accepted():
    settings = parse_script_args([{"enabled": "true", "steps": "4", "cfg_scale": "1.0"}])
    assert settings.enabled is True and settings.steps == 4 and isinstance(settings.steps, int)
    assert parse_script_args([True, 4.0]).steps == 4


@pytest.mark.parametrize(
    "args, fragment",
    [
        ([{"stepz": 4}], "unknown argument(s) stepz"),
        ([True, 0], "'steps' = 0 is outside 1..16"),
        ([True, 17], "outside 1..16"),
        ([True, 4.5], "whole number"),
        ([True, 4, "abc"], "'cfg_scale' must be a number"),
        ([True, 4, float("nan")], "NaN"),
        ([True, 4, 1.0, 1.0, "DDIM"], "'mode' must be one of LCM, TCD"),
        (["maybe"], "'enabled' must be true or false"),
        ([True, 4, 1.0, 1.0, "LCM", 0.3, False, True, -1, "lcm", "extra"], "expected at most 10"),
        ([{"family": "turbo"}], "'family' must be one of lcm, tcd, hyper, hyper-cfg, lightning, dmd2, got 'turbo'"),
        ([True, None], "'steps' must be a number"),
    ],
)
def test_bad_arguments_name_the_argument_and_the_allowed_values(args, fragment):
    with pytest.raises(SettingsError) as info:
        parse_script_args(args)
    assert fragment in str(info.value)
    assert str(info.value).startswith("LCM-LoRA:")


def test_guard_rail_warnings_only_when_enabled_and_outside_the_useful_range():
    assert parse_script_args([True, 4, 2.0]).warnings == ()
    warned = parse_script_args([True, 12, 2.5])
    assert len(warned.warnings) == 2
    assert "CFG 2.5 > 2" in warned.warnings[0] and "12 steps > 8" in warned.warnings[1]
    assert parse_script_args([False, 12, 2.5]).warnings == ()


def test_cfg_reaches_the_model_cards_inpainting_guidance_4_with_the_guard_rail_warning():
    settings = parse_script_args([{"enabled": True, "steps": 4, "cfg_scale": 4}])
    assert settings.cfg_scale == 4.0 and settings.warnings == ("CFG 4 > 2 over-saturates LCM-LoRA images; use 1-2",)
    # Up to 8 for Hyper-SD's CFG-preserving files (their card: 5-8).
    with pytest.raises(SettingsError, match="'cfg_scale' = 8.1 is outside 1..8"):
        parse_script_args([{"enabled": True, "cfg_scale": 8.1}])


def test_settings_hold_exactly_the_tables_keys_and_defaults():
    from dataclasses import fields

    from lib_lcm.params import DEFAULTS, LcmSettings

    assert tuple(f.name for f in fields(LcmSettings) if f.name != "warnings") == PARAM_KEYS
    assert LcmSettings().as_dict() == DEFAULTS


def test_each_mode_runs_its_own_sampler_never_the_hosts_lcm():
    from lib_lcm.params import MODES, SAMPLER_NAMES, LcmSettings

    names = [LcmSettings(mode=mode).sampler_name for mode in MODES]
    assert names == list(SAMPLER_NAMES)[:2] and "LCM" not in SAMPLER_NAMES and len(set(names)) == len(MODES)
    assert len(set(SAMPLER_NAMES)) == len(SAMPLER_NAMES) == 5


def test_the_six_positional_args_of_earlier_callers_still_parse_with_live_off():
    settings = parse_script_args([True, 6, 1.5, 0.8, "TCD", 0.5])
    assert (settings.steps, settings.mode, settings.live, settings.fast_decode, settings.live_seed) == (
        6, "TCD", False, True, -1)


def test_the_dict_form_takes_the_live_fields_and_live_implies_enabled():
    settings = parse_script_args([{"live": True, "fast_decode": False, "live_seed": 4294967295}])
    assert (settings.enabled, settings.live, settings.fast_decode, settings.live_seed) == (True, True, False, 2**32 - 1)
    assert parse_script_args([{"enabled": True}]).live is False


@pytest.mark.parametrize("bad, fragment", [({"live_seed": -2}, "outside -1..4294967295"),
                                           ({"live_seed": 2**32}, "outside -1..4294967295"),
                                           ({"live_seed": 1.5}, "whole number"),
                                           ({"live": "sometimes"}, "'live' must be true or false")])
def test_bad_live_fields_name_the_field(bad, fragment):
    with pytest.raises(SettingsError) as info:
        parse_script_args([bad])
    assert fragment in str(info.value)

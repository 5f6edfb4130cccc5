"""The LCM-LoRA panel's parameters: one table for the panel, infotext, paste fields, the API, XYZ axes and the
settings page's defaults; the sampler names each mode and each recipe runs.

The order of PARAMS is public API: `alwayson_scripts["LCM-LoRA"]["args"]` is positional in this order.
API users may instead pass one dict as the first arg (`"args": [{"enabled": true, "steps": 6}]`), which is immune to
controls added later.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from lib_lcm.families import DEFAULT_FAMILY, FAMILIES, FAMILIES_BY_KEY, FAMILY_DEFAULTS, FAMILY_KEYS

MODES = ("LCM", "TCD")
SCRIPT_TITLE = "LCM-LoRA"
ELEM_PREFIX = "lcm_lora"

# The samplers each mode runs. Never "LCM": that is the host's own (1.8+), and a duplicate name breaks the
# sampler look-up (sd-webui-animatediff#413 shows what a duplicate does).
SAMPLER_LCM = "LCM-LoRA"
SAMPLER_TCD = "LCM-LoRA TCD"
SAMPLERS_BY_MODE = {"LCM": SAMPLER_LCM, "TCD": SAMPLER_TCD}
# The sampler of each reference recipe (lib_lcm.recipes.RECIPES): the LCM-LoRA family's runs by mode.
SAMPLERS_BY_RECIPE = {
    "lcm": SAMPLER_LCM,
    "tcd": SAMPLER_TCD,
    "tcd-eta1": SAMPLER_TCD,
    "ddim-trailing": "LCM-LoRA DDIM trailing",
    "euler-trailing": "LCM-LoRA Euler trailing",
    "lcm-trailing": "LCM-LoRA LCM trailing",
}
SAMPLER_NAMES = tuple(dict.fromkeys(SAMPLERS_BY_RECIPE.values()))


@dataclass(frozen=True)
class Param:
    key: str
    label: str
    default: object
    kind: type
    infotext: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple = ()
    info: str = ""
    setting: str | None = None  # the settings page's option holding this parameter's default
    setting_label: str = ""
    axis: str | None = None  # the X/Y/Z plot's axis label for this parameter
    labels: tuple = ()  # what the panel shows for each of `choices` (accepted as input too)


PARAMS = (
    Param("enabled", "Enable LCM-LoRA", False, bool, infotext=None),
    Param("steps", "Steps", 4, int, infotext=None, minimum=1, maximum=16, step=1,
          info="2-8 is the useful range; 4 is the reference setting",
          setting="lcm_lora_steps", setting_label="Default LCM steps", axis="LCM-LoRA steps"),
    # Up to 8: Hyper-SD's CFG-preserving files run at 5-8 (their card); LCM-LoRA's own card goes to 4 (inpainting).
    # The guard rail warns outside each family's range (LCM-LoRA: above 2, where text-to-image over-saturates).
    Param("cfg_scale", "CFG", 1.0, float, infotext=None, minimum=1.0, maximum=8.0, step=0.1,
          info="1 = fastest, negative prompt ignored",
          setting="lcm_lora_cfg_scale", setting_label="Default LCM CFG (1 = fastest, negative prompt ignored)"),
    Param("weight", "LoRA weight", 1.0, float, infotext="LCM-LoRA weight", minimum=0.0, maximum=2.0, step=0.05,
          setting="lcm_lora_weight", setting_label="Default LCM-LoRA weight", axis="LCM-LoRA weight"),
    Param("mode", "Sampler", "LCM", str, infotext="LCM-LoRA mode", choices=MODES,
          setting="lcm_lora_mode", setting_label="Default sampler mode", axis="LCM-LoRA mode"),
    Param("gamma", "TCD gamma", 0.3, float, infotext="TCD gamma", minimum=0.0, maximum=1.0, step=0.05,
          info="TCD stochasticity: 0 = deterministic, 1 = fully stochastic",
          setting="lcm_lora_tcd_gamma", setting_label="TCD gamma (used by the 'LCM-LoRA TCD' sampler)",
          axis="LCM-LoRA TCD gamma"),
    # Live (appended: the positional order above is public). The panel's Live switch is page state; what reaches
    # the server is whether this request is a live one, its decoder and the seed Live drew for a seed of -1.
    Param("live", "Live generation", False, bool,
          info="a live image: not saved, batch size 1, no per-step previews; implies enabled"),
    Param("fast_decode", "Fast decode (TAESD)", True, bool,
          info="live images decode with the WebUI's TAESD decoder (faster, a little less detail)"),
    Param("live_seed", "Live seed", -1, int, minimum=-1, maximum=2**32 - 1, step=1,
          info="the seed a live image uses when the seed is -1 (random)"),
    # The few-step family (appended: positional callers are unchanged). Its file and sampler follow from the
    # loaded checkpoint and the step count (lib_lcm.weights.catalogue.select_entry); "mode" is LCM-LoRA's only.
    Param("family", "Family", DEFAULT_FAMILY, str, infotext="LCM-LoRA family", choices=FAMILY_KEYS,
          labels=tuple(family.label for family in FAMILIES), axis="LCM-LoRA family",
          info="each family runs the sampler its model card runs; picking one sets its steps, CFG and weight"),
)
PARAM_KEYS = tuple(p.key for p in PARAMS)
PARAMS_BY_KEY = {p.key: p for p in PARAMS}
DEFAULTS = {p.key: p.default for p in PARAMS}

# Infotext key whose presence means "LCM-LoRA was on"; its value is the LoRA file stem used.
INFOTEXT_VARIANT = "LCM-LoRA"
INFOTEXT_WARNING = "LCM-LoRA warning"


class SettingsError(ValueError):
    """Bad arguments for the LCM-LoRA script, with a message naming the fix."""


@dataclass(frozen=True)
class LcmSettings:
    """Validated values of PARAMS (same keys, defaults from the table) and the guard-rail warnings."""

    enabled: bool = DEFAULTS["enabled"]
    steps: int = DEFAULTS["steps"]
    cfg_scale: float = DEFAULTS["cfg_scale"]
    weight: float = DEFAULTS["weight"]
    mode: str = DEFAULTS["mode"]
    gamma: float = DEFAULTS["gamma"]
    live: bool = DEFAULTS["live"]
    fast_decode: bool = DEFAULTS["fast_decode"]
    live_seed: int = DEFAULTS["live_seed"]
    family: str = DEFAULTS["family"]
    warnings: tuple = field(default=(), compare=False)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "warnings"}

    @property
    def sampler_name(self) -> str:
        """The LCM-LoRA family's sampler (by mode); the other families' follows from their file's recipe."""
        return SAMPLERS_BY_MODE[self.mode]

    @property
    def is_lcm(self) -> bool:
        return self.family == DEFAULT_FAMILY



def _bound(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def _coerce(param: Param, value):
    if param.kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            return value.strip().lower() in ("true", "1", "yes", "on")
        raise SettingsError(f"LCM-LoRA: '{param.key}' must be true or false, got {value!r}")
    if param.kind is str:
        text = str(value).strip()
        for choice, label in zip(param.choices, param.labels or param.choices, strict=True):
            if text.lower() in (choice.lower(), label.lower()):
                return choice
        raise SettingsError(f"LCM-LoRA: '{param.key}' must be one of {', '.join(param.choices)}, got {value!r}")
    if isinstance(value, bool) or value is None:
        raise SettingsError(f"LCM-LoRA: '{param.key}' must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SettingsError(f"LCM-LoRA: '{param.key}' must be a number, got {value!r}") from None
    if number != number:  # NaN
        raise SettingsError(f"LCM-LoRA: '{param.key}' must be a number, got NaN")
    if param.kind is int:
        if number != int(number):
            raise SettingsError(f"LCM-LoRA: '{param.key}' must be a whole number, got {value!r}")
        number = int(number)
    if (param.minimum is not None and number < param.minimum) or (
        param.maximum is not None and number > param.maximum
    ):
        raise SettingsError(
            f"LCM-LoRA: '{param.key}' = {value!r} is outside {_bound(param.minimum)}..{_bound(param.maximum)}"
        )
    return number


def parse_script_args(args, defaults: dict | None = None) -> LcmSettings:
    """Turn the script's args (positional values in PARAMS order, or one dict) into validated settings.

    `defaults` (e.g. from the WebUI's settings page) fill what the caller left out.
    Raises SettingsError with a message that names the bad argument and the allowed values.
    """
    base = dict(DEFAULTS)
    if defaults:
        base.update({k: v for k, v in defaults.items() if k in base})
    args = list(args or ())
    if args and isinstance(args[0], dict):
        # The API fills the positions after a dict with the panel's defaults: the dict alone speaks.
        given = dict(args[0])
        unknown = sorted(set(given) - set(PARAM_KEYS))
        if unknown:
            raise SettingsError(
                f"LCM-LoRA: unknown argument(s) {', '.join(unknown)}; known: {', '.join(PARAM_KEYS)}"
            )
    else:
        if len(args) > len(PARAMS):
            raise SettingsError(
                f"LCM-LoRA: got {len(args)} positional args, expected at most {len(PARAMS)} "
                f"({', '.join(PARAM_KEYS)}), or one dict"
            )
        given = dict(zip(PARAM_KEYS, args, strict=False))
    family = _coerce(PARAMS_BY_KEY["family"], given.get("family", base["family"]))
    if family != DEFAULT_FAMILY:
        # What the caller left out comes from the family (its model card), not from LCM-LoRA's settings page.
        base.update({key: getattr(FAMILIES_BY_KEY[family], key) for key in FAMILY_DEFAULTS})
    values = {p.key: _coerce(p, given.get(p.key, base[p.key])) for p in PARAMS}
    if values["live"]:
        values["enabled"] = True  # a live image is an LCM-LoRA image: Live switches the panel on
    warnings = _guard_rail_warnings(values) if values["enabled"] else ()
    return LcmSettings(**values, warnings=tuple(warnings))


def _guard_rail_warnings(values: dict) -> list[str]:
    """CFG (and for LCM-LoRA, steps) outside what the family's files were distilled for. The other families' step
    counts are checked against the file the loaded checkpoint gets (lib_lcm.weights.catalogue.steps_warning)."""
    cfg, steps = values["cfg_scale"], values["steps"]
    if values["family"] == DEFAULT_FAMILY:
        warnings = []
        if cfg > 2:
            warnings.append(f"CFG {cfg:g} > 2 over-saturates LCM-LoRA images; use 1-2")
        if steps > 8:
            warnings.append(f"{steps} steps > 8 adds time but little quality with LCM-LoRA; use 2-8")
        return warnings
    family = FAMILIES_BY_KEY[values["family"]]
    low, high = family.cfg_range
    if low <= cfg <= high:
        return []
    return [f"CFG {cfg:g} is outside the {low:g}-{high:g} {family.label} was distilled for; use {family.cfg_scale:g}"]

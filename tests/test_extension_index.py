"""The extension-index entry and metadata.ini, checked the way the index's CI and the WebUI read them.

Rules from AUTOMATIC1111/stable-diffusion-webui-extensions `.github/scripts/validate.py` (entry keys, tags from
`tags.json`, URL pattern) and A1111 1.10 `modules/extensions.py` (metadata.ini parsing).
"""
from __future__ import annotations

import configparser
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENTRY = ROOT / "extension-index.json"

# The index's tags.json keys; "installed" is reserved for the WebUI's own use.
INDEX_TAGS = {"script", "localization", "tab", "dropdown", "ads", "installed", "training", "models", "UI related",
              "prompting", "editing", "manipulations", "online", "animation", "query", "science", "extras"}
INDEX_URL = re.compile(r"(https://[^ ]+?)(?:(?:\.git)$|$)")  # validate.py's git_url_pattern
TAKEN_NAMES = {"Latent Consistency Models"}  # 0xbitches/sd-webui-lcm, already in the index


def entry() -> dict:
    return json.loads(ENTRY.read_text(encoding="utf-8"))


def test_entry_has_the_index_keys_and_valid_tags():
    data = entry()
    assert {"name", "url", "description", "tags"} <= set(data)
    assert data["tags"] and set(data["tags"]) <= INDEX_TAGS - {"installed"}
    assert "added" not in data  # filled in by the index after the merge
    assert data["name"] not in TAKEN_NAMES
    assert 20 <= len(data["description"]) <= 300 and data["description"].isascii()


def test_entry_url_passes_the_index_check_and_names_the_repository():
    url = entry()["url"]
    assert INDEX_URL.match(url)
    assert url.rstrip("/").removesuffix(".git").rsplit("/", 1)[-1] == "sd-webui-lcm-lora"


def test_readme_install_section_uses_the_entry_url():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    install = readme.split("## Install", 1)[1].split("\n## ", 1)[0]
    assert entry()["url"] in install


def test_metadata_ini_names_the_extension_and_nothing_the_webui_would_misread():
    config = configparser.ConfigParser()
    assert config.read(ROOT / "metadata.ini", encoding="utf-8")
    assert config.get("Extension", "Name") == "sd-webui-lcm-lora"
    # 1.10 lower-cases Requires but keys built-in extensions by folder name ("Lora"): it would never resolve.
    assert not config.get("Extension", "Requires", fallback="").strip()
    # Callback-order sections must start with the install folder's name, which users may choose.
    assert not [s for s in config.sections() if s.startswith("callbacks/")]

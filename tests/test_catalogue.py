"""The catalogue (issue 25): every few-step LoRA file in the registry, the family/step rule that picks one, hash
recognition, the download modes and `python -m lib_lcm download --family ... --steps ...`."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys

import pytest

from lib_lcm.architecture import architecture_name
from lib_lcm.families import FAMILIES, FAMILY_KEYS, family_key
from lib_lcm.recipes import RECIPES
from lib_lcm.weights import catalogue
from lib_lcm.weights import registry as reg
from lib_lcm.weights.errors import WeightsRegistryError
from lib_lcm.weights.verification import verify_file
from tests.fakehub import FakeHub, lora_bytes, registry_json
from tests.test_download import ROOT, Site

# Issue 25's table, each line confirmed from the repository's own commit record or file page (see FILE_SOURCES).
# (variant, family, repo, file, bytes or None, sha256, distilled steps, recipe)
FILES = [
    ("tcd-sd15", "tcd", "h1t/TCD-SD15-LoRA", "pytorch_lora_weights", None,
     "eaecb24a1cda4411eab67275b1d991071216ac93693e8fa0c9226c9df0386232", (4, 50), "tcd"),
    ("tcd-sdxl", "tcd", "h1t/TCD-SDXL-LoRA", "pytorch_lora_weights", 393854624,
     "2c777bc60abf41d3eb0fe405d23d73c280a020eea5adf97a82a141592c33feba", (4, 50), "tcd"),
    ("hyper-sd15-1step", "hyper", "ByteDance/Hyper-SD", "Hyper-SD15-1step-lora", 269127096,
     "a04fd9a535c1e56d38f7590ee72a13fd5ca0409853b4fff021e5a9482cf1ca3b", (1, 8), "tcd-eta1"),
    ("hyper-sd15-2step", "hyper", "ByteDance/Hyper-SD", "Hyper-SD15-2steps-lora", 269127064,
     "2f26dcc1d883feb07557a552315baae2ca2a04ac08556b08a355a244547e8c3a", (2, 2), "ddim-trailing"),
    ("hyper-sd15-4step", "hyper", "ByteDance/Hyper-SD", "Hyper-SD15-4steps-lora", 269127064,
     "c5dd058616461ed5053e2b14eec4dbe3fa0eea3b13688642f6d6c80ea2ba5958", (4, 4), "ddim-trailing"),
    ("hyper-sd15-8step", "hyper", "ByteDance/Hyper-SD", "Hyper-SD15-8steps-lora", 269127064,
     "91fc3186236e956d64dbb4357f2e120c69b968b78af7d2db9884a5ca74d3cd13", (8, 8), "ddim-trailing"),
    ("hyper-sdxl-1step", "hyper", "ByteDance/Hyper-SD", "Hyper-SDXL-1step-lora", 787359648,
     "c912df184c5116792d2c604d26c6bc2aa916685f4a793755255cda1c43a3c78a", (1, 8), "tcd-eta1"),
    ("hyper-sdxl-2step", "hyper", "ByteDance/Hyper-SD", "Hyper-SDXL-2steps-lora", 787359648,
     "69b25c0187ced301c3603c599c0bc509ac99b8ac34db89a2aecc3d5f77a35187", (2, 2), "ddim-trailing"),
    ("hyper-sdxl-4step", "hyper", "ByteDance/Hyper-SD", "Hyper-SDXL-4steps-lora", 787359648,
     "12f81a27d00a751a40d68fd15597091896c5a90f3bd632fb6c475607cbdad76e", (4, 4), "ddim-trailing"),
    ("hyper-sdxl-8step", "hyper", "ByteDance/Hyper-SD", "Hyper-SDXL-8steps-lora", 787359648,
     "ca689190e8c46038550384b5675488526cfe5a40d35f82b27acb75c100f417c1", (8, 8), "ddim-trailing"),
    ("hyper-sd15-8step-cfg", "hyper-cfg", "ByteDance/Hyper-SD", "Hyper-SD15-8steps-CFG-lora", 269127064,
     "f6123d5b950d5250ab6c33600e27f4dcf71b3099ebf888685e01e9e8117ce482", (8, 8), "ddim-trailing"),
    ("hyper-sd15-12step-cfg", "hyper-cfg", "ByteDance/Hyper-SD", "Hyper-SD15-12steps-CFG-lora", 269127064,
     "64b98437383537cd968fda6f87a05c33160ece9c79ff4757949a1e212ff78361", (12, 12), "ddim-trailing"),
    ("hyper-sdxl-8step-cfg", "hyper-cfg", "ByteDance/Hyper-SD", "Hyper-SDXL-8steps-CFG-lora", 787359648,
     "55b51334c85061afff5eff7c550b61963c8b8607a5868bbe4f26db49374719b1", (8, 8), "ddim-trailing"),
    ("hyper-sdxl-12step-cfg", "hyper-cfg", "ByteDance/Hyper-SD", "Hyper-SDXL-12steps-CFG-lora", 787359648,
     "0b97f447b5878323a28fbe7c51ba7acebd21f4d77552ba77b04b11c8911825b6", (12, 12), "ddim-trailing"),
    ("lightning-sdxl-2step", "lightning", "ByteDance/SDXL-Lightning", "sdxl_lightning_2step_lora", None,
     "04fafc778385b24144498a8247498ae4fb7a69f702ea0566bdce2845a31fcc43", (2, 2), "euler-trailing"),
    ("lightning-sdxl-4step", "lightning", "ByteDance/SDXL-Lightning", "sdxl_lightning_4step_lora", 393854592,
     "bf56cf2657efb15e465d81402ed481d1e11c4677e4bcce1bc11fe71ad8506b79", (4, 4), "euler-trailing"),
    ("lightning-sdxl-8step", "lightning", "ByteDance/SDXL-Lightning", "sdxl_lightning_8step_lora", 393854592,
     "5aa30d94cdf7950a8b53a693682650ee061eddb128c5435a8f88defea73b2ac6", (8, 8), "euler-trailing"),
    ("dmd2-sdxl-4step", "dmd2", "tianweiy/DMD2", "dmd2_sdxl_4step_lora_fp16", 393854592,
     "b3d9173815a4b595991c3a7a0e0e63ad821080f314a0b2a3cc31ecd7fcf2cbb8", (4, 4), "lcm-trailing"),
    ("dmd2-sdxl-4step-fp32", "dmd2", "tianweiy/DMD2", "dmd2_sdxl_4step_lora", 787359616,
     "a374289e9446d7f14d2037c4b3770756b7b52c292142a691377c3c755010a1bb", (4, 4), "lcm-trailing"),
]
# Where each pinned revision was read: the commit that added the files (Hyper-SD: the merge of #33 on main, after
# every Hyper-SD LoRA was uploaded), the tree page listing them (Lightning, TCD-SDXL), "fix lora ckpt" (DMD2).
REVISIONS = {
    "ByteDance/Hyper-SD": "5d51e0568200c05e254120578e0d674ba456a0e9",
    "ByteDance/SDXL-Lightning": "c9a24f48e1c025556787b0c58dd67a091ece2e44",
    "tianweiy/DMD2": "19179ac8ee169bfc4420e0877aac7ab952d5a6fa",
    "h1t/TCD-SDXL-LoRA": "94ba1b72498086879251a157d85f80431f2e08a6",
    "h1t/TCD-SD15-LoRA": "main",
}
# Recorded, never called verified: what could not be confirmed in full (like SSD-1B's entry).
NOT_VERIFIED = {"ssd1b", "tcd-sd15", "lightning-sdxl-2step"}
DMD2_OLD = {"dmd2-sdxl-4step": ("7de75d21cb3f04bc3e734424157b2c3b799b862069c8dd9f4ad76fe66c57ba7c", 393736496),
            "dmd2-sdxl-4step-fp32": ("dd3dfdd1f212798b86100e029606d60c53a52b76a19d1f024acdf3c50987d581", 787239704)}


@pytest.fixture(scope="module")
def shipped():
    return reg.load_registry(reg.default_registry_path())


def test_every_file_of_the_issue_is_a_catalogue_entry(shipped):
    assert [variant for variant, entry in shipped.items() if entry.family != "lcm"] == [row[0] for row in FILES]
    for variant, family, repo, stem, size, sha256, steps, recipe in FILES:
        entry = shipped[variant]
        assert (entry.family, entry.repo_id, entry.size, entry.sha256, entry.steps, entry.recipe) == (
            family, repo, size, sha256, steps, recipe), variant
        assert entry.revision == REVISIONS[repo]
        assert entry.filename == ("pytorch_lora_weights.safetensors" if repo.startswith("h1t/") else f"{stem}.safetensors")
        assert entry.stem == ({"tcd-sd15": "tcd-sd15-lora", "tcd-sdxl": "tcd-sdxl-lora"}.get(variant) or stem)
        assert entry.recipe in RECIPES


def test_only_confirmed_files_are_called_verified(shipped):
    assert {variant for variant, entry in shipped.items() if not entry.verified} == NOT_VERIFIED
    for variant in NOT_VERIFIED - {"ssd1b"}:
        entry = shipped[variant]
        # Recorded: the hash read from the repository's own file page is still checked on every download.
        assert entry.sha256 and "not called verified" in entry.note


def test_each_family_has_its_files_and_defaults(shipped):
    for family in FAMILY_KEYS:
        assert catalogue.family_entries(shipped, family), family
    assert catalogue.architectures_of(shipped, "lightning") == ["sdxl", "sdxl-inpaint"]
    assert catalogue.architectures_of(shipped, "dmd2") == ["sdxl", "sdxl-inpaint"]
    assert catalogue.architectures_of(shipped, "hyper")[:2] == ["sd1", "sd1-inpaint"]
    assert RECIPES[shipped["hyper-sdxl-1step"].recipe].gamma == 1.0 and RECIPES[shipped["tcd-sdxl"].recipe].gamma == 0.3
    assert shipped["dmd2-sdxl-4step"].license == "cc-by-nc-4.0"
    for family in FAMILIES:  # the step count a family starts at has a file distilled for it
        for label in catalogue.architectures_of(shipped, family.key):
            entry = catalogue.select_entry(shipped, family.key, label, family.steps)
            assert catalogue.steps_warning(entry, family.steps) is None, (family.key, label)


@pytest.mark.parametrize(("family", "architecture", "steps", "variant", "warns"), [
    ("lightning", "sdxl", 4, "lightning-sdxl-4step", False),
    ("lightning", "sdxl", 6, "lightning-sdxl-4step", True),  # nearest: 4 and 8 tie, registry order
    ("lightning", "sdxl-inpaint", 8, "lightning-sdxl-8step", False),
    ("hyper", "sdxl", 4, "hyper-sdxl-4step", False),  # the exact file before the unified one
    ("hyper", "sd1", 3, "hyper-sd15-1step", False),  # the unified file covers 1-8 steps
    ("hyper", "sd1", 12, "hyper-sd15-8step", True),
    ("hyper-cfg", "sdxl", 12, "hyper-sdxl-12step-cfg", False),
    ("hyper-cfg", "sd1", 10, "hyper-sd15-8step-cfg", True),
    ("dmd2", "sdxl", 4, "dmd2-sdxl-4step", False),  # fp16 first
    ("tcd", "sd1", 4, "tcd-sd15", False),
    ("lcm", "sdxl", 12, "sdxl", False),  # LCM-LoRA's own warning (params) stays its only one
])
def test_select_entry_picks_the_file_for_the_step_count(shipped, family, architecture, steps, variant, warns):
    entry = catalogue.select_entry(shipped, family, architecture, steps)
    assert entry.variant == variant
    warning = catalogue.steps_warning(entry, steps)
    assert bool(warning) == warns
    if warns:
        assert f"{steps} steps" in warning and entry.stem in warning


@pytest.mark.parametrize(("family", "architecture"), [("lightning", "sd1"), ("dmd2", "sd1-inpaint"),
                                                      ("hyper", "ssd1b"), ("tcd", "sd2")])
def test_a_family_without_a_file_for_the_architecture_says_so(shipped, family, architecture):
    name = architecture_name(architecture)  # "SD 1.x", never the label "sd1"
    with pytest.raises(catalogue.NoFileForArchitecture, match=f"has no file for {re.escape(name)} checkpoints") as e:
        catalogue.select_entry(shipped, family, architecture, 4)
    assert "it has files for: " in str(e.value) and "pick another family" in str(e.value)


def test_match_sha256_full_short_and_obsolete(shipped):
    assert catalogue.match_sha256(shipped, FILES[6][5]).entry.variant == "hyper-sdxl-1step"
    assert catalogue.match_sha256(shipped, FILES[6][5][:12].upper()).entry.variant == "hyper-sdxl-1step"
    assert catalogue.match_sha256(shipped, "8f90d840e075").entry.variant == "sd15"
    for variant, (old_sha, _) in DMD2_OLD.items():
        match = catalogue.match_sha256(shipped, old_sha[:12])
        assert match.entry.variant == variant and "fix lora ckpt" in match.message()
        assert "re-download" in match.message()
    assert catalogue.match_sha256(shipped, FILES[6][5][:9]) is None  # too short to trust
    assert catalogue.match_sha256(shipped, "0" * 64) is None and catalogue.match_sha256(shipped, "") is None
    assert catalogue.match_sha256(shipped, FILES[6][5]).message() is None


def test_obsolete_upload_is_named_on_verification(tmp_path):
    old = lora_bytes(2048, seed=9)
    new = lora_bytes(2048, seed=10)
    registry = reg.parse_registry(registry_json({"dmd2": {
        "repo_id": "org/dmd2", "revision": "a" * 40, "size": len(new), "sha256": hashlib.sha256(new).hexdigest(),
        "family": "dmd2", "sd_version": "SDXL", "context_dim": 2048,
        "obsolete": [{"sha256": hashlib.sha256(old).hexdigest(), "size": len(old), "note": "fix lora ckpt"}]}}))
    path = tmp_path / "dmd2.safetensors"
    path.write_bytes(old + b"x")  # an unrelated file of another size: the size check, no hashing needed
    assert verify_file(registry["dmd2"], path).problem.startswith("size is")
    path.write_bytes(old)
    result = verify_file(registry["dmd2"], path)
    assert not result.ok and "earlier upload" in result.problem and "fix lora ckpt" in result.problem
    assert "re-download" in result.problem
    path.write_bytes(new)
    assert verify_file(registry["dmd2"], path).ok


@pytest.mark.parametrize(("raw", "complaint"), [
    ({"family": "turbo"}, "family must be one of lcm, tcd"),
    ({"steps": [8, 4]}, r"steps must be \[low, high\]"),
    ({"steps": 4}, r"steps must be \[low, high\]"),
    ({"recipe": "Euler A"}, "recipe must be a recipe name"),
    ({"obsolete": [{"sha256": "xyz"}]}, "obsolete must be a list"),
])
def test_bad_catalogue_fields_are_named(raw, complaint):
    fields = {"repo_id": "org/repo", "revision": "a" * 40, "size": 1, "sha256": "a" * 64, **raw}
    with pytest.raises(WeightsRegistryError, match=complaint):
        reg.parse_registry(registry_json({"x": fields}))


def test_download_modes_never_fetch_other_families_unasked(shipped):
    assert reg.parse_variants("all", shipped) == ["sd15", "sdxl", "ssd1b"]
    assert reg.parse_variants("auto", shipped) is None
    assert reg.parse_variants("sd15,lightning", shipped) == [
        "sd15", "lightning-sdxl-2step", "lightning-sdxl-4step", "lightning-sdxl-8step"]
    assert reg.parse_variants("catalogue", shipped) == list(shipped)
    with pytest.raises(WeightsRegistryError, match="unknown variant turbo: use auto, all, catalogue, none, a family"):
        reg.parse_variants("turbo", shipped)
    assert reg.variant_for_architecture("sdxl", shipped) == "sdxl"
    assert reg.variant_for_architecture("sdxl", shipped, family="lightning") == "lightning-sdxl-2step"
    assert reg.stems(shipped) == ("lcm-lora-sdv1-5", "lcm-lora-sdxl", "lcm-lora-ssd-1b")
    assert len(reg.stems(shipped, family=None)) == len(shipped)


def test_family_key_reads_keys_and_labels():
    assert family_key("Lightning") == "lightning" and family_key("SDXL-Lightning") == "lightning"
    assert family_key(" hyper-cfg ") == "hyper-cfg" and family_key("Hyper-SD CFG") == "hyper-cfg"
    assert family_key("turbo") is None


@pytest.fixture
def lightning_site(tmp_path):
    """The download tests' fake hub and registry, plus a two-file SDXL-Lightning family."""
    with FakeHub() as hub:
        site = Site(hub, tmp_path)
        site.lora_dir.mkdir(parents=True)
        for steps in (2, 4):
            data = lora_bytes(2048, seed=20 + steps)
            stem = f"sdxl_lightning_{steps}step_lora"
            hosted = hub.add("test-org/lightning", f"{stem}.safetensors", data)
            site.payload[f"lightning-{steps}"] = data
            site.document["variants"][f"lightning-{steps}"] = {
                "repo_id": hosted.repo_id, "filename": f"{stem}.safetensors", "revision": hosted.commit,
                "stem": stem, "size": len(data), "sha256": hosted.sha256, "verified": True, "sd_version": "SDXL",
                "context_dim": 2048, "architectures": ["sdxl"], "family": "lightning", "steps": [steps, steps],
                "recipe": "euler-trailing"}
        site.registry_path.write_text(json.dumps(site.document))
        site.registry = reg.parse_registry(site.document)
        yield site


def run_cli(site, *args):
    return subprocess.run([sys.executable, "-m", "lib_lcm", *args, "--lora-dir", str(site.lora_dir)], cwd=ROOT,
                          env=site.env(), capture_output=True, text=True, timeout=120)


def test_cli_downloads_a_familys_file_for_a_step_count(lightning_site):
    site = lightning_site
    done = run_cli(site, "download", "--family", "lightning", "--steps", "4")
    assert done.returncode == 0, done.stderr
    assert "lightning-4 ready" in done.stdout and "lightning-2" not in done.stdout
    assert site.final("lightning-4").read_bytes() == site.payload["lightning-4"]
    assert not site.final("lightning-2").exists() and not site.final("sd15").exists()
    status = run_cli(site, "status")
    lines = status.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["sd15", "sdxl", "ssd1b", "lightning-2", "lightning-4"]
    assert "verified (sha256)" in lines[4] and lines[3].split()[1] == "missing"
    assert status.returncode == 1  # the LCM-LoRA files the exit code covers are missing
    assert run_cli(site, "status", "--family", "lightning", "--steps", "4").returncode == 0


@pytest.mark.parametrize(("args", "words"), [
    (["--family", "lightning", "--arch", "sd1"], "SDXL-Lightning has no file for SD 1.x checkpoints (it has files for: SDXL)"),
    (["--steps", "4"], "--steps and --arch choose among a family's files: add --family"),
    (["--family", "turbo"], "invalid choice: 'turbo'"),
    (["--family", "lightning", "--steps", "0"], "--steps must be at least 1"),
])
def test_cli_family_mistakes_exit_2_with_one_message(lightning_site, args, words):
    done = run_cli(lightning_site, "download", *args)
    assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr
    assert not any(lightning_site.lora_dir.rglob("*.safetensors"))

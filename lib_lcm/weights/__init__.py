"""The LCM-LoRA weights: which files (registry), where they live (lora_files, webui_folders), fetching them with
huggingface_hub (download, lock, hub_env, hub_errors), checking them (verification) and what goes wrong (errors).

Empty on purpose: install.py imports single modules of this package at every WebUI launch and must stay fast."""

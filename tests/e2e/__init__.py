"""End-to-end tests on a real AUTOMATIC1111 WebUI (skipped unless SD_WEBUI_DIR is set)."""

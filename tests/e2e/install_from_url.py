"""Run the WebUI's own "Install from URL" (``modules.ui_extensions.install_extension_from_url``) without its UI.

Usage, from the WebUI checkout with the WebUI's python (flags such as ``--data-dir`` come from
``COMMANDLINE_ARGS``, as with webui-user.sh)::

    python install_from_url.py URL [DIRNAME]

Initialises only what the function needs (the shared options) and prints the WebUI's message. The UI button
cannot be used by the e2e servers: they listen with ``--server-name``, which makes the WebUI treat itself as
non-local and refuse extension installs.
"""
import os
import sys


def main() -> int:
    url = sys.argv[1]
    dirname = sys.argv[2] if len(sys.argv) > 2 else ""
    del sys.argv[1:]  # the WebUI parses sys.argv (+ COMMANDLINE_ARGS) as its own flags on import
    sys.path.insert(0, os.getcwd())

    # Before anything imports gradio: on Forge, gradio imports Forge's spaces.py, which parses the flags
    # (backend.args) before modules.paths_internal has appended COMMANDLINE_ARGS to sys.argv.
    import modules.paths_internal  # noqa: F401

    # The ldm_patched Forges (reForge, Forge Classic) parse their backend flags (--always-cpu) only in
    # initialize_forge(), which their webui.py runs first: before it `modules.shared` asks torch for CUDA.
    try:
        from ldm_patched.modules import args_parser  # noqa: F401
        from modules_forge.initialization import initialize_forge
    except ImportError:
        initialize_forge = None
    if initialize_forge is not None:
        initialize_forge()
    from modules import shared_init

    shared_init.initialize()
    from modules import extensions, ui_extensions

    extensions.list_extensions()
    _, message = ui_extensions.install_extension_from_url(dirname, url)
    print(f"install_extension_from_url: {message}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

/* global gradioApp, opts, module */
// What this extension's page logic knows of the host's page (A1111 1.6-1.10, the Forges; gradio 3.41 and 4): its
// element ids, the text of its infotext, its submit functions and progress bar, its options and Forge's top bar.
// One home for it, as lib_lcm_webui/compat/host_page.py is on the Python side; lcm_lora_panel.js and
// lcm_lora_live.js ask here. The host's globals are read when called, never when this file loads.

var lcmLoraHost = (function() {
    "use strict";

    function element(id) {
        return gradioApp().getElementById(id);
    }

    function hostFunction(name) {
        var fn = globalThis[name];
        if (typeof fn !== "function") throw new Error("LCM-LoRA: the WebUI has no page function " + name);
        return fn;
    }

    // The infotext's text is in the HTML block's inner .prose element: gradio 3.41 gives that element the block's
    // id too, gradio 4 (Forge) only the outer block.
    function infotext(tab) {
        var app = gradioApp();
        var prose = app.querySelector(".prose#html_info_" + tab) || app.querySelector("#html_info_" + tab + " .prose");
        return prose ? prose.innerText || "" : "";
    }

    // How the image on screen was decoded: "TAESD", "full", or null while there is no image's infotext.
    function decoder(tab) {
        var text = infotext(tab);
        if (!/Steps:/.test(text)) return null;
        return /VAE Decoder: TAESD/.test(text) ? "TAESD" : "full";
    }

    function click(id) {
        var button = element(id);
        if (button) button.click();
        return Boolean(button);
    }

    // Run the host's own submit function of the tab's Generate event (`name`, e.g. "submit"; it picks the task id
    // and whatever else the host's request needs, such as img2img's mode on A1111) on the event's arguments, minus
    // what it does for a click that a live image does not need: its progress polling (kept, to be started later
    // by showRunning when an image is slow), the Interrupt button shown at once, the task id kept for a reload.
    // Returns {args, id, progress}.
    function submitQuietly(tab, name, args) {
        var submit = hostFunction(name);
        var polling = globalThis.requestProgress;
        var progress = null;
        globalThis.requestProgress = function() {
            progress = Array.prototype.slice.call(arguments);
        };
        var result;
        try {
            result = submit.apply(null, args);
        } finally {
            globalThis.requestProgress = polling;
        }
        // Undone in the same task as the host's submit did them: nothing is painted in between.
        showSubmitButtons(tab, true);
        if (typeof globalThis.localRemove === "function") globalThis.localRemove(tab + "_task_id");
        return {args: result, id: result[0], progress: progress, shown: false};
    }

    function showSubmitButtons(tab, show) {
        if (typeof globalThis.showSubmitButtons === "function") globalThis.showSubmitButtons(tab, show);
    }

    // A slow live image shows what a click shows: the host's progress bar (its polling starts now) and its
    // Interrupt button.
    function showRunning(tab, request) {
        if (!request || request.shown || !request.progress) return;
        request.shown = true;
        var args = request.progress.slice();
        args[3] = function() {};  // the host's own end: done by endRunning, when the result arrives
        showSubmitButtons(tab, false);
        hostFunction("requestProgress").apply(null, args);
    }

    // The result is in: the Generate button back, the progress bar hidden (the host removes it at its next poll).
    function endRunning(tab, request) {
        if (!request || !request.shown) return;
        showSubmitButtons(tab, true);
        var container = request.progress[1];  // the host puts its bar just before this element
        var bar = container ? container.previousElementSibling : null;
        if (bar && bar.classList.contains("progressDiv")) bar.style.display = "none";
    }

    function nextFrame() {
        return new Promise(function(resolve) {
            if (typeof requestAnimationFrame === "function") requestAnimationFrame(function() {
                resolve();
            });
            else resolve();
        });
    }

    // Resolves once the gallery shows the result: at the next frame (gradio writes the result into the page after
    // the event's `.then` starts), its shown images loaded and decoded, and the frame after (when they are
    // painted). Hidden and lazy images off screen may never load: they are not waited for.
    function whenPainted(tab) {
        return nextFrame().then(function() {
            var gallery = element(tab + "_gallery");
            var images = gallery ? Array.prototype.slice.call(gallery.querySelectorAll("img")) : [];
            return Promise.all(images.filter(shown).map(function(img) {
                return typeof img.decode === "function" ? img.decode().catch(function() {}) : null;
            }));
        }).then(nextFrame);
    }

    function shown(img) {
        return img.complete || (img.loading !== "lazy" && typeof img.getClientRects === "function" &&
            img.getClientRects().length > 0);
    }

    // The checkpoint in the page's options (A1111's quick setting changes them).
    function checkpoint() {
        return typeof opts === "object" && opts ? opts.sd_model_checkpoint : undefined;
    }

    // Forge 2 picks the checkpoint in its own top bar (the dropdown of class "model_selection"), whose change sets
    // the server's option without updating the page's `opts`.
    function topBarCheckpoint() {
        var app = gradioApp();
        var input = typeof app.querySelector === "function" ? app.querySelector(".model_selection input") : null;
        return input && input.value ? input.value : undefined;
    }

    return Object.freeze({
        element: element,
        infotext: infotext,
        decoder: decoder,
        click: click,
        submitQuietly: submitQuietly,
        showRunning: showRunning,
        endRunning: endRunning,
        whenPainted: whenPainted,
        checkpoint: checkpoint,
        topBarCheckpoint: topBarCheckpoint,
    });
})();

if (typeof module !== "undefined" && module.exports) {
    module.exports = lcmLoraHost;
}

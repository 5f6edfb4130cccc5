// Scenarios for LCM-LoRA Live in a real WebUI page; run by tests/e2e/test_browser_live.py (which judges them) and
// bench/live_latency.py (which prints the figures of "latency").
// Usage: node live.mjs '<json config>'  (url, out, chromium, initImage, outputs: the server's outputs folder,
// scenarios; "latency" reads latency: {repeats, size, typed})
import fs from "node:fs";
import path from "node:path";
import {config, generate, GENERATE_TIMEOUT, infotext, runScenarios, setNumber, setPrompt, STEP_TIMEOUT, switchTab}
    from "./common.mjs";

// 40 characters, typed at 8 characters a second.
const TYPED = " and a dog in the snow at night, 4k phot";
const TYPING_DELAY_MS = 125;

async function api(page, method, route) {
    const response = await page.request[method](new URL(route, config.url).href);
    return response.json();
}

const unetCalls = async (page) => (await api(page, "get", "/lcm-test/v1/unet")).calls;

function outputFiles() {
    if (!config.outputs || !fs.existsSync(config.outputs)) return [];
    return fs.readdirSync(config.outputs, {recursive: true})
        .filter((name) => fs.statSync(path.join(config.outputs, name)).isFile()).sort();
}

const liveStats = (page, tab) => page.evaluate((tab) => lcmLoraLive.stats(tab), tab);

async function openPanel(page, tab) {
    await page.click(`#lcm_lora_${tab}_enabled .label-wrap`);
    await page.waitForFunction((tab) => document.querySelector(`#${tab}_sampling input`)?.value === "LCM-LoRA", tab,
        {timeout: STEP_TIMEOUT});
}

async function setLive(page, tab, on) {
    const box = page.locator(`#lcm_lora_${tab}_live_switch input`);
    if ((await box.isChecked()) !== on) await box.click();
}

// Live has nothing running or waiting, and the infotext shows the prompt in the box (the last edit's image).
async function liveSettled(page, tab) {
    await page.waitForFunction((tab) => {
        const stats = lcmLoraLive.stats(tab);
        const text = (document.querySelector(`.prose#html_info_${tab}`) ??
            document.querySelector(`#html_info_${tab} .prose`))?.innerText ?? "";
        const prompt = document.querySelector(`#${tab}_prompt textarea`)?.value;
        return stats && !stats.running && !stats.dirty && text.includes("Steps:") &&
            text.split("\n")[0].trim() === prompt.trim();
    }, tab, {timeout: GENERATE_TIMEOUT, polling: 50});
    return infotext(page, tab);
}

// Every infotext the page shows from now on, the most generations started but not finished at any moment, when
// each generation started and when each input event of the prompt box came (performance.now() times).
function recordPage(page, tab) {
    return page.evaluate((tab) => {
        const seen = {infotexts: [], maxOutstanding: 0, starts: [], inputs: []};
        window.__lcmLiveRecord = seen;
        const block = document.querySelector(`#html_info_${tab}`);
        new MutationObserver(() => {
            const text = block.innerText;
            if (text.includes("Steps:") && seen.infotexts[seen.infotexts.length - 1] !== text) seen.infotexts.push(text);
        }).observe(block, {subtree: true, childList: true, characterData: true});
        document.querySelector(`#${tab}_prompt textarea`).addEventListener("input", () => {
            seen.inputs.push(performance.now());
        }, {capture: true});
        let generations = lcmLoraLive.stats(tab)?.generations ?? 0;
        clearInterval(window.__lcmLiveRecorder);
        window.__lcmLiveRecorder = setInterval(() => {
            const stats = lcmLoraLive.stats(tab);
            if (!stats) return;
            seen.maxOutstanding = Math.max(seen.maxOutstanding, stats.generations - stats.completed);
            for (; generations < stats.generations; generations++) seen.starts.push(performance.now());
        }, 10);
    }, tab);
}

const recorded = (page) => page.evaluate(() => window.__lcmLiveRecord);

// Installed in the page once: window.__lcmWhenPainted(tab, before, prompt) resolves to performance.now() at the frame
// after a new gallery image (its src not in `before`) is loaded and decoded while the infotext is for `prompt` (its
// first line starts with it; "box": is the prompt box's text then; null: any). It watches mutations and load events,
// not every frame: reading the infotext every frame forces a layout each time and slowed the page it measured.
function installPaintWatch(page) {
    return page.evaluate(() => {
        if (window.__lcmWhenPainted) return;
        window.__lcmGallerySources = (tab) => Array.from(document.querySelectorAll(`#${tab}_gallery img`))
            .map((img) => img.src);
        window.__lcmWhenPainted = (tab, before, prompt) => new Promise((resolve) => {
            const gallery = document.querySelector(`#${tab}_gallery`);
            const info = document.querySelector(`#html_info_${tab}`);
            const box = document.querySelector(`#${tab}_prompt textarea`);
            const old = new Set(before);
            let done = false;
            const check = () => {
                const fresh = Array.from(gallery.querySelectorAll("img"))
                    .find((img) => !old.has(img.src) && img.complete && img.naturalWidth > 0);
                if (done || !fresh) return;
                const text = ((document.querySelector(`.prose#html_info_${tab}`) ?? info.querySelector(".prose"))
                    ?.innerText ?? "").split("\n")[0].trim();
                if (prompt === "box" ? text !== box.value.trim() : prompt !== null && !text.startsWith(prompt.trim())) {
                    return;
                }
                done = true;
                observer.disconnect();
                gallery.removeEventListener("load", check, true);
                fresh.decode().catch(() => {}).then(() => requestAnimationFrame(() => resolve(performance.now())));
            };
            const observer = new MutationObserver(check);
            observer.observe(gallery, {subtree: true, childList: true, attributes: true, attributeFilter: ["src"]});
            observer.observe(info, {subtree: true, childList: true, characterData: true});
            gallery.addEventListener("load", check, true);
            check();
        });
    });
}

// Resolves to when (performance.now()) the gallery first paints a new image whose infotext is for `prompt`.
async function imagePainted(page, tab, prompt) {
    await installPaintWatch(page);
    const before = await page.evaluate((tab) => window.__lcmGallerySources(tab), tab);
    return page.evaluate(([tab, before, prompt]) => window.__lcmWhenPainted(tab, before, prompt), [tab, before, prompt]);
}

// Generate clicked `count` times, each as soon as the previous image is painted: each click's ms to its image.
async function clickBackToBack(page, tab, count) {
    await installPaintWatch(page);
    return page.evaluate(async ([tab, count]) => {
        const times = [];
        for (let i = 0; i < count; i++) {
            const done = window.__lcmWhenPainted(tab, window.__lcmGallerySources(tab), null);
            const clicked = performance.now();
            document.querySelector(`#${tab}_generate`).click();
            times.push(await done - clicked);
        }
        return times;
    }, [tab, count]);
}

// The typing run's times: first and last key as the page received them, the final prompt's image after the last
// key, and the images started before the last key.
function typingTimes(seen, finalPaintedAt) {
    const first = seen.inputs[0];
    const lastKey = seen.inputs[seen.inputs.length - 1];
    return {typingMs: lastKey - first, finalImageMs: finalPaintedAt - lastKey,
        startedWhileTyping: seen.starts.filter((t) => t >= first && t <= lastKey).length};
}

// `edit` changes something Live watches; resolves to the infotext once Live has started an image for it and has
// nothing running or waiting.
async function editAndSettle(page, tab, edit) {
    const started = (await liveStats(page, tab)).generations;
    await edit();
    await page.waitForFunction(([tab, started]) => lcmLoraLive.stats(tab).generations > started, [tab, started],
        {timeout: GENERATE_TIMEOUT});
    return liveSettled(page, tab);
}

async function typeAtEnd(page, tab, text) {
    const box = page.locator(`#${tab}_prompt textarea`);
    await box.click();
    await page.keyboard.press("End");
    await page.keyboard.type(text, {delay: TYPING_DELAY_MS});
}

async function startTxt2imgLive(page, size = 64) {
    const tab = "txt2img";
    await setNumber(page, `${tab}_width`, size);
    await setNumber(page, `${tab}_height`, size);
    await setPrompt(page, tab, "a cat");
    await openPanel(page, tab);
    await setLive(page, tab, true);
    return liveSettled(page, tab);
}

const scenarios = {
    // Live on -> typing changes the image with no click; the last image is the last prompt's; one seed; no files.
    async typing(page) {
        const tab = "txt2img";
        const filesBefore = outputFiles();
        const first = await startTxt2imgLive(page);
        const statsBefore = await liveStats(page, tab);
        await api(page, "post", "/lcm-test/v1/unet/reset");
        await recordPage(page, tab);
        const finalImage = imagePainted(page, tab, (await page.locator(`#${tab}_prompt textarea`).inputValue()) + TYPED);
        await typeAtEnd(page, tab, TYPED);
        const last = await liveSettled(page, tab);
        const finalPaintedAt = await finalImage;
        const statsAfter = await liveStats(page, tab);
        const calls = await unetCalls(page);
        const seen = await recorded(page);
        const promptBox = await page.locator(`#${tab}_prompt textarea`).inputValue();
        const liveFiles = outputFiles();
        // Live off: typing generates nothing; a click generates exactly one image, saved as before.
        await setLive(page, tab, false);
        await page.waitForFunction((tab) => !lcmLoraLive.stats(tab).running, tab, {timeout: GENERATE_TIMEOUT});
        await api(page, "post", "/lcm-test/v1/unet/reset");
        await typeAtEnd(page, tab, "o");
        const manual = await generate(page, tab);
        return {first, last, promptBox, keystrokes: TYPED.length, typedChars: TYPED,
            generations: statsAfter.generations - statsBefore.generations, cuts: statsAfter.cuts - statsBefore.cuts,
            unetCalls: calls,
            maxOutstanding: seen.maxOutstanding, infotexts: seen.infotexts, liveSeed: statsAfter.seed,
            filesBefore, liveFiles, manual, manualUnetCalls: await unetCalls(page), filesAfterManual: outputFiles(),
            statsAfterOff: await liveStats(page, tab), ...typingTimes(seen, finalPaintedAt), gapsMs: statsAfter.gapsMs,
            lastDurationMs: statsAfter.lastDurationMs};
    },

    // A stale image is cut short: images made slow by the probe (600 ms more per UNet call), a seed edit starts one,
    // and a word typed right after it makes it stale; once the typing pauses, Live interrupts it (it has more than
    // half of it to go), it is never shown, and the word's image follows at once.
    async staleCut(page) {
        const tab = "txt2img";
        await startTxt2imgLive(page);
        const slow = (ms) => page.request.post(new URL("/lcm-test/v1/unet/slow", config.url).href, {data: {ms}});
        await slow(600);  // per UNet call: an image of several seconds, on every host
        try {
            await editAndSettle(page, tab, () => setNumber(page, `${tab}_seed`, 4321));  // Live learns the slow time
            const before = await liveStats(page, tab);
            await api(page, "post", "/lcm-test/v1/unet/reset");
            await recordPage(page, tab);
            const prompt = await page.locator(`#${tab}_prompt textarea`).inputValue();
            const last = await editAndSettle(page, tab, async () => {
                await setNumber(page, `${tab}_seed`, 4322);  // not typed: starts at once
                // One typed edit right after it (a fill, not keystrokes: a busy page, gradio 4's on a 2-core CPU,
                // delivered keystrokes past half the image, and then the image is rightly left to end).
                await setPrompt(page, tab, prompt + " dog");
            });
            const after = await liveStats(page, tab);
            return {durationMs: before.lastDurationMs, cuts: after.cuts - before.cuts, last,
                generations: after.generations - before.generations, completed: after.completed - before.completed,
                unetCalls: await unetCalls(page), infotexts: (await recorded(page)).infotexts,
                promptBox: await page.locator(`#${tab}_prompt textarea`).inputValue()};
        } finally {
            await slow(0);
        }
    },

    // Bench: the typing run again (config.typing.repeats times), Live on with its defaults; right before each, Live
    // off and Generate clicked back to back (config.typing.clicks times), so each run has clicks of its moment
    // (the machine's load changes within a bench).
    async typingRuns(page) {
        const tab = "txt2img";
        const runs = [];
        await startTxt2imgLive(page, config.typing?.size ?? 64);
        const prompt = await page.locator(`#${tab}_prompt textarea`).inputValue();  // with the panel's tag
        for (let r = 0; r < (config.typing?.repeats ?? 5); r++) {
            await setLive(page, tab, false);
            await page.waitForFunction((tab) => !lcmLoraLive.stats(tab).running, tab, {timeout: GENERATE_TIMEOUT});
            await setPrompt(page, tab, prompt);
            const clicks = await clickBackToBack(page, tab, config.typing?.clicks ?? 3);
            await setLive(page, tab, true);
            await liveSettled(page, tab);
            const before = await liveStats(page, tab);
            await recordPage(page, tab);
            await api(page, "post", "/lcm-test/v1/timings/reset");
            const finalImage = imagePainted(page, tab, prompt + TYPED);
            await typeAtEnd(page, tab, TYPED);
            await liveSettled(page, tab);
            const finalPaintedAt = await finalImage;
            const after = await liveStats(page, tab);
            runs.push({keystrokes: TYPED.length, generations: after.generations - before.generations,
                cuts: after.cuts - before.cuts,
                gapsMs: (after.gapsMs ?? []).slice((before.gapsMs ?? []).length), lastDurationMs: after.lastDurationMs,
                serverMs: (await api(page, "get", "/lcm-test/v1/timings")).map((timing) => timing.total * 1000),
                clickMs: clicks, ...typingTimes(await recorded(page), finalPaintedAt)});
        }
        return {runs};
    },

    // Live turns the panel on (1.7+: the panel stays open when switched off with its header checkbox).
    async switchesPanelOn(page) {
        const tab = "txt2img";
        await setNumber(page, `${tab}_width`, 64);
        await setNumber(page, `${tab}_height`, 64);
        await setPrompt(page, tab, "a cat");
        await openPanel(page, tab);
        const header = page.locator(`#lcm_lora_${tab}_enabled-visible-checkbox`);
        if (await header.count() === 0) return {skipped: "no header checkbox (1.6): the panel is on while open"};
        await header.click();
        await page.waitForFunction((tab) => document.querySelector(`#${tab}_sampling input`)?.value !== "LCM-LoRA", tab,
            {timeout: STEP_TIMEOUT});
        const offSampler = await page.locator(`#${tab}_sampling input`).inputValue();
        await setLive(page, tab, true);
        const image = await liveSettled(page, tab);
        const panelEnabled = await header.isChecked();
        const sampler = await page.locator(`#${tab}_sampling input`).inputValue();
        // Switching the panel off switches Live off.
        await header.click();
        await page.waitForFunction((tab) => !lcmLoraLive.stats(tab).on, tab, {timeout: STEP_TIMEOUT});
        const liveAfterPanelOff = await page.locator(`#lcm_lora_${tab}_live_switch input`).isChecked();
        return {offSampler, panelEnabled, sampler, image, liveAfterPanelOff};
    },

    // img2img: a new denoising strength makes a new image.
    async img2img(page) {
        const tab = "img2img";
        const filesBefore = outputFiles();
        await switchTab(page, "img2img");
        await page.setInputFiles("#img2img_image input[type=file]", config.initImage);
        await setNumber(page, `${tab}_width`, 64);
        await setNumber(page, `${tab}_height`, 64);
        await setPrompt(page, tab, "a cat");
        await openPanel(page, tab);
        await setNumber(page, "img2img_denoising_strength", 0.6);
        await setLive(page, tab, true);
        const first = await liveSettled(page, tab);
        await setNumber(page, "img2img_denoising_strength", 0.45);
        await page.waitForFunction((tab) => /Denoising strength: 0\.45/.test(document.querySelector(`#html_info_${tab}`)
            ?.innerText ?? ""), tab, {timeout: GENERATE_TIMEOUT});
        const second = await liveSettled(page, tab);
        return {first, second, filesBefore, files: outputFiles()};
    },

    // The README's picture: the panel with Live on, after a live image (saved as live.png in config.out).
    async screenshot(page) {
        await startTxt2imgLive(page, 256);
        await typeAtEnd(page, "txt2img", ", watercolor");
        await liveSettled(page, "txt2img");
        const file = path.join(config.out, "live.png");
        await page.locator("#tab_txt2img").screenshot({path: file});
        return {path: file};
    },


    // Bench: edit-to-image latency, Live (TAESD and full VAE) against clicking Generate, interleaved.
    async latency(page) {
        const {repeats = 5, size = 64} = config.latency ?? {};
        const tab = "txt2img";
        await startTxt2imgLive(page, size);
        await setLive(page, tab, false);
        await setNumber(page, `${tab}_seed`, 1234);
        await installLatencyProbe(page, tab);
        const rows = [];
        let letter = 0;
        let seed = 1234;
        // A typed edit: one word at 8 characters a second (the adaptive wait is for typing); a set edit: the seed.
        const word = () => " " + Array.from({length: 4}, () => String.fromCharCode(97 + (letter++ % 26))).join("");
        for (let r = 0; r < repeats; r++) {
            for (const edit of ["word", "seed"]) {
                for (const mode of ["click", "live_taesd", "live_full"]) {
                    await prepareMode(page, tab, mode);
                    await api(page, "post", "/lcm-test/v1/timings/reset");
                    const trigger = mode === "click" ? "click" : "input";
                    const measured = page.evaluate(([tab, trigger, field]) => window.__lcmLatency(tab, trigger, field),
                        [tab, trigger, edit === "word" ? "prompt" : "seed"]);
                    if (edit === "word") await typeAtEnd(page, tab, word());
                    else await setNumber(page, `${tab}_seed`, ++seed);
                    if (mode === "click") await page.click(`#${tab}_generate`);
                    const ms = await measured;
                    if (mode !== "click") await liveSettled(page, tab);
                    const timings = await api(page, "get", "/lcm-test/v1/timings");
                    rows.push({mode, edit, ms, server: timings[timings.length - 1] ?? null});
                }
            }
        }
        return {rows, size};
    },
};

// Live on with fast decode on or off, or Live off, and settled: the image of every change made here is done (a
// change starts its image a moment later, so wait for that start before waiting for the end), and the next edit
// is the only change in flight.
async function prepareMode(page, tab, mode) {
    const fast = page.locator(`#lcm_lora_${tab}_fast_decode input`);
    const started = (await liveStats(page, tab))?.generations ?? 0;
    let changed = false;
    if (mode === "click") {
        await setLive(page, tab, false);
    } else {
        if ((await fast.isChecked()) !== (mode === "live_taesd")) {
            await fast.click();
            changed = (await liveStats(page, tab))?.on ?? false;
        }
        if (!(await page.locator(`#lcm_lora_${tab}_live_switch input`).isChecked())) {
            await setLive(page, tab, true);
            changed = true;
        }
    }
    if (changed) {
        await page.waitForFunction(([tab, started]) => lcmLoraLive.stats(tab).generations > started, [tab, started],
            {timeout: GENERATE_TIMEOUT});
        await liveSettled(page, tab);
    }
    await page.waitForFunction((tab) => !lcmLoraLive.stats(tab)?.running, tab, {timeout: GENERATE_TIMEOUT});
}

// window.__lcmLatency(tab, trigger, field): ms from the trigger (the last input event of the edited field, "prompt" or
// "seed", before the image, or a click on Generate) to a new image in the gallery, loaded and decoded (painted in the
// next frame), whose infotext is for the prompt in the box (an image of an earlier state does not count).
async function installLatencyProbe(page) {
    await installPaintWatch(page);
    return page.evaluate(() => {
        window.__lcmLatency = (tab, trigger, field) => {
            const box = document.querySelector(`#${tab}_prompt textarea`);
            const edited = field === "prompt" ? box : document.querySelector(`#${tab}_${field} input`);
            const target = trigger === "click" ? document.querySelector(`#${tab}_generate`) : edited;
            let started = null;
            const mark = () => {
                started = performance.now();
            };
            target.addEventListener(trigger, mark, {capture: true});
            return window.__lcmWhenPainted(tab, window.__lcmGallerySources(tab), "box").then((paintedAt) => {
                target.removeEventListener(trigger, mark, {capture: true});
                return paintedAt - started;
            });
        };
    });
}

await runScenarios(scenarios, ["typing", "staleCut", "switchesPanelOn", "img2img", "screenshot"],
    (page) => liveStats(page, "txt2img"));

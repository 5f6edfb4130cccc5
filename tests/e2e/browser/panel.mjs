// Scenarios for the LCM-LoRA panel in a real WebUI page; run by tests/e2e/test_browser.py, which judges them.
// Usage: node panel.mjs '<json config>'  (url, out, chromium, initImage, checkpoints, loadedCheckpoint,
// scenarios: names to run, default all but "download" and "reload"; signal: a file "download" creates once it
// saw progress)
// Every scenario gets a fresh page and records what the page shows; report.json goes to config.out.
import fs from "node:fs";
import path from "node:path";
import {config, generate, infotext, LOAD_TIMEOUT, newPage, runScenarios, setNumber, setPrompt, STEP_TIMEOUT,
    switchTab} from "./common.mjs";

const RELOAD_TIMEOUT = 180000;

function readControls(page, tab) {
    return page.evaluate((tab) => {
        const q = (selector) => document.querySelector(selector);
        const number = (id) => {
            const input = q(`#${id} input[type=number]`);
            return input ? Number(input.value) : null;
        };
        const status = q(`#lcm_lora_${tab}_status .lcm-lora-status`);
        const gamma = q(`#lcm_lora_${tab}_gamma`);
        // The InputAccordion's own checkbox is hidden; 1.7+ show a copy of it in the header, 1.6 none.
        const headerCheckbox = q(`#lcm_lora_${tab}_enabled-visible-checkbox`);
        const accordionValue = q(`#lcm_lora_${tab}_enabled-checkbox input`);
        return {
            sampler: q(`#${tab}_sampling input`)?.value ?? null,
            scheduler: q(`#${tab}_scheduler input`)?.value ?? null,
            steps: number(`${tab}_steps`),
            cfg: number(`${tab}_cfg_scale`),
            prompt: q(`#${tab}_prompt textarea`)?.value ?? null,
            hrSampler: q("#hr_sampler input")?.value ?? null,
            hrSteps: number("txt2img_hires_steps"),
            panelEnabled: (headerCheckbox ?? accordionValue)?.checked ?? null,
            headerCheckbox: headerCheckbox !== null,
            panelOpen: q(`#lcm_lora_${tab}_enabled`)?.classList.contains("input-accordion-open") ?? null,
            panelSteps: number(`lcm_lora_${tab}_steps`),
            panelCfg: number(`lcm_lora_${tab}_cfg_scale`),
            panelWeight: number(`lcm_lora_${tab}_weight`),
            panelMode: q(`#lcm_lora_${tab}_mode input:checked`)?.value ?? null,
            panelGamma: number(`lcm_lora_${tab}_gamma`),
            overrideSettingsVisible: Boolean(q(`#${tab}_override_settings`)?.offsetParent),
            downloadVisible: Boolean(q(`#lcm_lora_${tab}_download`)?.offsetParent),
            gammaVisible: Boolean(gamma && gamma.offsetParent !== null),
            statusStem: status?.getAttribute("data-lcm-stem") ?? null,
            statusText: status?.innerText ?? "",
        };
    }, tab);
}

// Wait for a condition on the tab's controls; on timeout carry on: the report shows what the page had.
async function settle(page, tab, predicate, timeout = STEP_TIMEOUT) {
    const deadline = Date.now() + timeout;
    let values = await readControls(page, tab);
    while (!predicate(values) && Date.now() < deadline) {
        await page.waitForTimeout(100);
        values = await readControls(page, tab);
    }
    await page.waitForTimeout(300);  // let gradio apply any queued change events
    return readControls(page, tab);
}

async function chooseDropdown(page, id, value) {
    return chooseIn(page, `#${id}`, value);
}

// `root`: a CSS selector of the dropdown's block.
async function chooseIn(page, root, value) {
    const input = page.locator(`${root} input`).first();
    await input.click();
    await input.fill(value);
    // An option is the exact value, or a checkpoint title "<value>.safetensors [hash]".
    const options = `${root} ul.options li`;
    await page.locator(`${options}[aria-label="${value}"], ${options}[aria-label^="${value}.safetensors"]`).first()
        .click();
    await page.waitForFunction(([root, value]) => document.querySelector(`${root} input`).value.startsWith(value),
        [root, value], {timeout: STEP_TIMEOUT});
}

// The checkpoint dropdown: A1111's quick setting, or Forge 2's own top bar (no setting there).
async function chooseCheckpoint(page, value) {
    const root = await page.locator("#setting_sd_model_checkpoint").count() > 0 ? "#setting_sd_model_checkpoint"
        : ".model_selection";
    return chooseIn(page, root, value);
}

// Open the panel like a user does (the InputAccordion switches on with it).
async function openPanel(page, tab) {
    await page.click(`#lcm_lora_${tab}_enabled .label-wrap`);
    return settle(page, tab, (v) => v.panelEnabled && v.sampler?.startsWith("LCM-LoRA") &&
        /lcm-lora/.test(v.prompt ?? ""));
}

// With the header checkbox (1.7+; the panel stays open); 1.6 has none: closing the panel switches it off.
async function switchOff(page, tab) {
    const headerCheckbox = page.locator(`#lcm_lora_${tab}_enabled-visible-checkbox`);
    if (await headerCheckbox.count() > 0) await headerCheckbox.click();
    else await page.click(`#lcm_lora_${tab}_enabled .label-wrap`);
    return settle(page, tab, (v) => !v.panelEnabled && !v.sampler?.startsWith("LCM-LoRA"));
}

async function smallImages(page, tab) {
    await setNumber(page, `${tab}_width`, 64);
    await setNumber(page, `${tab}_height`, 64);
}

const scenarios = {
    async txt2img(page) {
        const tab = "txt2img";
        await smallImages(page, tab);
        await chooseDropdown(page, "txt2img_sampling", "Euler a");
        await setNumber(page, "txt2img_steps", 25);
        await setNumber(page, "txt2img_cfg_scale", 6.5);
        await setPrompt(page, tab, "a cat, <lora:tiny-style-sd15:0.8>");
        const before = await settle(page, tab, (v) => v.steps === 25 && v.cfg === 6.5);
        const on = await openPanel(page, tab);
        await setNumber(page, "lcm_lora_txt2img_steps", 6);
        await setNumber(page, "lcm_lora_txt2img_cfg_scale", 1.5);
        await setNumber(page, "lcm_lora_txt2img_weight", 0.75);
        const synced = await settle(page, tab, (v) => v.steps === 6 && v.cfg === 1.5 && v.prompt.includes(":0.75>"));
        await page.click("#lcm_lora_txt2img_mode label:has-text('TCD')");
        const tcd = await settle(page, tab, (v) => v.sampler === "LCM-LoRA TCD" && v.gammaVisible);
        await page.click("#lcm_lora_txt2img_mode label:has-text('LCM')");
        await setNumber(page, "lcm_lora_txt2img_steps", 4);
        await setNumber(page, "lcm_lora_txt2img_cfg_scale", 1);
        await setNumber(page, "lcm_lora_txt2img_weight", 1);
        await settle(page, tab, (v) => v.sampler === "LCM-LoRA" && v.steps === 4 && v.cfg === 1 &&
            v.prompt.includes("lcm-lora-sdv1-5:1>"));
        const infotext = await generate(page, tab);
        const off = await switchOff(page, tab);
        return {before, on, synced, tcd, infotext, off};
    },

    async edits(page) {
        const tab = "txt2img";
        await chooseDropdown(page, "txt2img_sampling", "Euler a");
        await setPrompt(page, tab, "<lora:lcm-lora-sdv1-5:0.5> a dog");
        const before = await settle(page, tab, (v) => v.sampler === "Euler a");
        const on = await openPanel(page, tab);
        await setNumber(page, "txt2img_steps", 10);
        await setPrompt(page, tab, on.prompt + ", at night");
        await settle(page, tab, (v) => v.steps === 10);
        const off = await switchOff(page, tab);
        return {before, on, off};
    },

    async hires(page) {
        const tab = "txt2img";
        await smallImages(page, tab);
        await setPrompt(page, tab, "a cat");
        await page.click("#txt2img_hr .label-wrap");
        await setNumber(page, "txt2img_hires_steps", 3);
        const before = await settle(page, tab, (v) => v.hrSteps === 3);
        const on = await openPanel(page, tab);
        const infotext = await generate(page, tab);
        const off = await switchOff(page, tab);
        return {before, on, infotext, off};
    },

    async img2img(page) {
        const tab = "img2img";
        await switchTab(page, "img2img");
        await page.setInputFiles("#img2img_image input[type=file]", config.initImage);
        await smallImages(page, tab);
        await chooseDropdown(page, "img2img_sampling", "Euler a");
        await setPrompt(page, tab, "a cat");
        const before = await settle(page, tab, (v) => v.sampler === "Euler a");
        const on = await openPanel(page, tab);
        const infotext = await generate(page, tab);
        const off = await switchOff(page, tab);
        return {before, on, infotext, off};
    },

    async pnginfo(page, context) {
        const tab = "txt2img";
        await smallImages(page, tab);
        await setPrompt(page, tab, "a cat");
        await openPanel(page, tab);
        await setNumber(page, "lcm_lora_txt2img_weight", 0.75);
        await page.click("#lcm_lora_txt2img_mode label:has-text('TCD')");
        await settle(page, tab, (v) => v.gammaVisible);
        await setNumber(page, "lcm_lora_txt2img_gamma", 0.5);
        await settle(page, tab, (v) => v.prompt.includes(":0.75>") && v.sampler === "LCM-LoRA TCD" &&
            v.panelGamma === 0.5);
        await generate(page, tab);
        const src = await page.locator("#txt2img_gallery img").first().getAttribute("src");
        const response = await page.request.get(new URL(src, config.url).href);
        const png = path.join(config.out, "lcm-generated.png");
        fs.writeFileSync(png, await response.body());

        const fresh = await newPage(context);
        const pageErrors = fresh.pageErrors;
        await switchTab(fresh.page, "PNG Info");
        await fresh.page.setInputFiles("#pnginfo_image input[type=file]", png);
        await fresh.page.waitForFunction(
            () => (document.querySelector("#pnginfo_generation_info textarea")?.value ?? "").includes("Steps:"),
            null, {timeout: STEP_TIMEOUT});
        const parameters = await fresh.page.locator("#pnginfo_generation_info textarea").inputValue();
        await fresh.page.click("#txt2img_tab");
        const pasted = await settle(fresh.page, tab, (v) => v.panelEnabled && v.panelOpen && v.panelWeight === 0.75 &&
            v.sampler === "LCM-LoRA TCD" && v.panelGamma === 0.5);
        return {parameters, pasted, pageErrors};
    },

    // txt2img's "Send to img2img" button carries the panel (and the image) to img2img.
    async sendto(page) {
        await smallImages(page, "txt2img");
        await setPrompt(page, "txt2img", "a cat");
        await openPanel(page, "txt2img");
        await setNumber(page, "lcm_lora_txt2img_steps", 6);
        await setNumber(page, "lcm_lora_txt2img_weight", 0.75);
        await settle(page, "txt2img", (v) => v.steps === 6 && v.prompt.includes(":0.75>"));
        await generate(page, "txt2img");
        await page.click("#txt2img_send_to_img2img");
        const sent = await settle(page, "img2img", (v) => v.panelEnabled && v.panelWeight === 0.75 &&
            v.panelSteps === 6 && v.sampler === "LCM-LoRA");
        return {sent};
    },

    async screenshot(page) {
        const tab = "txt2img";
        await smallImages(page, tab);
        await setPrompt(page, tab, "a cat, <lora:tiny-style-sd15:0.8>");
        await openPanel(page, tab);
        await generate(page, tab);
        const file = path.join(config.out, "panel.png");
        await page.locator("#tab_txt2img").screenshot({path: file});
        return {path: file};
    },

    // Needs a server without the LoRA file and a hub that holds the bytes back until `config.signal` exists.
    async download(page) {
        const tab = "txt2img";
        await smallImages(page, tab);
        await setPrompt(page, tab, "a cat");
        await page.click(`#lcm_lora_${tab}_enabled .label-wrap`);
        const before = await settle(page, tab, (v) => v.panelEnabled && v.downloadVisible);
        await page.click(`#lcm_lora_${tab}_download`);
        const progress = await settle(page, tab, (v) => /Downloading|Starting/.test(v.statusText));
        fs.writeFileSync(config.signal, progress.statusText);
        const after = await settle(page, tab, (v) => /installed/.test(v.statusText) &&
            !/not installed/.test(v.statusText) && !v.downloadVisible, 120000);
        const infotext = await generate(page, tab);
        return {before, progress, after, infotext};
    },

    // Changes the server's loaded checkpoint to SDXL (and puts it back).
    async checkpoint(page) {
        const tab = "txt2img";
        const stem = (name) => name.replace(/\.safetensors$/, "");
        const xl = stem(config.checkpoints.find((name) => /sdxl/.test(name)));
        const loaded = stem(config.loadedCheckpoint);
        await smallImages(page, tab);
        await setPrompt(page, tab, "a cat");
        const before = await openPanel(page, tab);
        await chooseCheckpoint(page, xl);
        const after = await settle(page, tab, (v) => v.statusStem === "lcm-lora-sdxl" &&
            v.prompt.includes("lcm-lora-sdxl"), 180000);
        const infotext = await generate(page, tab);
        await chooseCheckpoint(page, loaded);
        const back = await settle(page, tab, (v) => v.statusStem === "lcm-lora-sdv1-5" &&
            v.prompt.includes("lcm-lora-sdv1-5"), 180000);
        return {before, after, infotext, back};
    },

    // The settings section, then Settings -> Reload UI: the rebuilt page has the panel wired again.
    async reload(page) {
        const tab = "txt2img";
        const settings = await page.evaluate(() => ["lcm_lora_steps", "lcm_lora_cfg_scale", "lcm_lora_weight",
            "lcm_lora_mode", "lcm_lora_tcd_gamma", "lcm_lora_download", "lcm_lora_warnings"]
            .filter((key) => document.getElementById(`setting_${key}`) !== null));
        const sectionTitles = await page.evaluate(() => Array.from(document.querySelectorAll("#settings .tab-nav button"))
            .map((button) => button.innerText.trim()));
        await page.evaluate(() => document.getElementById("settings_restart_gradio").click());
        await page.waitForSelector("#lcm_lora_txt2img_status", {state: "detached", timeout: LOAD_TIMEOUT});
        await page.waitForSelector("#lcm_lora_txt2img_status .lcm-lora-status[data-lcm-stem]",
            {state: "attached", timeout: RELOAD_TIMEOUT});
        await page.locator("#txt2img_sampling input").click();
        await page.locator("#txt2img_sampling input").fill("");
        await page.waitForSelector("#txt2img_sampling ul.options li", {timeout: STEP_TIMEOUT});
        const samplerOptions = await page.evaluate(() => Array.from(document.querySelectorAll("#txt2img_sampling ul.options li"))
            .map((li) => li.getAttribute("aria-label")));
        await chooseDropdown(page, "txt2img_sampling", "Euler a");
        await setPrompt(page, tab, "a cat");
        const before = await settle(page, tab, (v) => v.sampler === "Euler a");
        const on = await openPanel(page, tab);
        const off = await switchOff(page, tab);
        return {settings, sectionTitles, samplerOptions, before, on, off};
    },
};

await runScenarios(scenarios, Object.keys(scenarios).filter((name) => !["download", "reload"].includes(name)),
    (page) => readControls(page, "txt2img"));

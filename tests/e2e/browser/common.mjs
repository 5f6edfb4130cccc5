// What the browser scenarios share (panel.mjs, live.mjs): the config, page helpers and the runner that gives
// every scenario a fresh page and writes report.json to config.out.
import {chromium} from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

export const config = JSON.parse(process.argv[2]);
export const LOAD_TIMEOUT = 120000;
export const STEP_TIMEOUT = 20000;
export const GENERATE_TIMEOUT = 180000;

export async function setNumber(page, id, value) {
    const input = page.locator(`#${id} input[type=number]`);
    await input.fill(String(value));
    await input.press("Enter");
}

export async function setPrompt(page, tab, text) {
    await page.fill(`#${tab}_prompt textarea`, text);
}

export async function switchTab(page, name) {
    await page.locator("#tabs > .tab-nav > button", {hasText: name}).first().click();
}

// The infotext's text is in the HTML block's inner .prose element: gradio 3.41 gives that element the block's
// id too, gradio 4 (Forge) only the outer block.
export function infotext(page, tab) {
    return page.evaluate((tab) => (document.querySelector(`.prose#html_info_${tab}`) ??
        document.querySelector(`#html_info_${tab} .prose`))?.innerText ?? "", tab);
}

// Click the tab's Generate button; the new infotext once it shows.
export async function generate(page, tab) {
    const previous = await infotext(page, tab);
    await page.click(`#${tab}_generate`);
    await page.waitForFunction(([tab, previous]) => {
        const text = (document.querySelector(`.prose#html_info_${tab}`) ??
            document.querySelector(`#html_info_${tab} .prose`))?.innerText ?? "";
        return text.includes("Steps:") && text !== previous;
    }, [tab, previous], {timeout: GENERATE_TIMEOUT});
    return infotext(page, tab);
}

// Run `scenarios` (names from config.scenarios, else `defaults`), each in a fresh page; `onError(page)` adds what
// the page showed to a failed scenario's report.
export async function runScenarios(scenarios, defaults, onError) {
    const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "lcm-lora-chromium-"));
    const context = await chromium.launchPersistentContext(userDataDir, {
        executablePath: config.chromium,
        headless: true,
        viewport: {width: 1280, height: 1400},
        args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"],
    });
    const report = {};
    try {
        for (const name of config.scenarios ?? defaults) {
            const run = scenarios[name];
            const started = Date.now();
            let opened;
            try {
                if (typeof run !== "function") throw new Error(`no scenario named ${name} in this script`);
                opened = await newPage(context);
                const result = await run(opened.page, context);
                const pageErrors = [...opened.pageErrors, ...(result.pageErrors ?? [])];
                report[name] = {...result, pageErrors};
            } catch (error) {
                report[name] = {error: error.stack || String(error), pageErrors: opened?.pageErrors ?? []};
                if (opened) {
                    await opened.page.screenshot({path: path.join(config.out, `${name}-failure.png`), fullPage: true})
                        .catch(() => {});
                    report[name].controls = await onError(opened.page).catch(() => null);
                }
            }
            console.log(`${name}: ${report[name].error ? "ERROR" : "ran"} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
            for (const page of context.pages()) await page.close();
        }
    } finally {
        fs.writeFileSync(path.join(config.out, "report.json"), JSON.stringify(report, null, 2));
        await context.close();
        fs.rmSync(userDataDir, {recursive: true, force: true});
    }
}

export async function newPage(context) {
    const page = await context.newPage();
    const pageErrors = [];
    page.on("pageerror", (error) => {
        // The host's own InputAccordions log a gradio error on every toggle; only errors from our files count.
        if (/lcm_lora|lcmLora/.test(`${error.message}\n${error.stack}`)) pageErrors.push(error.stack || error.message);
    });
    page.on("console", (message) => {
        if (message.type() === "error" && /LCM-LoRA/.test(message.text())) pageErrors.push(message.text());
    });
    await page.goto(config.url, {timeout: LOAD_TIMEOUT});
    await page.waitForSelector("#lcm_lora_txt2img_status .lcm-lora-status[data-lcm-stem]",
        {state: "attached", timeout: LOAD_TIMEOUT});
    await page.waitForSelector("#lcm_lora_img2img_status .lcm-lora-status[data-lcm-stem]",
        {state: "attached", timeout: LOAD_TIMEOUT});
    return {page, pageErrors};
}


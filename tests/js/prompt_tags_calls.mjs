// The table's function names ("apply", "find", ...) bound to javascript/lcm_lora_prompt.js, with find offsets
// converted to code points as the table (and Python) count them. Stems: a case's own ("stems" in its args), else
// those of the shipped weights registry, their one home.
import {createRequire} from "node:module";
import {readFileSync} from "node:fs";
import {fileURLToPath} from "node:url";

export const SOURCE_URL = new URL("../../javascript/lcm_lora_prompt.js", import.meta.url);
export const prompt = createRequire(import.meta.url)(fileURLToPath(SOURCE_URL));
const REGISTRY_URL = new URL("../../lib_lcm/weights/registry.json", import.meta.url);
export const LCM_STEMS = Object.values(JSON.parse(readFileSync(REGISTRY_URL, "utf8")).variants).map((v) => v.stem);

function codePoints(text, unitIndex) {
    return Array.from(text.slice(0, unitIndex)).length;
}

const stemsOf = (a) => ("stems" in a ? a.stems : LCM_STEMS);

export const FUNCTIONS = {
    format_weight: (a) => prompt.formatWeight(a.weight),
    find: (a) => prompt.findLcmTags(a.prompt, stemsOf(a)).map((tag) => ({
        ...tag, start: codePoints(a.prompt, tag.start), end: codePoints(a.prompt, tag.end),
    })),
    has_alias: (a) => prompt.hasLcmAlias(a.prompt),
    apply: (a) => prompt.applyLcmTag(a.prompt, a.stem, a.weight, stemsOf(a), a.respect_user_weight || false),
    remove: (a) => prompt.removeLcmTag(a.prompt, stemsOf(a), a.stem),
    resolve: (a) => prompt.resolveLcmAlias(a.prompt, a.stem, stemsOf(a)),
};

// The table's function names ("apply", "find", ...) bound to javascript/lcm_lora_prompt.js, with find offsets
// converted to code points as the table (and Python) count them.
import {createRequire} from "node:module";
import {fileURLToPath} from "node:url";

export const SOURCE_URL = new URL("../../javascript/lcm_lora_prompt.js", import.meta.url);
export const prompt = createRequire(import.meta.url)(fileURLToPath(SOURCE_URL));

function codePoints(text, unitIndex) {
    return Array.from(text.slice(0, unitIndex)).length;
}

export const FUNCTIONS = {
    format_weight: (a) => prompt.formatWeight(a.weight),
    find: (a) => prompt.findLcmTags(a.prompt).map((tag) => ({
        ...tag, start: codePoints(a.prompt, tag.start), end: codePoints(a.prompt, tag.end),
    })),
    has_alias: (a) => prompt.hasLcmAlias(a.prompt),
    apply: (a) => prompt.applyLcmTag(a.prompt, a.stem, a.weight, a.respect_user_weight || false),
    remove: (a) => prompt.removeLcmTag(a.prompt, a.stem),
    resolve: (a) => prompt.resolveLcmAlias(a.prompt, a.stem),
};

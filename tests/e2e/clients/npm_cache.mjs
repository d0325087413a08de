// Loaded with `node --import`: lets the client scripts here import the npm packages that
// scripts/npm-deps installs into .cache/npm. Node resolves a bare ESM import only from the
// node_modules folders above the importing file, and tests/ has none (NODE_PATH is CJS-only).
import { register } from "node:module";
import { pathToFileURL } from "node:url";

const modules = process.env.ATRIUM_NPM_MODULES;
if (!modules) {
  throw new Error("ATRIUM_NPM_MODULES must name the node_modules folder of scripts/npm-deps");
}
register("./npm_cache_hooks.mjs", import.meta.url, {
  data: {
    scripts: new URL("./", import.meta.url).href,
    parent: pathToFileURL(`${modules}/`).href,
  },
});

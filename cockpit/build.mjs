// Bundles the page into dist/ with esbuild: index.js and index.css (PatternFly's styles,
// only the components used), the fonts they reference, index.html and manifest.json.
// cockpit.js is not bundled: the page loads the installed one (../base1/cockpit.js).
// Like Cockpit's own packages, the bundle is shipped gzipped only: cockpit-ws serves
// index.js from index.js.gz (and unpacks it for a browser that does not take gzip).

import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { constants, gzipSync } from "node:zlib";
import * as esbuild from "esbuild";

// Paths are the package's, wherever this runs from.
const here = new URL(".", import.meta.url).pathname;
process.chdir(here);
const outdir = "dist";
rmSync(outdir, { recursive: true, force: true });
mkdirSync(outdir, { recursive: true });

await esbuild.build({
  absWorkingDir: here,
  entryPoints: { index: "src/index.tsx" },
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2022"],
  outdir,
  // React's production build: no development warnings in the console.
  define: { "process.env.NODE_ENV": '"production"' },
  loader: { ".woff2": "file", ".svg": "file" },
  assetNames: "assets/[name]-[hash]",
  legalComments: "linked",
  logLevel: "warning",
});

for (const file of ["index.html", "manifest.json"]) {
  copyFileSync(`src/${file}`, `${outdir}/${file}`);
}

const kib = (bytes) => `${(bytes / 1024).toFixed(0)} KiB`;
for (const file of ["index.js", "index.css"]) {
  const path = `${outdir}/${file}`;
  const plain = readFileSync(path);
  const gzipped = gzipSync(plain, { level: constants.Z_BEST_COMPRESSION });
  writeFileSync(`${path}.gz`, gzipped);
  rmSync(path);
  console.log(`${path}.gz: ${kib(gzipped.length)} (${kib(plain.length)} unpacked)`);
}

// Style sheets are bundled by esbuild as side-effect imports.
declare module "*.css";

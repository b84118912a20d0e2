// Cockpit's light and dark themes. The shell keeps the choice in localStorage
// ("shell:style": auto, light or dark) and announces changes with a "cockpit-style" event
// or a storage event; "auto" follows the browser. PatternFly switches with one class.

const DARK_CLASS = "pf-v6-theme-dark";
const STYLE_KEY = "shell:style";

function storedStyle(): string {
  try {
    return window.localStorage.getItem(STYLE_KEY) ?? "auto";
  } catch {
    return "auto";
  }
}

function apply(style: string): void {
  const prefersDark = window.matchMedia?.("(prefers-color-scheme: dark)").matches ?? false;
  const dark = style === "dark" || (style === "auto" && prefersDark);
  document.documentElement.classList.toggle(DARK_CLASS, dark);
}

export function followCockpitTheme(): void {
  window.addEventListener("storage", (event) => {
    if (event.key === STYLE_KEY) {
      apply(storedStyle());
    }
  });
  window.addEventListener("cockpit-style", (event) => {
    const style = event instanceof CustomEvent ? (event.detail as { style?: unknown } | null)?.style : undefined;
    apply(typeof style === "string" ? style : storedStyle());
  });
  window.matchMedia?.("(prefers-color-scheme: dark)").addEventListener("change", () => apply(storedStyle()));
  apply(storedStyle());
}

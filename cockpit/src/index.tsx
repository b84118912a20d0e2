// Entry point: Cockpit's theme, one bus client for the page's lifetime, and the React tree.

import "@patternfly/react-core/dist/styles/base.css";
import "./page.css";

import { createRoot } from "react-dom/client";

import { ExtensionsService } from "./api/service";
import { App } from "./components/App";
import { followCockpitTheme } from "./theme";

followCockpitTheme();

const container = document.getElementById("app");
if (container) {
  const service = new ExtensionsService();
  const permission = cockpit.permission({ admin: true });
  createRoot(container).render(<App service={service} permission={permission} />);
}

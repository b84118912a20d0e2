// An extension's updates in its row: what the last check found (kept by the service, so
// it is read, not asked again), and the Update and Roll back actions. An update is a job
// listed with the others; a rollback is one step and answers at once.

import { useState } from "react";
import { Label } from "@patternfly/react-core/dist/esm/components/Label/index.js";
import { Tooltip } from "@patternfly/react-core/dist/esm/components/Tooltip/index.js";
import { Truncate } from "@patternfly/react-core/dist/esm/components/Truncate/index.js";

import { describeFailure } from "../api/errors";
import type { ExtensionInfo, ExtensionsService } from "../api/service";
import { type UpdateView, rollbackSummary } from "../api/updates";
import { AdminButton } from "./AdminButton";

function toneColor(tone: UpdateView["tone"]): "blue" | "green" | "grey" | "red" {
  switch (tone) {
    case "available":
      return "blue";
    case "current":
      return "green";
    case "failed":
      return "red";
    case "quiet":
    case "none":
      return "grey";
  }
}

/**
 * The Update cell: a label; below it the version or source an update would get, or the
 * error of a failed check. Why a source has no answer (pinned, local, cannot check) is
 * the label's tooltip and in the details, to keep the row short.
 */
export function UpdateState({ view }: { view: UpdateView }) {
  if (view.tone === "none") {
    return <span className="kx-not-checked">{view.label}</span>;
  }
  const label = (
    <Label isCompact color={toneColor(view.tone)}>
      {view.label}
    </Label>
  );
  if (view.tone === "current" || view.tone === "quiet") {
    return view.detail ? <Tooltip content={view.detail}>{label}</Tooltip> : label;
  }
  return (
    <>
      {label}
      {view.detail && (
        <div className="kx-update-detail">
          <Truncate content={view.detail} position={view.tone === "available" ? "middle" : "end"} />
        </div>
      )}
    </>
  );
}

/** The tooltip of Update and Roll back without administrative access. */
const NEEDS_ADMIN = "Turn on administrative access to update extensions.";

/**
 * Update (when the last check found something newer) and Roll back (when there is a
 * previous version). One merged now is merged again with the image it gets; `busy`: an
 * update of it is running.
 */
export function UpdateActions(props: {
  service: ExtensionsService;
  extension: ExtensionInfo;
  /** `updateView` of the extension, computed once for its row. */
  view: UpdateView;
  admin: boolean;
  busy: boolean;
  onError: (message: string) => void;
  onSuccess: (message: string) => void;
}) {
  const { service, extension, view, admin, busy, onError, onSuccess } = props;
  const [asking, setAsking] = useState(false);
  const [rolling, setRolling] = useState(false);
  const previous = extension.update.previousVersion;
  const now = extension.merged ? " It is merged again now." : "";

  const update = () => {
    setAsking(true);
    service
      .update(extension)
      .catch((e: unknown) => onError(describeFailure(e, "update")))
      .finally(() => setAsking(false));
  };
  const rollback = () => {
    setRolling(true);
    const done = rollbackSummary(extension.name, extension.version, previous);
    service
      .rollback(extension)
      .then(() => onSuccess(done))
      .catch((e: unknown) => onError(describeFailure(e, "update")))
      .finally(() => setRolling(false));
  };

  return (
    <>
      {view.tone === "available" && (
        <AdminButton
          admin={admin}
          label="Update"
          ariaLabel={`Update ${extension.name}`}
          variant="primary"
          size="sm"
          isLoading={asking || busy}
          hint={`Install ${view.detail || "the newer image"}; the installed image is kept for a rollback.${now}`}
          needsAdmin={NEEDS_ADMIN}
          onClick={update}
        />
      )}
      {previous && (
        <AdminButton
          admin={admin}
          label="Roll back"
          ariaLabel={`Roll back ${extension.name} to ${previous}`}
          variant="secondary"
          size="sm"
          isLoading={rolling || busy}
          hint={`Put version ${previous} back; the installed image becomes the one to roll back to.${now}`}
          needsAdmin={NEEDS_ADMIN}
          onClick={rollback}
        />
      )}
    </>
  );
}

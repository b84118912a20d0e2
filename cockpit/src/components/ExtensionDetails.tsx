// An expanded row: everything known about one extension, why it is not merged or not
// compatible in plain words, and its boot-state switches. The image's protection
// (verity, signer) is only known after the service verifies it, so it is asked for with
// Describe when the row opens.

import { useEffect, useState } from "react";
import { CodeBlock, CodeBlockCode } from "@patternfly/react-core/dist/esm/components/CodeBlock/index.js";
import { DescriptionList, DescriptionListDescription, DescriptionListGroup, DescriptionListTerm } from "@patternfly/react-core/dist/esm/components/DescriptionList/index.js";
import { Grid, GridItem } from "@patternfly/react-core/dist/esm/layouts/Grid/index.js";
import { Title } from "@patternfly/react-core/dist/esm/components/Title/index.js";

import type { BootState, CurrentBoot } from "../api/contract";
import type { ExtensionInfo, ExtensionsService } from "../api/service";
import { notMergedReason, statusExplanation, statusLabel } from "../api/status";
import type { UpdateView } from "../api/updates";
import { formatBytes, formatMicroseconds } from "../format";
import { BootStateSwitches } from "./BootStateSwitches";

function Protection({ service, extension }: { service: ExtensionsService; extension: ExtensionInfo }) {
  const [text, setText] = useState("Checking…");
  useEffect(() => {
    let live = true;
    service
      .describe(extension)
      .then((described) => {
        if (live) {
          setText(typeof described.protection === "string" ? described.protection : "not verified");
        }
      })
      .catch(() => live && setText("unknown (the service could not describe it)"));
    return () => {
      live = false;
    };
    // Again when the image changes (a replace keeps the object, not the digest).
  }, [service, extension.path, extension.digest]);
  return <>{text}</>;
}

/** What the last update check found, and when. */
function lastCheck(extension: ExtensionInfo, view: UpdateView): string {
  if (view.tone === "none") {
    return "Not checked yet (Check for updates asks the sources).";
  }
  const when = formatMicroseconds(extension.update.checkedTime);
  return `${view.label}${view.detail ? `: ${view.detail}` : ""}${when ? ` (checked ${when})` : ""}`;
}

function Field({ term, children }: { term: string; children: React.ReactNode }) {
  return (
    <DescriptionListGroup>
      <DescriptionListTerm>{term}</DescriptionListTerm>
      <DescriptionListDescription>{children}</DescriptionListDescription>
    </DescriptionListGroup>
  );
}

export function ExtensionDetails(props: {
  service: ExtensionsService;
  extension: ExtensionInfo;
  /** `updateView` of the extension, computed once for its row. */
  view: UpdateView;
  states: BootState[];
  current: CurrentBoot;
  admin: boolean;
  onError: (message: string) => void;
}) {
  const { service, extension, view, current } = props;
  const whyNot = notMergedReason(extension.merged, extension.enabled, current, extension.status);
  const release = Object.entries(extension.release).sort(([a], [b]) => a.localeCompare(b));
  return (
    <Grid hasGutter md={6}>
      <GridItem>
        <Title headingLevel="h3" size="md">
          Details
        </Title>
        <DescriptionList isCompact isHorizontal aria-label={`Details of ${extension.name}`}>
          <Field term="Status">
            {statusLabel(extension.status.status)}: {extension.status.reason || statusExplanation(extension.status.status)}
          </Field>
          <Field term="Merged">{extension.merged ? "Yes, merged into the running system." : `No. ${whyNot}`}</Field>
          <Field term="Source">{extension.source || "Not recorded (the image was put into the store by another tool)"}</Field>
          <Field term="Digest">
            <span className="kx-digest">{extension.digest || "none (a directory)"}</span>
          </Field>
          <Field term="Size">{formatBytes(extension.size)}</Field>
          <Field term="Installed">{formatMicroseconds(extension.installedTime) || "unknown"}</Field>
          <Field term="Update check">{lastCheck(extension, view)}</Field>
          <Field term="Previous version">{extension.update.previousVersion || "none to roll back to"}</Field>
          <Field term="Protection">
            <Protection service={service} extension={extension} />
          </Field>
        </DescriptionList>
      </GridItem>
      <GridItem>
        <Title headingLevel="h3" size="md">
          Enabled for
        </Title>
        <BootStateSwitches {...props} />
        <Title headingLevel="h3" size="md" className="kx-release-title">
          Extension release
        </Title>
        {release.length > 0 ? (
          <CodeBlock aria-label={`extension-release of ${extension.name}`}>
            <CodeBlockCode>{release.map(([key, value]) => `${key}=${value}`).join("\n")}</CodeBlockCode>
          </CodeBlock>
        ) : (
          <p>The image has no readable extension-release file.</p>
        )}
      </GridItem>
    </Grid>
  );
}
